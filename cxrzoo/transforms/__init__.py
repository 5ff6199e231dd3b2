"""Preprocessing and augmentation steps, registered by name as transform plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrzoo.transforms.base import Preprocessing, Spec, Transform, TransformError, parse_spec

__all__ = ["Preprocessing", "Spec", "Transform", "TransformError", "parse_spec"]


def __getattr__(name: str) -> Any:
    # base imports torch: loaded on first use, so that registering the transforms (which
    # imports this package) stays cheap.
    if name in __all__:
        from cxrzoo.transforms import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
