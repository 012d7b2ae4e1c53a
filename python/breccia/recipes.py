"""The scaling recipes, as frozen, hashable, picklable dataclasses.

Each recipe is validated by the C++ core when it is constructed (fields fixed by a spec reject
other values there), and its JSON form, ``repr`` and defaults are the C++ ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from typing_extensions import Self

from breccia import _core


def _json_text(value: Mapping[str, Any] | str, kind: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{kind} JSON must be a dict or a JSON string, got {type(value).__name__}")
    try:
        return json.dumps(dict(value))
    except TypeError as error:
        raise TypeError(f"{kind} fields must be str, int or bool: {error}") from None


def _field_values(value: Any) -> dict[str, Any]:
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}


def _build_native(value: Any, factory: Any, kind_key: str) -> Any:
    """Validates a recipe or layout in C++ and adopts the C++ canonical field values."""
    fields = _field_values(value)
    name = type(value).__name__
    native = factory(_json_text({kind_key: name, **fields}, name), caller=name)
    canonical = json.loads(native.to_json())
    for name in fields:
        object.__setattr__(value, name, canonical[name])
    object.__setattr__(value, "_native", native)
    return native


class ScalingRecipe:
    """Base class of the recipes; ``ScalingRecipe.from_json`` rebuilds any of them."""

    _native: Any

    def __post_init__(self) -> None:
        _build_native(self, _core.Recipe.from_json, "recipe")

    @property
    def spec(self) -> dict[str, Any]:
        """What the recipe implies, derived by the C++ core (extension): rule ``family``
        ("fp8", "mx", "nvfp4", "int4"), ``element`` format ("E4M3", "E2M3", "E2M1", "INT4",
        ...), logical ``scale`` format ("E8M0", "E4M3", "fp32", "fp16", "bf16"),
        ``element_max``, ``element_bits``, ``packed`` (two codes per byte), ``per_tensor``,
        ``global_scale``, ``zero_point``, and the ``data_dtype`` / ``scale_dtype`` cast writes."""
        return dict(self._native.spec)

    def to_json(self) -> dict[str, Any]:
        """The recipe as a JSON-ready dict with stable keys, e.g.
        ``{"recipe": "MXFP8BlockScaling", "fp8_format": "E4M3", "block_size": 32, ...}``."""
        return json.loads(self._native.to_json())

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str) -> Self:
        """Rebuilds a recipe from ``to_json()`` output (a dict or its JSON text). Missing fields
        take their defaults; an unknown recipe or field, or an invalid value, raises ValueError.
        Called on a concrete class, the JSON must name that class."""
        recipe = recipe_from_json(value)
        if not isinstance(recipe, cls):
            raise ValueError(
                f"{cls.__name__}.from_json: the JSON describes {type(recipe).__name__}"
            )
        return recipe

    def __repr__(self) -> str:
        return repr(self._native)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(_field_values(self).values())


def _recipe(cls: type) -> type:
    return dataclasses.dataclass(frozen=True, repr=False)(cls)


@_recipe
class DelayedScaling(ScalingRecipe):
    """Per-tensor FP8 whose scale comes from an amax history (TransformerEngine).

    ``cast(x, recipe)`` without a state applies one fresh step (the scale from this tensor's
    amax); pass ``state=DelayedScalingState(recipe)`` to ``cast`` to quantize with the previous
    step's scale and update the history, as TransformerEngine does.

    fp8_format: "E4M3" or "E5M2". amax_history_len: steps remembered (>= 1). margin: the scale
    is divided by 2**margin (>= 0).
    """

    fp8_format: str = "E4M3"
    amax_history_len: int = 16
    margin: int = 0


@_recipe
class Float8CurrentScaling(ScalingRecipe):
    """Per-tensor FP8 with the scale from this tensor's amax: s = fmax / amax (TransformerEngine).

    fp8_format: "E4M3" (max 448) or "E5M2" (max 57344).
    power_2_scale (extension): round the scale down to a power of two.
    """

    fp8_format: str = "E4M3"
    power_2_scale: bool = False


@_recipe
class Float8BlockScaling(ScalingRecipe):
    """FP8 with one fp32 scale per block_m x block_k tile of the last two axes (TransformerEngine,
    DeepSeek-V3: 1 x 128 activations, 128 x 128 weights).

    block_m and power_2_scale are extensions; power-of-two scales are the default, as in
    TransformerEngine and DeepSeek-V3.1.
    """

    fp8_format: str = "E4M3"
    block_k: int = 128
    block_m: int = 1
    power_2_scale: bool = True


@_recipe
class MXFP8BlockScaling(ScalingRecipe):
    """OCP MX v1.0 FP8: 32 consecutive elements share one E8M0 (power-of-two) scale.

    block_size is fixed at 32 by the spec. scale_rounding (extension): "floor" (the OCP rule,
    default) or "rceil" (TransformerEngine / Blackwell hardware bytes).
    """

    fp8_format: str = "E4M3"
    block_size: int = 32
    scale_rounding: str = "floor"


@_recipe
class MXFP6BlockScaling(ScalingRecipe):
    """OCP MX v1.0 FP6: 32 consecutive elements share one E8M0 (power-of-two) scale.

    fp6_format: "E2M3" (max 7.5) or "E3M2" (max 28); codes are stored one per byte, in the low
    six bits (ml_dtypes ``float6_e2m3fn`` / ``float6_e3m2fn`` in NumPy, uint8 in PyTorch, as
    torchao keeps them unpacked). block_size is fixed at 32 by the spec. scale_rounding:
    "floor" (the OCP rule, default) or "rceil" (TransformerEngine, torchao RCEIL).
    """

    fp6_format: str = "E2M3"
    block_size: int = 32
    scale_rounding: str = "floor"


@_recipe
class MXFP4BlockScaling(ScalingRecipe):
    """OCP MX v1.0 FP4: 32 consecutive E2M1 elements (packed two per byte, element 2i in the low
    nibble) share one E8M0 (power-of-two) scale.

    block_size is fixed at 32 by the spec. scale_rounding: "floor" (the OCP rule, default) or
    "rceil" (TransformerEngine, torchao RCEIL).
    """

    block_size: int = 32
    scale_rounding: str = "floor"


@_recipe
class NVFP4BlockScaling(ScalingRecipe):
    """NVIDIA NVFP4: E2M1 elements packed two per byte, one E4M3 scale per 16 elements and one
    fp32 ``global_scale`` per tensor.

    fp4_format, block_size and scale_format are fixed by the hardware. two_d (extension): take
    each block's amax over 16 x 16 tiles (TransformerEngine's weight mode).
    """

    fp4_format: str = "E2M1"
    block_size: int = 16
    scale_format: str = "E4M3"
    two_d: bool = False


@_recipe
class INT4Scaling(ScalingRecipe):
    """4-bit integers packed two per byte, one scale per group of the last axis (GPTQ / AWQ /
    compressed-tensors).

    group_size: elements per group, or -1 for one group per row. signed=True: symmetric, codes
    -8..7; signed=False: asymmetric with a uint8 ``zero_point`` per group, codes 0..15.
    scale_dtype: "fp16", "bf16" or "fp32".
    """

    group_size: int = 128
    signed: bool = True
    scale_dtype: str = "fp16"


RECIPES: tuple[type[ScalingRecipe], ...] = (
    DelayedScaling,
    Float8CurrentScaling,
    Float8BlockScaling,
    MXFP8BlockScaling,
    MXFP6BlockScaling,
    MXFP4BlockScaling,
    NVFP4BlockScaling,
    INT4Scaling,
)
_RECIPE_CLASSES = {cls.__name__: cls for cls in RECIPES}


def recipe_from_native(native: Any) -> ScalingRecipe:
    fields = json.loads(native.to_json())
    return _RECIPE_CLASSES[fields.pop("recipe")](**fields)


def recipe_from_json(value: Mapping[str, Any] | str) -> ScalingRecipe:
    """Rebuilds any recipe from its JSON (a dict from ``to_json()`` or JSON text), e.g.
    ``recipe_from_json({"recipe": "INT4Scaling", "group_size": 64})``."""
    return recipe_from_native(_core.Recipe.from_json(_json_text(value, "recipe")))


def require_recipe(recipe: Any, argument: str) -> ScalingRecipe:
    if isinstance(recipe, type) and issubclass(recipe, ScalingRecipe):
        raise TypeError(
            f"{argument} must be a recipe instance, got the class {recipe.__name__}; "
            f"call it: {recipe.__name__}()"
        )
    if not isinstance(recipe, ScalingRecipe):
        names = ", ".join(_RECIPE_CLASSES)
        raise TypeError(f"{argument} must be a recipe ({names}), got {type(recipe).__name__}")
    return recipe


class DelayedScalingState:
    """Mutable state of a DelayedScaling recipe (extension): the encode scale and amax history.

    ``cast(x, recipe, state=state)`` quantizes with the current scale, then records x's amax
    and moves the scale by TransformerEngine's "max" rule. A fresh state has encode scale 1 and
    an all-zero history.
    """

    def __init__(
        self,
        recipe: DelayedScaling,
        encode_scale: float | None = None,
        amax_history: Sequence[float] | None = None,
    ) -> None:
        if not isinstance(recipe, DelayedScaling):
            raise TypeError(f"recipe must be DelayedScaling, got {type(recipe).__name__}")
        history = None if amax_history is None else [float(value) for value in amax_history]
        self._recipe = recipe
        self._native = _core.DelayedScalingState(recipe._native, encode_scale, history)

    @property
    def recipe(self) -> DelayedScaling:
        """The recipe this state belongs to."""
        return self._recipe

    @property
    def encode_scale(self) -> float:
        """The factor the next cast multiplies by (fp32)."""
        return self._native.encode_scale

    @property
    def decode_scale(self) -> float:
        """1 / encode_scale: the ``scale`` the next cast stores."""
        return self._native.decode_scale

    @property
    def amax_history(self) -> tuple[float, ...]:
        """The recorded amaxes, most recent step first."""
        return tuple(self._native.amax_history)

    def update(self, amax: float) -> None:
        """Records one step's amax and moves the encode scale (``cast`` does this itself)."""
        self._native.update(float(amax))

    def __repr__(self) -> str:
        return (
            f"DelayedScalingState(recipe={self._recipe!r}, encode_scale={self.encode_scale!r}, "
            f"amax_history={list(self.amax_history)!r})"
        )
