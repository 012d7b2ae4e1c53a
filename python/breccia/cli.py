"""The ``breccia`` command: inspect, convert, verify and diff whole checkpoints.

A thin front end (click for the arguments, tqdm for progress) over ``breccia.checkpoint``,
whose work happens in the C++ engine. Errors are one line on stderr naming the file and the
tensor, with exit status 1; ``verify`` and ``diff`` exit 1 when they find a problem or a
difference, 2 on a usage error.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import Counter
from typing import Any, NoReturn

import click
from tqdm import tqdm

import breccia
from breccia import checkpoint

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _parse_size(text: str) -> int:
    """'5GB' -> 5e9, '512MiB' -> 512 * 2^20, '1000' -> 1000."""
    match = _SIZE.match(text)
    if match is None:
        raise click.BadParameter(f"expected a size such as 5GB or 512MiB, got {text!r}")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    scale = _UNITS.get(unit[:1], 1)
    if "I" in unit:
        scale = 1 << (10 * "KMGT".index(unit[0]) + 10)
    size = int(number * scale)
    if size <= 0:
        raise click.BadParameter(f"expected a positive size, got {text!r}")
    return size


def _bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1000
    return f"{count:.2f} TB"


def _fail(message: str) -> NoReturn:
    click.echo(f"breccia: error: {message}", err=True)
    sys.exit(1)


def _run(action: Any, *args: Any, **kwargs: Any) -> Any:
    """Calls into breccia, turning its exceptions into one-line errors and exit status 1."""
    try:
        return action(*args, **kwargs)
    except KeyboardInterrupt:
        click.echo("breccia: interrupted; no file was left half-written", err=True)
        sys.exit(130)
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        _fail(str(error))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(breccia.__version__, prog_name="breccia")
def main() -> None:
    """Low-precision checkpoints: inspect, convert, verify and diff model directories and
    safetensors files (FP8, MXFP8/MXFP4, NVFP4, INT4 and the conventions of DeepSeek,
    compressed-tensors/vLLM and ModelOpt)."""


# --- inspect ---------------------------------------------------------------------------------


def _shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _summary(infos: list[checkpoint.TensorInfo]) -> list[str]:
    by_kind: Counter[tuple[str, str]] = Counter()
    size: Counter[tuple[str, str]] = Counter()
    for info in infos:
        key = (info.convention, info.format.split("(")[0])
        by_kind[key] += 1
        size[key] += info.bytes
    lines = [f"{'convention':<20} {'format':<24} {'tensors':>8} {'bytes':>12}"]
    for key in sorted(by_kind):
        lines.append(f"{key[0]:<20} {key[1]:<24} {by_kind[key]:>8} {_bytes(size[key]):>12}")
    return lines


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--problems-only", is_flag=True, help="List only the tensors with problems.")
def inspect(path: str, as_json: bool, problems_only: bool) -> None:
    """List every tensor of a checkpoint (a model directory or a .safetensors file): stored
    dtype, logical shape, the convention and recipe detected, scale shape, bytes and problems
    (NaN/inf/zero scales, E8M0 codes out of range, FP8 data without scales, orphaned scales)."""
    infos = _run(checkpoint.inspect, path)
    problems = sum(len(info.problems) for info in infos)
    if as_json:
        document = {
            "path": path,
            "tensors": [info.__dict__ for info in infos],
            "problems": problems,
        }
        click.echo(json.dumps(document, indent=1))
        return
    click.echo(f"{'name':<56} {'convention':<18} {'format':<36} {'shape':<16} {'scale':<12} bytes")
    for info in infos:
        if problems_only and not info.problems:
            continue
        click.echo(
            f"{info.name:<56} {info.convention:<18} {info.format[:36]:<36} "
            f"{_shape(info.shape):<16} {_shape(info.scale_shape):<12} {_bytes(info.bytes)}"
        )
        for problem in info.problems:
            click.echo(f"    problem: {problem}")
    click.echo("")
    for line in _summary(infos):
        click.echo(line)
    total = sum(info.bytes for info in infos)
    click.echo(f"{len(infos)} tensors, {_bytes(total)}, {problems} problem(s)")


# --- convert ---------------------------------------------------------------------------------


class _ProgressBar:
    """tqdm on a terminal (bytes, throughput, ETA); a log line per shard otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm[Any] | None = None
        self.last_note = ""

    def __call__(
        self, done: int, total: int, tensors: int, tensors_total: int, current: str
    ) -> None:
        if self.quiet:
            return
        if self.bar is None and sys.stderr.isatty():
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="convert", file=sys.stderr)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(f"{tensors}/{tensors_total} tensors", refresh=False)
        elif current.endswith(".safetensors") and current != self.last_note:
            self.last_note = current
            click.echo(f"writing {current} ({tensors}/{tensors_total} tensors)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@main.command()
@click.argument("source", type=click.Path(exists=True))
@click.argument("destination", type=click.Path())
@click.option(
    "--to",
    "format",
    required=True,
    type=click.Choice(checkpoint.FORMATS),
    help="The format of the weight matrices written.",
)
@click.option(
    "--convention",
    type=click.Choice(
        ["breccia", "deepseek-v3", "deepseek-v4", "compressed-tensors", "modelopt", "gpt-oss"]
    ),
    help="How the output stores them (default: what the format's serving stacks load).",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="REGEX",
    help="Also keep tensors whose names match REGEX high precision (repeatable).",
)
@click.option(
    "--no-default-ignore", is_flag=True, help="Quantize embeddings, lm_head, norms and routers too."
)
@click.option(
    "--format-for",
    "format_for",
    multiple=True,
    metavar="REGEX=FORMAT",
    help="Mixed precision: weights whose names match REGEX take FORMAT instead of --to's "
    "(repeatable; the first match wins), e.g. 'self_attn=fp8' with --to nvfp4.",
)
@click.option(
    "--group-size",
    type=int,
    default=128,
    show_default=True,
    help="int4: elements per scale (-1: one per row).",
)
@click.option("--asymmetric", is_flag=True, help="int4: unsigned codes with zero points.")
@click.option(
    "--int4-scale-dtype",
    type=click.Choice(["bf16", "fp16", "fp32"]),
    default="bf16",
    show_default=True,
    help="int4: the dtype of the scales.",
)
@click.option(
    "--scale-rounding",
    type=click.Choice(["floor", "rceil"]),
    default="floor",
    show_default=True,
    help="mxfp8, mxfp4: E8M0 scale rounding.",
)
@click.option(
    "--fp8-format",
    type=click.Choice(["E4M3", "E5M2"], case_sensitive=False),
    default="E4M3",
    show_default=True,
)
@click.option(
    "--max-shard-size",
    default="5GB",
    show_default=True,
    help="Largest output shard (5GB, 512MiB, ...).",
)
@click.option("--threads", type=int, help="CPU threads (default: all cores).")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where the casts run: cpu, cuda or cuda:N (a build with CUDA kernels).",
)
@click.option("--overwrite", is_flag=True, help="Write into a non-empty DESTINATION.")
@click.option("--resume", is_flag=True, help="Keep the shards an interrupted run completed.")
@click.option(
    "--validate",
    type=click.Choice(["error", "warn", "off"]),
    default="error",
    show_default=True,
    help="What numeric anomalies in the source do.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress, no summary.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
def convert(
    source: str,
    destination: str,
    format: str,
    convention: str | None,
    ignore: tuple[str, ...],
    no_default_ignore: bool,
    format_for: tuple[str, ...],
    group_size: int,
    asymmetric: bool,
    int4_scale_dtype: str,
    scale_rounding: str,
    fp8_format: str,
    max_shard_size: str,
    threads: int | None,
    device: str,
    overwrite: bool,
    resume: bool,
    validate: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Convert the checkpoint SOURCE into the directory DESTINATION: weights to --to's format
    (bf16/fp16/fp32 dequantize), shards written atomically, then config.json with the
    convention's quantization_config, the tokenizer and other files, and the index."""
    if threads is not None:
        if threads < 1:
            raise click.BadParameter(f"expected at least 1, got {threads}", param_hint="--threads")
        breccia.set_num_threads(threads)
    shard_bytes = _parse_size(max_shard_size)
    overrides = []
    for item in format_for:
        pattern, _, chosen = item.rpartition("=")
        if not pattern or chosen not in checkpoint.FORMATS:
            raise click.BadParameter(
                f"expected REGEX=FORMAT with FORMAT one of {', '.join(checkpoint.FORMATS)}, "
                f"got {item!r}",
                param_hint="--format-for",
            )
        overrides.append((pattern, chosen))
    bar = _ProgressBar(quiet or as_json)
    started = time.perf_counter()
    try:
        report = _run(
            checkpoint.convert,
            source,
            destination,
            format,
            convention=convention,
            ignore=ignore,
            default_ignore=not no_default_ignore,
            format_for=overrides,
            group_size=group_size,
            int4_signed=not asymmetric,
            int4_scale_dtype=int4_scale_dtype,
            scale_rounding=scale_rounding,
            fp8_format=fp8_format.upper(),
            max_shard_bytes=shard_bytes,
            overwrite=overwrite,
            resume=resume,
            validate=validate,
            device=device,
            progress=bar,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    if as_json:
        document = {
            **report.__dict__,
            "tensors": [t.__dict__ for t in report.tensors],
            "seconds": seconds,
        }
        click.echo(json.dumps(document, indent=1))
        return
    if quiet:
        return
    actions = Counter(t.action for t in report.tensors)
    quantized = format not in ("bf16", "fp16", "fp32")
    click.echo(
        f"{source} -> {destination}"
        + (f" ({format}, {report.convention} convention): " if quantized else f" ({format}): ")
        + ", ".join(f"{count} {action}" for action, count in sorted(actions.items()))
    )
    kept = [t for t in report.tensors if t.action == "kept" and t.detail]
    for item in kept[:8]:
        click.echo(f"  kept {item.name}: {item.detail}")
    if len(kept) > 8:
        click.echo(f"  ... and {len(kept) - 8} more kept")
    rate = report.bytes_read / seconds / 1e9 if seconds > 0 else math.inf
    click.echo(
        f"read {_bytes(report.bytes_read)}, wrote {_bytes(report.bytes_written)} in "
        f"{len(report.shards)} shard(s)"
        + (
            f" ({len(report.resumed_shards)} kept from an earlier run)"
            if report.resumed_shards
            else ""
        )
        + f" in {seconds:.1f} s ({rate:.2f} GB/s read)"
    )


# --- verify and diff -------------------------------------------------------------------------


def _comparisons(
    value_path: str, reference_path: str
) -> tuple[list[checkpoint.Comparison], list[str], list[str]]:
    value = _run(checkpoint.load, value_path)
    reference = _run(checkpoint.load, reference_path)
    only_value = sorted(set(value) - set(reference))
    only_reference = sorted(set(reference) - set(value))
    return _run(checkpoint.compare, value, reference), only_value, only_reference


def _sqnr(db: float) -> str:
    return "exact" if math.isinf(db) and db > 0 else ("n/a" if math.isnan(db) else f"{db:.1f} dB")


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--against",
    type=click.Path(exists=True),
    help="The source checkpoint: report per-tensor SQNR and largest error.",
)
@click.option("--min-sqnr", type=float, help="With --against: fail below this SQNR (dB).")
def verify(path: str, against: str | None, min_sqnr: float | None) -> None:
    """Fail (exit 1) on every problem inspect finds; with --against, compare each tensor with
    the source's."""
    infos = _run(checkpoint.inspect, path)
    failures = [problem for info in infos for problem in info.problems]
    for problem in failures:
        click.echo(f"FAIL {problem}")
    if against is not None:
        comparisons, _, _ = _comparisons(path, against)
        for item in comparisons:
            bad = min_sqnr is not None and not item.sqnr_db >= min_sqnr
            if bad:
                failures.append(item.name)
            click.echo(
                f"{'FAIL' if bad else 'ok  '} {item.name}: SQNR {_sqnr(item.sqnr_db)}, "
                f"max error {item.max_abs_error:.3g}"
            )
    click.echo(f"{len(infos)} tensors, {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


@main.command()
@click.argument("a", type=click.Path(exists=True))
@click.argument("b", type=click.Path(exists=True))
def diff(a: str, b: str) -> None:
    """Compare two checkpoints tensor by tensor (decoded values: equal, SQNR, largest error);
    exit 1 when they differ."""
    comparisons, only_a, only_b = _comparisons(a, b)
    differ = len(only_a) + len(only_b)
    for name in only_a:
        click.echo(f"only in A: {name}")
    for name in only_b:
        click.echo(f"only in B: {name}")
    for item in comparisons:
        if item.mismatches == 0:
            continue
        differ += 1
        click.echo(
            f"{item.name}: {item.mismatches} value(s) differ, SQNR {_sqnr(item.sqnr_db)}, "
            f"max error {item.max_abs_error:.3g}"
        )
    click.echo(f"{len(comparisons)} tensors in both, {differ} difference(s)")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
