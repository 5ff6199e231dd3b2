"""Which data a model is trained or evaluated on, and its split: one place for Python and the CLI.

    from cxrzoo.data.spec import DataSpec, load_splits
    spec = DataSpec(data=["~/nih-chest-xrays", "~/CheXpert-v1.0-small"], fraction=0.05)
    splits = load_splits(spec)          # train / val / test tables, split per source by patient

A :class:`DataSpec` is recorded in a trained model's config (:meth:`DataSpec.to_dict`) so that
evaluation can rebuild exactly the same split; configs saved before several sources existed
(one ``data`` folder, read as NIH) read back unchanged (:meth:`DataSpec.from_dict`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from cxrzoo.data.base import DatasetSource

Echo = Callable[[str], None]


def as_folders(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[str]:
    """``data`` (one folder, several, or None) as a list of folder strings."""
    if data is None:
        return []
    if isinstance(data, (str, os.PathLike)):
        return [os.fspath(data)]
    return [os.fspath(d) for d in data]


def as_data(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> str | list[str] | None:
    """``data`` in :attr:`DataSpec.data`'s form: None, one folder string, or a list of several."""
    folders = as_folders(data)
    if not folders:
        return None
    return folders[0] if len(folders) == 1 else folders


@dataclass
class DataSpec:
    """Which data a model is trained or evaluated on; recorded in the model's config.

    ``data`` is a folder or a list of folders (several sources read as one, split per source);
    ``dataset`` forces the reader of the folder(s) (one name for all or one per folder) or,
    without ``data``, names a registered dataset (default: synthetic). ``options`` go to the
    dataset(s): each source takes the ones it knows (e.g. ``uncertain="ones"``).
    """

    data: str | list[str] | None = None
    dataset: str | list[str] | None = None
    options: dict[str, Any] | None = None
    fraction: float = 1.0
    seed: int = 0
    val_fraction: float = 0.2

    @property
    def folders(self) -> list[str]:
        return [str(Path(f).expanduser()) for f in as_folders(self.data)]

    def open(self) -> DatasetSource:
        from cxrzoo.data.base import open_dataset

        folders = self.folders
        options = self.options or {}
        if len(folders) > 1:
            return open_dataset(folders, dataset=self.dataset, **options)
        if folders:
            return open_dataset(folders[0], dataset=self.dataset, **options)
        return open_dataset(None, dataset=self.dataset, **options)

    @property
    def readers(self) -> list[str]:
        """The dataset name that reads each folder (forced, else detected; ``nih14`` if unsure)."""
        from cxrzoo.data.base import detect_datasets

        folders = self.folders
        if self.dataset is not None:
            names = [self.dataset] if isinstance(self.dataset, str) else list(self.dataset)
            if len(names) == len(folders):
                return names
            if len(names) == 1:
                return names * len(folders)
        out = []
        for folder in folders:
            found = detect_datasets(folder) if Path(folder).is_dir() else []
            out.append(found[0] if len(found) == 1 else "nih14")
        return out

    @property
    def name(self) -> str:
        if self.data:
            return "+".join(self.readers)
        if isinstance(self.dataset, str):
            return self.dataset
        return "+".join(self.dataset) if self.dataset else "synthetic"

    def to_dict(self) -> dict[str, Any]:
        folders = [str(Path(f).resolve()) for f in self.folders]
        doc: dict[str, Any] = {
            "dataset": self.name,
            "data": (folders[0] if len(folders) == 1 else folders) if folders else None,
            "options": self.options or {},
            "fraction": self.fraction,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
        }
        if folders:
            doc["datasets"] = self.readers  # the reader of each folder, so evaluation reads it alike
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DataSpec:
        data = doc.get("data")
        readers = doc.get("datasets")
        if data:
            dataset: str | list[str] | None = None
            if readers:
                dataset = readers[0] if len(readers) == 1 else list(readers)
        else:
            dataset = doc.get("dataset")
        return cls(
            data=as_data(data) if data else None,
            dataset=dataset,
            options=doc.get("options") or None,
            fraction=doc.get("fraction", 1.0),
            seed=doc.get("seed", 0),
            val_fraction=doc.get("val_fraction", 0.2),
        )


@dataclass
class SplitTables:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    summary: dict[str, Any]


def load_splits(spec: DataSpec, *, echo: Echo = print) -> SplitTables:
    """Catalogue the data set(s) and split (sample ``fraction``, train/val by patient, test list)."""
    from cxrzoo.data.splits import make_splits

    source = spec.open()
    report = source.catalog()
    if report.problem_count:
        echo(
            f"{source.describe()}: {report.problem_count} problem(s) found; continuing with the "
            f"{report.images} usable images ('cxrzoo data catalog' lists them)"
        )
    splits = make_splits(
        source.table(), fraction=spec.fraction, seed=spec.seed, val_fraction=spec.val_fraction
    )
    return SplitTables(splits.train, splits.val, splits.test, splits.to_dict())


__all__ = ["DataSpec", "SplitTables", "as_data", "as_folders", "load_splits"]
