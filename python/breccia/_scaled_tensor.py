"""The ScaledTensor dataclass: framework arrays plus the recipe and layout that say how to read
them. Its invariants are checked by constructing the C++ ScaledTensor over the same memory."""

from __future__ import annotations

import dataclasses
from typing import Any

from breccia import _backends, _core
from breccia.layouts import layout_from_native, require_layout
from breccia.recipes import ScalingRecipe, require_recipe


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class ScaledTensor:
    """Low-precision data with its decode scales: ``x ≈ decode(data) * scale``.

    data: the low-precision codes (float8_e4m3fn / float8_e5m2, float6_e2m3fn / float6_e3m2fn
    one per byte, or uint8; packed FP4/INT4 pairs as uint8 along the last axis). scale: the
    decode multiplier, shaped as ``layout`` says.
    recipe: a ScalingRecipe. layout: a Layout. global_scale (extension): NVFP4's per-tensor fp32
    decode factor. zero_point (extension): asymmetric INT4's uint8 zero points, shaped like
    scale. All arrays belong to one framework (NumPy, PyTorch, MLX or JAX).

    Construction validates every invariant (TypeError for non-arrays, ValueError for a missing
    recipe or layout, a 0-d data array or a scale that does not fit). Usually built by
    ``breccia.cast`` or ``breccia.from_buffer``. Frozen: use ``dataclasses.replace`` to derive
    a new one.
    """

    data: Any
    scale: Any
    recipe: Any
    layout: Any
    global_scale: Any = None
    zero_point: Any = None

    def __post_init__(self) -> None:
        arguments = _checked_arguments(*(getattr(self, f.name) for f in dataclasses.fields(self)))
        object.__setattr__(self, "_native", _core.ScaledTensor(*arguments))

    @classmethod
    def _from_buffers(
        cls,
        data: Any,
        scale: Any,
        recipe: Any,
        layout: Any,
        global_scale: Any = None,
        zero_point: Any = None,
    ) -> ScaledTensor:
        """Wraps the buffers through breccia::from_buffer, keeping the caller's objects."""
        native = _core.from_buffer(
            *_checked_arguments(data, scale, recipe, layout, global_scale, zero_point)
        )
        return cls._over(native, (data, scale, recipe, layout, global_scale, zero_point))

    @classmethod
    def _over(cls, native: Any, values: tuple[Any, ...]) -> ScaledTensor:
        """A ScaledTensor of the given field values (in field order) over a C++ ScaledTensor
        that the core built and validated over the same memory."""
        scaled = object.__new__(cls)
        for field, value in zip(dataclasses.fields(cls), values, strict=True):
            object.__setattr__(scaled, field.name, value)
        object.__setattr__(scaled, "_native", native)
        return scaled

    @classmethod
    def _from_native(cls, native: Any, backend: str, recipe: ScalingRecipe) -> ScaledTensor:
        """Wraps a C++ ScaledTensor that the core built and validated, in `backend` arrays."""
        optional = (native.global_scale, native.zero_point)
        return cls._over(
            native,
            (
                _backends.from_core(native.data, backend),
                _backends.from_core(native.scale, backend),
                recipe,
                layout_from_native(native.layout),
                None if optional[0] is None else _backends.from_core(optional[0], backend),
                None if optional[1] is None else _backends.from_core(optional[1], backend),
            ),
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """data.shape as a tuple (bytes: the last dim is halved for packed 4-bit data)."""
        return tuple(self.data.shape)

    @property
    def logical_shape(self) -> tuple[int, ...]:
        """The shape in elements (extension): the last dim doubled for packed 4-bit data."""
        return tuple(self._native.logical_shape)

    @property
    def T(self) -> ScaledTensor:
        """The last two dims swapped (extension): ``dequantize(x.T)`` equals
        ``dequantize(x).T`` exactly, and ``x.T.T`` reads as x. Formats of one element per byte
        give views of data, scale and zero points (NumPy, PyTorch; JAX and MLX copy, having no
        views) with the layout's block shape swapped: an FP8 (N, K) weight blocked along K
        becomes a (K, N) matmul operand blocked along K, nothing copied. Packed 4-bit formats
        (MXFP4, NVFP4, INT4) hold two codes per byte along the last axis, so their codes are
        repacked along the new one: a copy of the data, on the CPU only. For multiplying by an
        (N, K) weight, ``breccia.linear(x, w)`` reads every format as stored, without either.
        PerChannel tensors have no transposed layout (NotImplementedError)."""
        return self.transpose(-2, -1)

    def transpose(self, dim0: int, dim1: int) -> ScaledTensor:
        """``x.transpose(-2, -1)`` (either order, or the non-negative equivalents): ``x.T``.
        Other pairs of dims raise ValueError: the scales are laid out over the last two."""
        ndim = self.ndim
        dims = sorted(d + ndim if isinstance(d, int) and d < 0 else d for d in (dim0, dim1))
        if ndim < 2 or dims != [ndim - 2, ndim - 1]:
            raise ValueError(
                f"transpose: expected the last two dims (-2, -1) of a tensor of {ndim} dims, "
                f"got ({dim0!r}, {dim1!r})"
            )
        from breccia import _ops

        return _ops.transpose(self)

    @property
    def ndim(self) -> int:
        """data.ndim."""
        return len(self.data.shape)

    @property
    def data_dtype(self) -> Any:
        """data.dtype, in data's framework."""
        return self.data.dtype

    @property
    def scale_dtype(self) -> Any:
        """scale.dtype, in scale's framework."""
        return self.scale.dtype

    @property
    def backend(self) -> str:
        """The framework of the arrays: "numpy", "torch", "mlx" or "jax"."""
        return _backends.backend_of(self.data)

    def __repr__(self) -> str:
        return repr(self._native)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(getattr(self, field.name) for field in dataclasses.fields(self))


def _checked_arguments(
    data: Any, scale: Any, recipe: Any, layout: Any, global_scale: Any, zero_point: Any
) -> tuple[Any, ...]:
    """The C++ constructor's arguments, after the checks that need no conversion."""
    _backends.require_array_like(data, "data")
    _backends.require_array_like(scale, "scale")
    if recipe is None:
        raise ValueError(
            "recipe is required (a ScalingRecipe such as Float8CurrentScaling()), got None"
        )
    if layout is None:
        raise ValueError("layout is required (a Layout such as PerTensor()), got None")
    require_recipe(recipe, "recipe")
    require_layout(layout, "layout")
    arrays = {"data": data, "scale": scale}
    for name, value in (("global_scale", global_scale), ("zero_point", zero_point)):
        if value is not None:
            _backends.require_array_like(value, name)
            arrays[name] = value
    same_backend(arrays)
    core = {name: _backends.to_core(value, name) for name, value in arrays.items()}
    return (
        core["data"],
        core["scale"],
        recipe._native,
        layout._native,
        core.get("global_scale"),
        core.get("zero_point"),
    )


def same_backend(arrays: dict[str, Any]) -> str:
    """The one framework all `arrays` belong to; ValueError when they mix frameworks."""
    backends = {name: _backends.backend_of(value) for name, value in arrays.items()}
    if len(set(backends.values())) > 1:
        listing = ", ".join(f"{name} is {backend}" for name, backend in backends.items())
        raise ValueError(
            f"arrays from different frameworks cannot be mixed ({listing}); "
            "convert them to one framework first"
        )
    return next(iter(backends.values()))


def require_scaled(scaled: Any, argument: str) -> ScaledTensor:
    if not isinstance(scaled, ScaledTensor):
        raise TypeError(f"{argument} must be a breccia.ScaledTensor, got {type(scaled).__name__}")
    return scaled


__all__ = ["ScaledTensor"]
