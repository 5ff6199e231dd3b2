"""Preprocessing and augmentation steps, registered by name as transform plugins."""

from cxrzoo.transforms.base import Preprocessing, Spec, Transform, TransformError, parse_spec

__all__ = ["Preprocessing", "Spec", "Transform", "TransformError", "parse_spec"]
