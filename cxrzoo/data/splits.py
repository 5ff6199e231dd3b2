"""Sampling a fraction of a dataset by label, and patient-wise train / validation / test splits.

The founding pipeline: sample ``fraction`` of the official train_val list and of the official
test list separately, stratified by label so that rare findings survive; split the sampled
train_val by patient (no patient on both sides); keep the sampled test list as it is. On the
full NIH release a 5% sample gives exactly 3,460 train / 866 validation / 1,280 test images.

Counts follow scikit-learn's ``train_test_split``: a sample has ``round(fraction * n)`` images
and validation gets ``ceil(val_fraction * n_sampled)`` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxrzoo.data.base import TEST, TRAIN_VAL, VAL, label_columns
from cxrzoo.labels import NO_FINDING

SPLIT_NAMES = ("train", "val", "test")
# Guards ceil() against products such as 0.1 * 30 = 3.0000000000000004.
_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class Splits:
    """Train, validation and test tables and how they were made."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    fraction: float
    seed: int
    val_fraction: float
    test_source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def items(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def distribution(self) -> pd.DataFrame:
        """Positives per label (and No Finding, and all images) per split: count and %."""
        return class_distribution(self.items())

    def summary(self) -> str:
        """A printable account: sizes, patients, notes and the class distribution."""
        sampled = "All images" if self.fraction == 1.0 else f"A {self.fraction:g} sample of each list"
        head = [
            f"{sampled} (seed {self.seed}); validation is {self.val_fraction:g} of train_val, "
            f"by patient; test is {self.test_source}."
        ]
        for name, df in self.items().items():
            head.append(f"{name:>5}: {len(df):>7,} images, {df['patient'].nunique():>6,} patients")
        head.extend(f"note: {note}" for note in self.notes)
        return "\n".join(head) + "\n\n" + format_distribution(self.distribution())

    def to_dict(self) -> dict[str, Any]:
        splits: dict[str, Any] = {}
        for name, df in self.items().items():
            labels = label_columns(df)
            values = df[labels].to_numpy(dtype=np.float64)
            findings = [c for c in labels if c != NO_FINDING]
            splits[name] = {
                "images": len(df),
                "patients": int(df["patient"].nunique()),
                "labels": {label: int((values[:, j] == 1.0).sum()) for j, label in enumerate(labels)},
                "no_finding": int((~(df[findings].to_numpy(dtype=np.float64) == 1.0).any(axis=1)).sum()),
            }
            if np.isnan(values).any():
                splits[name]["unknown"] = {
                    label: int(np.isnan(values[:, j]).sum()) for j, label in enumerate(labels)
                }
            if "source" in df.columns and df["source"].nunique() > 1:
                splits[name]["sources"] = {
                    str(k): int(v) for k, v in df["source"].value_counts(sort=False).items()
                }
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_source": self.test_source,
            "notes": list(self.notes),
            "splits": splits,
        }


