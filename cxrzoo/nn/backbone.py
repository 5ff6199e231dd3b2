"""Backbones by timm name, returning the feature maps of chosen stages."""

from __future__ import annotations

from collections.abc import Sequence

import timm
from torch import nn


def create_backbone(
    name: str, *, in_chans: int, out_indices: Sequence[int], pretrained: bool | str = False
) -> nn.Module:
    """A timm model in ``features_only`` mode; ``feature_info`` gives channels and strides.

    Any model timm can build in this mode works (``resnet50``, ``densenet121``,
    ``convnext_tiny`` ...). ``pretrained`` is the config's weight source
    (:func:`cxrzoo.config.weight_source`): ``False`` for a random initialisation, ``True`` for
    timm's own weights (downloaded, with timm's ``in_chans`` adaptation), or a weight source spec
    (``timm:NAME``, ``torchvision:NAME``, a checkpoint file, a store name …) loaded by the core
    loader :func:`cxrzoo.weights.apply_init`: tensors matched by name and shape, a three-channel
    stem folded to ``in_chans``.
    """
    try:
        model = timm.create_model(
            name,
            pretrained=pretrained is True,
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
    if isinstance(pretrained, str) and pretrained:
        from cxrzoo.weights import apply_init

        apply_init(model, pretrained)
    return model
