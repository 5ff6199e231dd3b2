"""Losses that respect unknown labels (NaN): an unknown is never read as negative."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy over the known targets only (NaN = unknown contributes nothing).

    With every target known it equals ``F.binary_cross_entropy_with_logits`` (mean reduction).
    """
    known = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(
        logits,
        torch.where(known, targets, torch.zeros_like(targets)),
        pos_weight=pos_weight,
        reduction="none",
    )
    return (losses * known).sum() / known.sum().clamp(min=1)
