"""The design stays true: what a recipe implies is derived in one place (RecipeSpec, spec_of in
src/core/recipe_spec.cpp), and the rules and kernels read that spec. Outside the spec and the
recipes' own JSON/Python front, no C++ code asks which recipe type it holds, and no Python
operation does either. The bridges are the exception by design: mapping a recipe to a peer's
own class (torchao, TransformerEngine, DeepSeek) is their job."""

from __future__ import annotations

import re
from pathlib import Path

import breccia.recipes

ROOT = Path(__file__).resolve().parents[2]
RECIPE_NAMES = [cls.__name__ for cls in breccia.recipes.RECIPES]
_NAMES = "|".join(RECIPE_NAMES)

# std::holds_alternative<R>, std::get_if<R>, std::get<R>, and an overload or lambda taking one
# recipe type (a std::visit arm).
CPP_SWITCH = re.compile(rf"(holds_alternative|get_if|std::get)<({_NAMES})>|\(const ({_NAMES})&")
PY_SWITCH = re.compile(rf"isinstance\([^)]*\b({_NAMES})\b")

# The recipes' definitions, JSON form and typed DelayedScalingState API, and the spec itself.
CPP_HOMES = {
    "include/breccia/recipes.hpp",
    "src/core/recipes.cpp",
    "src/core/recipe_spec.cpp",
}
PY_HOMES = {"python/breccia/recipes.py"}


def _sources(patterns: list[str]) -> list[Path]:
    return sorted(path for pattern in patterns for path in ROOT.glob(pattern))


def _code_lines(path: Path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("//")[0] if path.suffix != ".py" else line.split("#")[0]
        yield number, code


def test_the_recipe_names_are_known():
    assert len(RECIPE_NAMES) == 8
    assert "MXFP4BlockScaling" in RECIPE_NAMES and "MXFP6BlockScaling" in RECIPE_NAMES


def test_no_cpp_code_switches_on_the_recipe_type_outside_the_spec():
    files = _sources(
        [
            "include/**/*.hpp",
            "src/**/*.cpp",
            "src/**/*.hpp",
            "src/**/*.cu",
            "src/**/*.cuh",
            "python/src/*.cpp",
            "bench/**/*.cpp",
            "bench/**/*.cu",
        ]
    )
    assert len(files) > 40
    found = [
        f"{path.relative_to(ROOT)}:{number}: {code.strip()}"
        for path in files
        if str(path.relative_to(ROOT)) not in CPP_HOMES
        for number, code in _code_lines(path)
        if CPP_SWITCH.search(code)
    ]
    assert found == [], "switch on the recipe type outside the spec:\n" + "\n".join(found)


def test_no_python_operation_switches_on_the_recipe_type():
    files = [
        path
        for path in _sources(["python/breccia/**/*.py"])
        if "bridges" not in path.relative_to(ROOT).parts
    ]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {code.strip()}"
        for path in files
        if str(path.relative_to(ROOT)) not in PY_HOMES
        for number, code in _code_lines(path)
        if PY_SWITCH.search(code)
    ]
    assert found == [], "switch on the recipe type outside the recipes:\n" + "\n".join(found)


def test_the_checks_catch_a_switch():
    """The patterns themselves match the forms a switch takes."""
    assert CPP_SWITCH.search("if (std::holds_alternative<MXFP4BlockScaling>(recipe)) {")
    assert CPP_SWITCH.search("const auto* r = std::get_if<INT4Scaling>(&recipe);")
    assert CPP_SWITCH.search("[](const NVFP4BlockScaling& r) { return 1; }")
    assert not CPP_SWITCH.search("spec.family == RuleFamily::kMx")
    assert PY_SWITCH.search("if isinstance(recipe, (MXFP8BlockScaling, INT4Scaling)):")