def make_splits(
    table: pd.DataFrame,
    fraction: float = 1.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    *,
    test_fraction: float = 0.2,
) -> Splits:
    """Sample ``fraction`` of each list by label and split train_val by patient.

    ``table`` is a dataset table (:meth:`~cxrzoo.data.base.DatasetSource.table`), of one source
    or of several (a ``source`` column with several values): each source is then split on its
    own and the splits are joined. Stratification uses whatever label columns the table has,
    counting 1 as positive and NaN as unknown (never as negative). A source's official lists are
    honoured: ``test`` is kept as the test split, ``val`` (where a data set publishes a validation
    split) as the validation split, and only ``train_val`` is split by patient. Without a
    ``test`` list, ``test_fraction`` of the images (of train_val where there are lists), chosen by
    patient, become the test split, and the notes say so. Deterministic for a given ``seed``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if "source" in table.columns and table["source"].nunique(dropna=False) > 1:
        return _splits_per_source(table, fraction, seed, val_fraction, test_fraction)
    sample_rng, val_rng, test_rng, fallback_rng, official_val_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    notes: list[str] = []
    lists = table["list"]
    official_val: pd.DataFrame | None = None
    if lists.notna().any():
        unlisted = int(lists.isna().sum())
        if unlisted:
            notes.append(f"{unlisted} image(s) in neither train_val_list.txt nor test_list.txt are not used")
        train_val = table.loc[lists == TRAIN_VAL]
        if (lists == VAL).any():
            official_val = table.loc[lists == VAL]
        if (lists == TEST).any():
            test_source = "the official test list"
            test = table.loc[lists == TEST]
            shared = set(train_val["patient"]) & set(test["patient"])
            if shared:
                notes.append(f"{len(shared)} patient(s) have images in both the train_val and the test list")
        else:
            test_source = (
                f"a patient-wise {test_fraction:g} of train_val (the data set publishes no test list)"
            )
            notes.append(f"no official test list: test is a patient-wise {test_fraction:g} of train_val")
            n_test = math.ceil(test_fraction * len(train_val) - _EPS)
            train_val, test = split_by_patient(train_val, n_test, fallback_rng)
    else:
        test_source = f"a patient-wise {test_fraction:g} of the images (no train_val/test lists)"
        notes.append(
            f"no train_val_list.txt/test_list.txt: test is a patient-wise {test_fraction:g} of the data"
        )
        n_test = math.ceil(test_fraction * len(table) - _EPS)
        train_val, test = split_by_patient(table, n_test, fallback_rng)

    if fraction < 1.0:
        train_val = stratified_sample(train_val, fraction, sample_rng)
        test = stratified_sample(test, fraction, test_rng)
        if official_val is not None:
            official_val = stratified_sample(official_val, fraction, official_val_rng)
    if official_val is not None:
        train, val = train_val, official_val
        notes.append("validation is the data set's official validation list")
        shared = set(train["patient"]) & set(val["patient"])
        if shared:
            notes.append(
                f"{len(shared)} patient(s) have images in both train_val and the official validation list"
            )
    else:
        n_val = math.ceil(val_fraction * len(train_val) - _EPS)
        train, val = split_by_patient(train_val, n_val, val_rng)
        if len(val) != n_val:
            notes.append(f"validation has {len(val)} images, not {n_val}: patients cannot be divided exactly")
    return Splits(
        train=train.reset_index(drop=True),
        val=val.sort_index().reset_index(drop=True)
        if official_val is not None
        else val.reset_index(drop=True),
        test=test.sort_index().reset_index(drop=True),
        fraction=fraction,
        seed=seed,
        val_fraction=val_fraction,
        test_source=test_source,
        notes=tuple(notes),
    )


def _splits_per_source(
    table: pd.DataFrame, fraction: float, seed: int, val_fraction: float, test_fraction: float
) -> Splits:
    keys = list(dict.fromkeys(table["source"].tolist()))
    parts = {
        key: make_splits(
            table.loc[table["source"] == key], fraction, seed, val_fraction, test_fraction=test_fraction
        )
        for key in keys
    }
    return Splits(
        train=pd.concat([p.train for p in parts.values()], ignore_index=True),
        val=pd.concat([p.val for p in parts.values()], ignore_index=True),
        test=pd.concat([p.test for p in parts.values()], ignore_index=True),
        fraction=fraction,
        seed=seed,
        val_fraction=val_fraction,
        test_source="; ".join(f"{key}: {p.test_source}" for key, p in parts.items()),
        notes=tuple(f"{key}: {note}" for key, p in parts.items() for note in p.notes),
    )


def positives(table: pd.DataFrame, labels: list[str] | None = None) -> np.ndarray:
    """Boolean ``[N, L]``: where a label is known positive (NaN, unknown, is not positive)."""
    labels = label_columns(table) if labels is None else labels
    return table[labels].to_numpy(dtype=np.float64) == 1.0


def strata(table: pd.DataFrame) -> pd.Series:
    """Each image's rarest positive label (rarest within ``table``), or ``"No Finding"``."""
    labels = [c for c in label_columns(table) if c != NO_FINDING]
    pos = positives(table, labels)
    if not labels:
        return pd.Series(NO_FINDING, index=table.index, dtype=object)
    rank = np.empty(len(labels), dtype=np.int64)
    rank[np.argsort(pos.sum(axis=0), kind="stable")] = np.arange(len(labels))
    ranked = np.where(pos, rank[None, :], len(labels))
    rarest = np.asarray(labels, dtype=object)[ranked.argmin(axis=1)]
    return pd.Series(np.where(pos.any(axis=1), rarest, NO_FINDING), index=table.index, dtype=object)


def allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over strata of ``sizes`` in proportion, by largest remainder.

    Every non-empty stratum gets at least one (the rarest first when ``total`` is smaller than
    the number of strata), taken from the strata furthest above their exact share; the result
    sums to exactly ``min(total, sizes.sum())``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if total >= n:
        return sizes.copy()
    quota = np.zeros_like(sizes)
    if total <= 0:
        return quota
    nonempty = np.flatnonzero(sizes > 0)
    if total <= len(nonempty):
        quota[nonempty[np.argsort(sizes[nonempty], kind="stable")[:total]]] = 1
        return quota
    exact = sizes * (total / n)
    quota = np.floor(exact + _EPS).astype(np.int64)
    raised = (sizes > 0) & (quota == 0)
    quota[raised] = 1
    for _ in range(int(quota.sum()) - total):
        over = np.where(quota > 1, quota - exact, -np.inf)
        quota[int(np.argmax(over))] -= 1
    left = total - int(quota.sum())
    if left > 0:
        remainder = np.where(raised | (quota >= sizes), -np.inf, exact - quota)
        quota[np.argsort(-remainder, kind="stable")[:left]] += 1
    return quota


def stratified_sample(table: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """``round(fraction * len(table))`` rows, in proportion to :func:`strata`, in table order."""
    total = math.floor(fraction * len(table) + 0.5)
    groups = table.groupby(strata(table), sort=True).indices
    names = sorted(groups)
    quota = allocate(np.array([len(groups[s]) for s in names]), total)
    chosen = [rng.choice(groups[s], size=q, replace=False) for s, q in zip(names, quota) if q]
    picked = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
    return table.iloc[picked]


def split_by_patient(
    table: pd.DataFrame, n_held: int, rng: np.random.Generator | int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rest, held)`` with no patient on both sides and ``len(held) == n_held`` where possible.

    Patients are assigned one at a time, those with the rarest findings first, each to the
    side that keeps the two sides' progress towards their share of every finding, of images
    without findings and of all images most even. A final subset-sum step moves patients
    to close any gap in the held side's size that whole patients allow.
    """
    if isinstance(rng, int):
        rng = np.random.default_rng(rng)
    n = len(table)
    n_held = max(0, min(int(n_held), n))
    if n == 0 or n_held == 0:
        return table, table.iloc[:0]
    patients, inverse = np.unique(table["patient"].astype(str).to_numpy(), return_inverse=True)
    n_patients = len(patients)
    labels = [c for c in label_columns(table) if c != NO_FINDING]
    n_labels = len(labels)
    pos = positives(table, labels).astype(np.int64)
    # Dimensions balanced between the sides: each label, images without findings, all images.
    per_image = np.column_stack([pos, pos.sum(axis=1) == 0, np.ones(n, dtype=np.int64)])
    per_patient = np.zeros((n_patients, per_image.shape[1]), dtype=np.float64)
    np.add.at(per_patient, inverse, per_image)
    images = per_patient[:, -1].astype(np.int64)

    totals = per_image.sum(axis=0).astype(np.float64)
    label_totals = totals[:n_labels]
    rank = np.empty(n_labels, dtype=np.int64)
    rank[np.argsort(label_totals, kind="stable")] = np.arange(n_labels)
    ranked = np.where(per_patient[:, :n_labels] > 0, rank[None, :], n_labels)
    rarest_rank = ranked.min(axis=1) if n_labels else np.zeros(n_patients, dtype=np.int64)
    order = np.lexsort((rng.random(n_patients), rarest_rank))

    share = n_held / n
    # 1 / target per side; dimensions with no target (no such finding) are ignored.
    inv_target = np.stack([_safe_inverse(totals * share), _safe_inverse(totals * (1 - share))])
    capacity = (n_held, n - n_held)
    found = np.zeros((2, per_image.shape[1]))
    side = np.zeros(n_patients, dtype=np.int8)  # 0 = held, 1 = rest
    for p in order:
        c = images[p]
        fits = (found[0, -1] + c <= capacity[0], found[1, -1] + c <= capacity[1])
        if fits[0] != fits[1]:
            s = 0 if fits[0] else 1
        elif not fits[0]:
            s = 1
        else:
            v = per_patient[p]
            dims = v > 0
            progress = found[:, dims] * inv_target[:, dims]
            gain = v[dims] * inv_target[:, dims]
            to_held = np.square(progress[0] + gain[0] - progress[1]).sum()
            to_rest = np.square(progress[0] - progress[1] - gain[1]).sum()
            s = 0 if to_held < to_rest else 1
        side[p] = s
        found[s] += per_patient[p]

    gap = n_held - int(found[0, -1])
    if gap > 0:
        movable = np.flatnonzero((side == 1) & (images <= gap))
        # Patients without findings first, then the smallest: moving them disturbs labels least.
        movable = movable[np.lexsort((images[movable], -rarest_rank[movable]))]
        for p in _subset_with_sum(movable, images, gap):
            side[p] = 0
    held = side[inverse] == 0
    return table.loc[~held], table.loc[held]


def _safe_inverse(values: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.float64)
    np.divide(1.0, values, out=out, where=values > 0)
    return out


def _subset_with_sum(candidates: np.ndarray, sizes: np.ndarray, target: int, limit: int = 5000) -> list[int]:
    """Candidates whose sizes sum to ``target`` (exactly if possible, else greedily below it)."""
    candidates = candidates[:limit]
    reach = [1]  # bit k of reach[i] set: sum k reachable with the first i candidates
    mask = (1 << (target + 1)) - 1
    for p in candidates:
        reach.append((reach[-1] | (reach[-1] << int(sizes[p]))) & mask)
    if reach[-1] >> target & 1:
        chosen, k = [], target
        for i in range(len(candidates), 0, -1):
            if not reach[i - 1] >> k & 1:
                chosen.append(int(candidates[i - 1]))
                k -= int(sizes[candidates[i - 1]])
        return chosen
    chosen, left = [], target
    for p in candidates:
        if sizes[p] <= left:
            chosen.append(int(p))
            left -= int(sizes[p])
    return chosen


def class_distribution(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Positives per label, No Finding and all images per split, as counts and percentages.

    Labels are the label columns of the tables (their union, in order of appearance); NaN counts
    as unknown, not negative. "No Finding" is the source's own column where it has one, else the
    images without any positive label. Where labels are unknown for some images, an
    "unknown" count per label follows in ``<split> unknown``.
    """
    labels: list[str] = []
    for df in splits.values():
        labels += [c for c in label_columns(df) if c not in labels]
    own_no_finding = NO_FINDING in labels
    labels = [c for c in labels if c != NO_FINDING]
    index = [*labels, NO_FINDING, "Images"]
    any_unknown = any(df[[c for c in labels if c in df]].isna().to_numpy().any() for df in splits.values())
    columns: dict[str, pd.Series] = {}
    for name, df in splits.items():
        present = [c for c in labels if c in df]
        values = df[present].to_numpy(dtype=np.float64)
        counts = pd.Series((values == 1.0).sum(axis=0), index=present, dtype=np.int64).reindex(
            labels, fill_value=0
        )
        if own_no_finding and NO_FINDING in df:
            counts[NO_FINDING] = int((df[NO_FINDING].to_numpy(dtype=np.float64) == 1.0).sum())
        else:
            counts[NO_FINDING] = int((~(values == 1.0).any(axis=1)).sum())
        counts["Images"] = len(df)
        counts = counts.reindex(index)
        columns[name] = counts
        columns[f"{name} %"] = (100.0 * counts / max(len(df), 1)).round(1)
        if any_unknown:
            unknown = pd.Series(np.isnan(values).sum(axis=0), index=present, dtype=np.int64)
            columns[f"{name} unknown"] = unknown.reindex(index, fill_value=0)
    return pd.DataFrame(columns, index=pd.Index(index, name="finding"))


def format_distribution(dist: pd.DataFrame) -> str:
    return dist.to_string(float_format=lambda v: f"{v:.1f}")
