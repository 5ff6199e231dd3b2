"""The dataset plugin interface.

A dataset plugin subclasses :class:`DatasetSource` and implements :meth:`DatasetSource.inventory`:
its metadata rows and the image files it found, unchecked. Everything else is shared: the
catalog (:mod:`cxrzoo.data.catalog`) matches rows to files, reports what is wrong by name and
keeps the usable images; :meth:`DatasetSource.table` is the table every consumer reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from cxrzoo.errors import DataError
from cxrzoo.labels import LABELS

if TYPE_CHECKING:
    from cxrzoo.data.catalog import CatalogReport

#: Columns of :meth:`DatasetSource.table`, in order; one uint8 0/1 column per label follows ``follow_up``.
TABLE_COLUMNS: tuple[str, ...] = (
    "image",
    "path",
    "patient",
    "age",
    "sex",
    "view",
    "list",
    "follow_up",
    *LABELS,
)
#: Columns of :attr:`Inventory.rows`: the table's columns but ``path``, plus where each row came from.
ROW_COLUMNS: tuple[str, ...] = (
    "image",
    "patient",
    "age",
    "sex",
    "view",
    "list",
    "follow_up",
    *LABELS,
    "row",  # line number in the metadata file (1 = header)
    "unknown_labels",  # "|"-joined findings outside LABELS; "" when every finding is known
    "finding_labels",  # the metadata's finding text as written
)
#: Columns of :attr:`Inventory.files`.
FILE_COLUMNS: tuple[str, ...] = ("image", "path", "size", "mtime_ns")
#: File name endings taken for images when folders are scanned.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
#: Values of the ``list`` column.
TRAIN_VAL, TEST = "train_val", "test"


class DatasetError(DataError, ValueError):
    """A dataset that cannot be read at all (missing folder, no metadata file); names the file."""


@dataclass
class Inventory:
    """What a dataset holds before any check.

    ``rows`` has :data:`ROW_COLUMNS`, one per metadata row (duplicates and unknown labels
    included); ``files`` has :data:`FILE_COLUMNS`, one per image file found (file-system
    metadata only, nothing decoded). ``problems`` are source-specific findings the catalog
    reports as they are (for example list entries without a metadata row).
    """

    rows: pd.DataFrame
    files: pd.DataFrame
    metadata_file: str | None = None
    has_lists: bool = False
    problems: dict[str, list[Any]] = field(default_factory=dict)


class DatasetSource:
    """Base class of dataset plugins.

    ``root`` is the dataset's folder (``None`` where a source makes its own data). A subclass
    implements :meth:`inventory`; :meth:`catalog` and :meth:`table` are shared.
    """

    #: Options a subclass accepts as keyword arguments, with their defaults.
    options_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, root: str | os.PathLike[str] | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options_defaults))
        if unknown:
            known = ", ".join(self.options_defaults) or "none"
            raise TypeError(f"{type(self).__name__} takes no option(s) {unknown}; options: {known}")
        self._root = Path(root).expanduser() if root is not None else None
        self.options: dict[str, Any] = {**self.options_defaults, **options}
        self._catalog: CatalogReport | None = None

    @property
    def root(self) -> Path | None:
        """The dataset's folder."""
        return self._root

    def inventory(self) -> Inventory:  # pragma: no cover - interface
        """Metadata rows and image files, unchecked; see :class:`Inventory`."""
        raise NotImplementedError

    def catalog(
        self, verify: bool = False, workers: int | None = None, progress: bool = False
    ) -> CatalogReport:
        """Locate every image and report problems; ``verify`` also decodes each image.

        The report's ``table`` holds the usable images and is what :meth:`table` returns.
        """
        from cxrzoo.data.catalog import build_catalog

        report = build_catalog(self, verify=verify, workers=workers, progress=progress)
        self._catalog = report
        return report

    def table(self, *, verify: bool = False) -> pd.DataFrame:
        """The usable images, one row each, with :data:`TABLE_COLUMNS`.

        Rows whose image is missing or whose labels are unknown are left out; after a verified
        catalog (``verify=True`` here or an earlier ``catalog(verify=True)``) images that do not
        decode are left out too. The last catalog is reused; call :meth:`catalog` to rescan.
        """
        if self._catalog is None or (verify and not self._catalog.verified):
            self.catalog(verify=verify)
        assert self._catalog is not None
        return self._catalog.table.copy()

    def describe(self) -> str:
        return f"{type(self).__name__}({str(self.root) if self.root is not None else ''})"

    def __repr__(self) -> str:
        return self.describe()


def scan_image_files(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Image files in ``root``, its subfolders and their ``images/`` folders, in one pass.

    Covers the Kaggle layout (``images_001/images/*.png`` …), a flat ``images/`` folder and
    images placed directly in subfolders. Uses :func:`os.scandir`, whose entries carry the file
    type, so only image files are stat-ed (once, for size and modification time).
    """
    root = os.path.abspath(root)
    folders = [root]
    with os.scandir(root) as entries:
        subdirs = sorted(e.path for e in entries if e.is_dir() and not e.name.startswith("."))
    for sub in subdirs:
        folders.append(sub)
        nested = os.path.join(sub, "images")
        if os.path.isdir(nested):
            folders.append(nested)
    return _scan_folders(folders)


def _scan_folders(folders: Iterable[str]) -> pd.DataFrame:
    names: list[str] = []
    paths: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    st = entry.stat()
                    names.append(entry.name)
                    paths.append(entry.path)
                    sizes.append(st.st_size)
                    mtimes.append(st.st_mtime_ns)
    return pd.DataFrame(
        {
            "image": pd.Series(names, dtype=object),
            "path": pd.Series(paths, dtype=object),
            "size": pd.Series(sizes, dtype="int64"),
            "mtime_ns": pd.Series(mtimes, dtype="int64"),
        }
    )


def open_dataset(spec: str | os.PathLike[str] | DatasetSource | None = None, **options: Any) -> DatasetSource:
    """A dataset from a folder, a registered dataset name, or ``None`` for the synthetic default.

    A folder is read as NIH ChestX-ray14 in the Kaggle layout (``nih14``); an existing folder
    wins over a dataset of the same name. A name such as ``"synthetic"`` builds that registered
    dataset with ``options``. Nothing is read until the dataset's table or catalog is asked for.
    """
    from cxrzoo.plugins import datasets
    from cxrzoo.registry import UnknownNameError

    if isinstance(spec, DatasetSource):
        return spec
    if spec is None:
        return datasets.get("synthetic")(**options)
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if isinstance(spec, os.PathLike) or path.exists():
        return datasets.get("nih14")(path, **options)
    if text in datasets:
        return datasets.get(text)(**options)
    if os.sep in text or "/" in text or text.startswith((".", "~")):
        raise DatasetError(f"Dataset folder {path} does not exist")
    try:
        datasets.get(text)
    except UnknownNameError as exc:
        raise DatasetError(f"No folder {text!r} and no dataset of that name. {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover
