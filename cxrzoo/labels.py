"""Findings: the 14 NIH ChestX-ray14 labels, and the vocabulary every data source maps into.

:data:`LABELS` is the default output order of a model. :data:`VOCABULARY` holds every finding
cxrzoo knows (NIH's 14 first, then those of the other public sets), each under one canonical
name; :func:`canonical` maps the names data sets publish (CheXpert's "Pleural Effusion",
VinDr-CXR's "Pleural effusion", PadChest's "pleural effusion" …) onto it. A data source
declares its own label names; :func:`align` lines its label matrix up with a model's labels.
"""

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

#: Findings beyond NIH's 14, as the other public sets name them (canonical spelling).
OTHER_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Lung Opacity",
    "Lung Lesion",
    "Fracture",
    "Support Devices",
    "Pleural Other",
    "Tuberculosis",
    "COVID-19",
    "Aortic Enlargement",
    "Calcification",
    "Interstitial Lung Disease",
    "Lung Cavity",
    "Lung Cyst",
    "Mediastinal Shift",
    "Enlarged PA",
    "COPD",
    "Lung Tumor",
    "Other Lesion",
    "Other Disease",
    "Rib Fracture",
    "Clavicle Fracture",
    "Granuloma",
    "Scoliosis",
    "Kyphosis",
    "Bronchiectasis",
    "Hilar Enlargement",
    "Aortic Elongation",
)

#: CheXpert's 14 label columns as its train.csv and valid.csv publish them (also MIMIC-CXR's
#: chexpert/negbio label files), in that order.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: Every finding cxrzoo knows, in a fixed order: NIH's 14, then the others.
VOCABULARY: tuple[str, ...] = LABELS + OTHER_FINDINGS

#: Other spellings of vocabulary findings (compared case- and separator-insensitively).
SYNONYMS: Mapping[str, str] = {
    "Pleural Effusion": "Effusion",
    "Pleural Thickening": "Pleural_Thickening",
    "Pleural_Thickening": "Pleural_Thickening",
    "Hiatal Hernia": "Hernia",
    "Nodule/Mass": "Mass",
    "Pulmonary Fibrosis": "Fibrosis",
    "ILD": "Interstitial Lung Disease",
    "Normal": "No Finding",
    "No finding": "No Finding",
    "Aortic enlargement": "Aortic Enlargement",
    "Cardiomegalia": "Cardiomegaly",
    "Covid": "COVID-19",
    "COVID19": "COVID-19",
    "Atelectasis": "Atelectasis",
    "Laminar Atelectasis": "Atelectasis",
    "Lobar Atelectasis": "Atelectasis",
    "Pulmonary Mass": "Mass",
    "Pulmonary Edema": "Edema",
    "Infiltrates": "Infiltration",
    "Alveolar Pattern": "Consolidation",
    "Interstitial Pattern": "Interstitial Lung Disease",
    "Pneumothorax": "Pneumothorax",
    "Costophrenic Angle Blunting": "Effusion",
    "Chronic Changes": "Other Disease",
    "Pacemaker": "Support Devices",
    "Endotracheal Tube": "Support Devices",
    "NSG Tube": "Support Devices",
    "Central Venous Catheter": "Support Devices",
    "Tuberculosis Sequelae": "Tuberculosis",
    "Bone Fracture": "Fracture",
    "Callus Rib Fracture": "Rib Fracture",
    "Other diseases": "Other Disease",
    "Other lesions": "Other Lesion",
    "Enlarged Pulmonary Artery": "Enlarged PA",
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


_CANONICAL: dict[str, str] = {_key(n): n for n in VOCABULARY}
_CANONICAL.update({_key(k): v for k, v in SYNONYMS.items()})


def canonical(name: str) -> str | None:
    """The vocabulary name of ``name`` (a published spelling or a synonym), or None."""
    return _CANONICAL.get(_key(str(name)))


def in_vocabulary(name: str) -> bool:
    """Whether ``name`` is a canonical vocabulary finding (exact spelling)."""
    return name in _VOCABULARY_SET or name in _EXTRA


_VOCABULARY_SET = frozenset(VOCABULARY)
_EXTRA: dict[str, str] = {}


def register_finding(name: str, *, synonyms: tuple[str, ...] = (), source: str = "plugin") -> None:
    """Add a finding to the vocabulary (for a data set whose labels cxrzoo does not know yet)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"A finding needs a non-empty name, got {name!r}")
    existing = canonical(name)
    if existing is not None and existing != name:
        raise ValueError(f"{name!r} is already known as {existing!r}; register synonyms for that name")
    _EXTRA.setdefault(name, source)
    _CANONICAL[_key(name)] = name
    for syn in synonyms:
        _CANONICAL.setdefault(_key(syn), name)


def vocabulary() -> tuple[str, ...]:
    """Every known finding: :data:`VOCABULARY` plus those registered by plugins."""
    return VOCABULARY + tuple(n for n in _EXTRA if n not in _VOCABULARY_SET)


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


def align(
    source_labels: tuple[str, ...] | list[str], matrix: object, model_labels: tuple[str, ...] | list[str]
) -> tuple[object, object]:
    """Line a source's label matrix up with a model's labels.

    ``matrix`` is ``[N, len(source_labels)]`` of 1 / 0 / NaN (unknown). Returns
    ``(targets, known)``: ``targets`` ``[N, len(model_labels)]`` float32 with NaN wherever the
    source does not know the finding (every image, for a model label the source lacks), and
    ``known`` the boolean mask of the entries that are not NaN. Names are matched through
    :func:`canonical`, so CheXpert's "Pleural Effusion" fills a model's "Effusion".
    """
    import numpy as np

    values = np.asarray(matrix, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(source_labels):
        raise ValueError(
            f"label matrix has shape {values.shape}, expected [N, {len(source_labels)}] for "
            f"{len(source_labels)} source labels"
        )
    position = {}
    for j, name in enumerate(source_labels):
        position.setdefault(canonical(name) or name, j)
    targets = np.full((values.shape[0], len(model_labels)), np.nan, dtype=np.float32)
    for k, name in enumerate(model_labels):
        j = position.get(canonical(name) or name)
        if j is not None:
            targets[:, k] = values[:, j]
    return targets, ~np.isnan(targets)


def table_targets(table: object, model_labels: tuple[str, ...] | list[str]) -> object:
    """The ``[N, len(model_labels)]`` float32 targets of a dataset table, NaN where unknown.

    A table carries one column per finding its source declares (1 / 0 / NaN); its other
    columns (image, path, patient …) are not findings. A model label that no column names is
    NaN for every image: the data say nothing about it, which is not "negative".
    """
    columns = [c for c in table.columns if isinstance(c, str) and (canonical(c) or c in _EXTRA)]  # type: ignore[attr-defined]
    matrix = table[columns].to_numpy(dtype="float32") if columns else None  # type: ignore[index]
    if matrix is None:
        import numpy as np

        return np.full((len(table), len(model_labels)), np.nan, dtype=np.float32)  # type: ignore[arg-type]
    return align(columns, matrix, model_labels)[0]
