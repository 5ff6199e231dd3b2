"""Backbones by timm name, returning the feature maps of chosen stages."""

from __future__ import annotations

from collections.abc import Sequence

import timm
from torch import nn


def create_backbone(
    name: str, *, in_chans: int, out_indices: Sequence[int], pretrained: bool = False
) -> nn.Module:
    """A timm model in ``features_only`` mode; ``feature_info`` gives channels and strides.

    Any model timm can build in this mode works (``resnet50``, ``densenet121``,
    ``convnext_tiny`` ...). ``pretrained=True`` needs the weights to be downloadable.
    """
    try:
        return timm.create_model(
            name,
            pretrained=pretrained,
            features_only=True,
            out_indices=tuple(out_indices),
            in_chans=in_chans,
        )
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Invalid model" in str(exc):
            import difflib

            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"timm does not know backbone {name!r}.{hint}") from None
        raise
