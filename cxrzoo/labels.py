"""The 14 NIH ChestX-ray14 findings, in the one order every cxrzoo tensor uses."""

from __future__ import annotations

from collections.abc import Mapping

#: Column order of every label vector, logit and probability in cxrzoo.
LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NUM_LABELS = len(LABELS)
NO_FINDING = "No Finding"

#: Findings the founding report treats as rare whatever the counts say.
DEFAULT_RARE: tuple[str, ...] = ("Hernia", "Pneumonia", "Edema")

#: Share of images with each finding in the full NIH release (112,120 images, v2020 labels).
NIH_PREVALENCE: Mapping[str, float] = {
    "Atelectasis": 11_559 / 112_120,
    "Cardiomegaly": 2_776 / 112_120,
    "Effusion": 13_317 / 112_120,
    "Infiltration": 19_894 / 112_120,
    "Mass": 5_782 / 112_120,
    "Nodule": 6_331 / 112_120,
    "Pneumonia": 1_431 / 112_120,
    "Pneumothorax": 5_302 / 112_120,
    "Consolidation": 4_667 / 112_120,
    "Edema": 2_303 / 112_120,
    "Emphysema": 2_516 / 112_120,
    "Fibrosis": 1_686 / 112_120,
    "Pleural_Thickening": 3_385 / 112_120,
    "Hernia": 227 / 112_120,
}

#: A finding with a smaller share of training images than this counts as rare.
RARE_PREVALENCE = 0.02


def label_index(name: str) -> int:
    """Position of ``name`` in :data:`LABELS`; a clear error for an unknown finding."""
    try:
        return LABELS.index(name)
    except ValueError:
        import difflib

        close = difflib.get_close_matches(name, LABELS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown finding {name!r}.{hint} Known: {', '.join(LABELS)}") from None


def rare_labels(
    prevalence: Mapping[str, float] | None = None,
    *,
    threshold: float = RARE_PREVALENCE,
    always: tuple[str, ...] = DEFAULT_RARE,
) -> tuple[str, ...]:
    """Rare findings: ``always`` plus every finding whose prevalence is below ``threshold``.

    Returned in :data:`LABELS` order so that heads built from it are stable.
    """
    for name in always:
        label_index(name)
    rare = set(always)
    if prevalence is not None:
        rare |= {name for name, p in prevalence.items() if p < threshold}
    return tuple(name for name in LABELS if name in rare)


def common_labels(rare: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in LABELS if name not in rare)
