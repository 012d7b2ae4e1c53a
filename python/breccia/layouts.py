"""The four scale layouts: where each scale applies over the last two axes of the data.

Frozen, hashable, picklable dataclasses validated by the C++ core; ``validate(data, scale)``
raises ValueError (with the expected and actual shapes) when a scale does not fit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from breccia import _backends, _core
from breccia.recipes import _build_native, _field_values, _json_text


class Layout:
    """Base class of the four layouts."""

    _native: Any

    def __post_init__(self) -> None:
        _build_native(self, _core.Layout.from_json, "layout")

    def validate(self, data: Any, scale: Any, logical_shape: Sequence[int] | None = None) -> None:
        """Raises ValueError unless ``scale``'s shape fits this layout over ``data``.

        logical_shape (extension): the data's shape in elements, for packed 4-bit data whose
        last byte dimension is half the element count; ``data.shape`` by default.
        """
        _backends.require_array_like(data, "data")
        _backends.require_array_like(scale, "scale")
        shape = tuple(data.shape) if logical_shape is None else tuple(logical_shape)
        self._native.validate(list(shape), _backends.to_core(scale, "scale"))

    def to_json(self) -> dict[str, Any]:
        """The layout as a JSON-ready dict, e.g. ``{"layout": "PerBlockK", "block_size": 128}``."""
        return json.loads(self._native.to_json())

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str) -> Layout:
        """Rebuilds a layout from ``to_json()`` output (a dict or its JSON text)."""
        layout = layout_from_json(value)
        if not isinstance(layout, cls):
            raise ValueError(
                f"{cls.__name__}.from_json: the JSON describes {type(layout).__name__}"
            )
        return layout

    def __repr__(self) -> str:
        return repr(self._native)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(_field_values(self).values())


def _layout(cls: type) -> type:
    return dataclasses.dataclass(frozen=True, repr=False)(cls)


@_layout
class PerTensor(Layout):
    """One scale for the whole tensor: scale shape () or (1,). Used by DelayedScaling and
    Float8CurrentScaling."""


@_layout
class PerBlockK(Layout):
    """One scale per block_size elements of the last axis: scale shape (..., K / block_size).
    Used by Float8BlockScaling and INT4Scaling."""

    block_size: int = 128


@_layout
class PerChannel(Layout):
    """One scale per row: scale shape (M,) or (..., M, 1). Used by INT4 row-wise quantization."""


@_layout
class PerBlockMN(Layout):
    """One scale per block_m x block_n tile of the last two axes: scale shape
    (..., ceil(M / block_m), ceil(N / block_n)). MXFP8 uses (1, 32), NVFP4 (1, 16); (32, 1) is
    a columnwise block (``cast(..., axis=-2)``)."""

    block_m: int = 1
    block_n: int = 32


LAYOUTS: tuple[type[Layout], ...] = (PerTensor, PerBlockK, PerChannel, PerBlockMN)
_LAYOUT_CLASSES = {cls.__name__: cls for cls in LAYOUTS}


def layout_from_native(native: Any) -> Layout:
    fields = json.loads(native.to_json())
    return _LAYOUT_CLASSES[fields.pop("layout")](**fields)


def layout_from_json(value: Mapping[str, Any] | str) -> Layout:
    """Rebuilds any layout from its JSON (a dict from ``to_json()`` or JSON text)."""
    return layout_from_native(_core.Layout.from_json(_json_text(value, "layout")))


def require_layout(layout: Any, argument: str) -> Layout:
    if isinstance(layout, type) and issubclass(layout, Layout):
        raise TypeError(
            f"{argument} must be a layout instance, got the class {layout.__name__}; "
            f"call it: {layout.__name__}()"
        )
    if not isinstance(layout, Layout):
        names = ", ".join(_LAYOUT_CLASSES)
        raise TypeError(f"{argument} must be a layout ({names}), got {type(layout).__name__}")
    return layout


__all__ = ["Layout", "PerBlockK", "PerBlockMN", "PerChannel", "PerTensor", "layout_from_json"]
