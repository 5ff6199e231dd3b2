"""The dataset plugin interface.

A dataset plugin subclasses :class:`DatasetSource`, declares the names of its labels
(:attr:`DatasetSource.labels`, canonical vocabulary names in the publisher's order) and implements
:meth:`DatasetSource.inventory`: its metadata rows and the image files it found, unchecked. A
plugin may also say whether a folder is in its layout (:meth:`DatasetSource.detect`), which is how
:func:`open_dataset` chooses a reader for a folder. Everything else is shared: the catalog
(:mod:`cxrzoo.data.catalog`) matches rows to files, reports what is wrong by name and keeps the
usable images; :meth:`DatasetSource.table` is the table every consumer reads.

Labels belong to the source: a table holds :data:`TABLE_COLUMNS` and then one float column per
label of its source(s), 1 (positive), 0 (negative) or NaN (unknown: not mentioned, uncertain, or
not in that data set). Unknown is never negative. :func:`label_columns` names a table's label
columns and :func:`label_targets` lines them up with a model's labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.errors import DataError, UserError

if TYPE_CHECKING:
    from cxrzoo.data.catalog import CatalogReport

#: Columns every table starts with, in order; one float column per label of the source follows.
TABLE_COLUMNS: tuple[str, ...] = (
    "image",  # the image's id, unique within the table
    "path",  # where the file is
    "patient",  # the patient's id (str), for patient-wise splits
    "age",  # years, float, NaN when unknown
    "sex",  # as published ("M"/"F", "Male"/"Female" …), "" when unknown
    "view",  # view position as published (PA, AP, LL …), "" when unknown
    "list",  # "train_val", "val", "test" (the publisher's split) or None
    "follow_up",  # Int64 follow-up / study number, <NA> when unknown
    "source",  # the dataset's name (several sources share one table)
)
#: Columns of :attr:`Inventory.rows` before its label columns: the table's columns but ``path``
#: and ``source``. One float column per label of the source follows, then :data:`ROW_TRAILER`.
ROW_COLUMNS: tuple[str, ...] = ("image", "patient", "age", "sex", "view", "list", "follow_up")
#: Columns of :attr:`Inventory.rows` after the labels: where each row came from.
ROW_TRAILER: tuple[str, ...] = (
    "row",  # line number in the metadata file (1 = header)
    "unknown_labels",  # what in the row's labels cannot be read; "" when all is known
    "finding_labels",  # the metadata's label text as written (for reports)
)
#: Columns of :attr:`Inventory.files`.
FILE_COLUMNS: tuple[str, ...] = ("image", "path", "size", "mtime_ns")
#: File name endings taken for images when folders are scanned.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
#: Values of the ``list`` column.
TRAIN_VAL, VAL, TEST = "train_val", "val", "test"
LIST_VALUES: tuple[str, ...] = (TRAIN_VAL, VAL, TEST)
#: Choices of the ``uncertain`` option of sources that publish uncertain labels (-1).
UNCERTAIN_CHOICES: tuple[str, ...] = ("ignore", "ones", "zeros")
#: Dtype of label columns.
LABEL_DTYPE = np.float32


class DatasetError(DataError, ValueError):
    """A dataset that cannot be read at all (missing folder, no metadata file); names the file."""


class DatasetOptionError(UserError, TypeError):
    """An option a dataset does not take, or a value outside its choices."""


def row_columns(labels: Sequence[str]) -> list[str]:
    """The columns of :attr:`Inventory.rows` for a source with ``labels``."""
    return [*ROW_COLUMNS, *labels, *ROW_TRAILER]


def label_columns(table: pd.DataFrame) -> list[str]:
    """The label columns of a table (or inventory rows): every column that is not bookkeeping."""
    fixed = {*TABLE_COLUMNS, *ROW_TRAILER, "file", "size", "mtime_ns"}
    return [c for c in table.columns if c not in fixed]


def label_targets(table: pd.DataFrame, model_labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, known)`` of ``table`` for a model's labels, via :func:`cxrzoo.labels.align`.

    ``targets`` is float32 ``[N, len(model_labels)]`` with NaN where the table does not know a
    finding (every image, for a finding none of its sources has); ``known`` is its mask.
    """
    from cxrzoo.labels import align

    columns = label_columns(table)
    targets, known = align(columns, table[columns].to_numpy(dtype=np.float32), list(model_labels))
    return targets, known  # type: ignore[return-value]


def uncertain_value(policy: str) -> float:
    """What an uncertain (-1) label becomes under ``policy`` (``ignore`` = NaN)."""
    return {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[policy]


@dataclass
class Inventory:
    """What a dataset holds before any check.

    ``rows`` has :func:`row_columns` of the source's labels (float 1 / 0 / NaN), one per
    metadata row (duplicates and unreadable labels included), optionally a ``file`` column naming
    the metadata file of each row where a source has several; ``files`` has
    :data:`FILE_COLUMNS`, one per image file found (file-system metadata only, nothing decoded).
    ``problems`` are source-specific findings the catalog reports as they are (list entries
    without a metadata row, rows that cannot be parsed, values set unknown …).
    """

    rows: pd.DataFrame
    files: pd.DataFrame
    metadata_file: str | None = None
    has_lists: bool = False
    problems: dict[str, list[Any]] = field(default_factory=dict)
    #: What the reader met in its label columns: one entry per distinct value,
    #: ``{"column", "value", "count", "mapped"[, "file"]}`` (:func:`cxrzoo.data.csvfiles.value_counts`).
    label_values: list[dict[str, Any]] = field(default_factory=list)


class DatasetSource:
    """Base class of dataset plugins.

    ``root`` is the dataset's folder (``None`` where a source makes its own data). A subclass
    sets :attr:`name` and :attr:`labels` and implements :meth:`inventory`; :meth:`catalog` and
    :meth:`table` are shared. Options are keyword arguments with defaults in
    :attr:`options_defaults`; those with a fixed set of values list them in :attr:`option_choices`.
    """

    #: The dataset's registered name; it fills the table's ``source`` column.
    name: ClassVar[str] = "dataset"
    #: The source's label names: canonical vocabulary names, in the publisher's order.
    labels: ClassVar[tuple[str, ...]] = ()
    #: Options a subclass accepts as keyword arguments, with their defaults.
    options_defaults: ClassVar[dict[str, Any]] = {}
    #: Allowed values of options that have a fixed set of them.
    option_choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: The data set's readable name, for model cards ("NIH ChestX-ray14"); the name when empty.
    title: ClassVar[str] = ""
    #: The data set's id on the Hugging Face Hub, listed in a model card's ``datasets`` metadata;
    #: None where it is not hosted there (or is generated, as the phantoms are).
    hub_id: ClassVar[str | None] = None

    def __init__(self, root: str | os.PathLike[str] | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options_defaults))
        if unknown:
            known = ", ".join(self.options_defaults) or "none"
            raise DatasetOptionError(f"{type(self).__name__} takes no option(s) {unknown}; options: {known}")
        for key, choices in self.option_choices.items():
            if key in options and options[key] not in choices:
                raise DatasetOptionError(
                    f"Option {key}={options[key]!r} of dataset {self.name!r}: expected one of "
                    f"{', '.join(map(str, choices))}"
                )
        self._root = Path(root).expanduser() if root is not None else None
        self.options: dict[str, Any] = {**self.options_defaults, **options}
        self._catalog: CatalogReport | None = None

    @property
    def root(self) -> Path | None:
        """The dataset's folder."""
        return self._root

    @property
    def label_names(self) -> tuple[str, ...]:
        """This source's labels (the class's :attr:`labels` unless an instance says otherwise)."""
        return tuple(self.labels)

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` holds this dataset in the layout this class reads (cheap: names only)."""
        return False

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
        """The usable images, one row each: :data:`TABLE_COLUMNS`, then one column per label.

        Rows whose image is missing or whose labels cannot be read are left out; after a verified
        catalog (``verify=True`` here or an earlier ``catalog(verify=True)``) images that do not
        decode are left out too. The last catalog is reused; call :meth:`catalog` to rescan.
        """
        if self._catalog is None or (verify and not self._catalog.verified):
            self.catalog(verify=verify)
        assert self._catalog is not None
        return self._catalog.table.copy()

    def _folder(self) -> Path:
        """The dataset's folder, checked; a :class:`DatasetError` naming it otherwise."""
        root = self.root
        if root is None:
            raise DatasetError(
                f"The {self.name} dataset needs its folder: {type(self).__name__}('/path/to/it')"
            )
        if not root.is_dir():
            raise DatasetError(f"Dataset folder {root} does not exist")
        return root

    def describe(self) -> str:
        return f"{type(self).__name__}({str(self.root) if self.root is not None else ''})"

    def __repr__(self) -> str:
        return self.describe()


class CombinedSource(DatasetSource):
    """Several sources read as one: the union of their labels, NaN where a source lacks one.

    Image and patient ids are prefixed with the source's name (``"chexpert/train/…"``) so that
    they stay unique; the ``source`` column keeps each row's source, and splits are made per
    source (:func:`cxrzoo.data.splits.make_splits`).
    """

    name: ClassVar[str] = "combined"

    def __init__(self, sources: Sequence[DatasetSource]) -> None:
        super().__init__(None)
        if len(sources) < 2:
            raise DatasetOptionError("A combined dataset needs at least two sources")
        self.sources = list(sources)
        self.keys: list[str] = []
        for source in self.sources:
            key, k = source.name, 2
            while key in self.keys:
                key, k = f"{source.name}-{k}", k + 1
            self.keys.append(key)

    @property
    def label_names(self) -> tuple[str, ...]:
        from cxrzoo.labels import canonical

        out: list[str] = []
        for source in self.sources:
            for name in source.label_names:
                name = canonical(name) or name
                if name not in out:
                    out.append(name)
        return tuple(out)

    def catalog(
        self, verify: bool = False, workers: int | None = None, progress: bool = False
    ) -> CatalogReport:
        from cxrzoo.data.catalog import combine_reports

        reports = [s.catalog(verify=verify, workers=workers, progress=progress) for s in self.sources]
        report = combine_reports(self.keys, reports, self.label_names)
        self._catalog = report
        return report

    def describe(self) -> str:
        return " + ".join(s.describe() for s in self.sources)


def scan_image_files(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Image files in ``root``, its subfolders and their ``images/`` folders, in one pass.

    Covers the Kaggle layout (``images_001/images/*.png`` …), a flat ``images/`` folder and
    images placed directly in subfolders. Uses :func:`os.scandir`, whose entries carry the file
    type, so only image files are stat-ed (once, for size and modification time).
    """
    root = os.path.abspath(root)
    folders = [root]
    with os.scandir(root) as entries:
        subdirs = sorted(e.path for e in entries if not e.name.startswith(".") and _is_dir(e))
    for sub in subdirs:
        folders.append(sub)
        nested = os.path.join(sub, "images")
        if os.path.isdir(nested):
            folders.append(nested)
    return _scan_folders(folders)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a folder; a link loop or an unreadable link is not one."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _scan_folders(folders: Iterable[str]) -> pd.DataFrame:
    names: list[str] = []
    paths: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    for folder in folders:
        try:
            entries = os.scandir(folder)
        except OSError:  # a folder that vanished or cannot be listed holds no usable images
            continue
        with entries:
            for entry in entries:
                try:
                    if not (entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file()):
                        continue
                    st = entry.stat()
                except OSError:  # a broken link or a link loop named like an image
                    continue
                names.append(entry.name)
                paths.append(entry.path)
                sizes.append(st.st_size)
                mtimes.append(st.st_mtime_ns)
    return _files_frame(names, paths, sizes, mtimes)


def _files_frame(names: list[str], paths: list[str], sizes: list[int], mtimes: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image": pd.Series(names, dtype=object),
            "path": pd.Series(paths, dtype=object),
            "size": pd.Series(sizes, dtype="int64"),
            "mtime_ns": pd.Series(mtimes, dtype="int64"),
        }
    )


def looks_like_dicom(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` carries DICOM's ``DICM`` magic at byte 128 (reads 132 bytes)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def may_be_bare_dicom(name: str) -> bool:
    """Whether a file name without an image suffix may still be DICOM: files are often named
    without a suffix (IM000001) or by their UID (1.2.840.1234.5). Only those are opened to look
    for the magic, so a folder scan stays a listing."""
    suffix = os.path.splitext(name)[1]
    return name != "DICOMDIR" and (not suffix or suffix[1:].isdigit())


def scan_tree(
    root: str | os.PathLike[str],
    *,
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    relative_to: str | os.PathLike[str] | None = None,
    strip_suffix: bool = False,
    problems: dict[str, list[Any]] | None = None,
    bare_dicom: bool = False,
    hidden_files: bool = True,
) -> pd.DataFrame:
    """Image files anywhere under ``root`` (:data:`FILE_COLUMNS`), in one walk.

    With ``bare_dicom``, files without an image suffix that carry DICOM's magic are found too
    (:func:`may_be_bare_dicom`); without ``hidden_files``, files whose name starts with a dot
    (``._scan.png`` resource forks …) are left out. Hidden folders are never entered.

    The ``image`` id is the path relative to ``relative_to`` with ``/`` separators (the file name
    when ``relative_to`` is None), without its suffix when ``strip_suffix``. A missing ``root``
    gives an empty frame: the catalog then reports every row's image as missing.

    Links to folders are followed (a download spread over several disks and linked together is
    read as one tree); a link back to a folder above it (a loop) or a second way into a folder
    already scanned is not entered and is reported under ``skipped_folder`` in ``problems``.
    """
    names: list[str] = []
    paths: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    root = os.path.abspath(root)
    base = os.path.abspath(relative_to) if relative_to is not None else None
    lowered = tuple(s.lower() for s in suffixes)
    prefix = base.rstrip(os.sep) + os.sep if base is not None else ""
    scanned = [os.path.realpath(root)]  # real folders whose whole tree is (being) scanned
    skipped: list[dict[str, Any]] = []
    stack = [(root, scanned[0])]
    while stack:
        folder, real_folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:  # a folder that vanished or cannot be listed holds no usable images
            continue
        subfolders = []
        with entries:
            for entry in entries:
                lower = entry.name.lower()
                if not hidden_files and entry.name.startswith("."):
                    continue
                try:
                    if (lower.endswith(lowered) and entry.is_file()) or (
                        bare_dicom
                        and may_be_bare_dicom(entry.name)
                        and entry.is_file()
                        and looks_like_dicom(entry.path)
                    ):  # most entries: test them first
                        st = entry.stat()
                    elif not entry.is_dir():
                        continue
                    else:
                        if entry.name.startswith("."):
                            continue
                        real = real_folder + os.sep + entry.name
                        if entry.is_symlink():  # only links can lead back or elsewhere
                            real = os.path.realpath(entry.path)
                            inside = next((r for r in scanned if _within(real, r)), None)
                            if inside is not None:
                                loop = _within(real_folder, real)
                                skipped.append({"image": entry.path, "reason": (
                                    f"link to {real}, a folder above it (a loop); not entered" if loop
                                    else f"link to {real}, already scanned as part of {inside}; not entered"
                                )})  # fmt: skip
                                continue
                            scanned.append(real)
                        subfolders.append((entry.path, real))
                        continue
                except OSError:  # a broken link or a link loop named like an image
                    continue
                if base is None:
                    name = entry.name
                elif entry.path.startswith(prefix):  # the common case, without relpath's cost
                    name = entry.path[len(prefix) :]
                    if os.sep != "/":
                        name = name.replace(os.sep, "/")
                else:
                    name = os.path.relpath(entry.path, base).replace(os.sep, "/")
                if strip_suffix:
                    found = next((s for s in lowered if lower.endswith(s)), "")
                    name = name[: len(name) - len(found)]
                names.append(name)
                paths.append(entry.path)
                sizes.append(st.st_size)
                mtimes.append(st.st_mtime_ns)
        stack.extend(sorted(subfolders, reverse=True))
    if skipped and problems is not None:
        problems.setdefault("skipped_folder", []).extend(skipped)
    return _files_frame(names, paths, sizes, mtimes)


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both real, absolute paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def dataset_classes() -> dict[str, type[DatasetSource]]:
    """Every registered dataset class by name."""
    from cxrzoo.plugins import datasets

    return {name: datasets.get(name) for name in datasets.names()}


def detect_datasets(root: str | os.PathLike[str]) -> list[str]:
    """Names of the registered datasets that say ``root`` is in their layout."""
    root = Path(root).expanduser()
    found = []
    for name, cls in dataset_classes().items():
        detect = getattr(cls, "detect", None)
        try:
            if detect is not None and detect(root):
                found.append(name)
        except OSError:
            continue
    return found


def _options_for(cls: type[DatasetSource], options: dict[str, Any], strict: bool) -> dict[str, Any]:
    accepted = getattr(cls, "options_defaults", None)
    if strict or accepted is None:
        return options
    return {k: v for k, v in options.items() if k in accepted}


def _build(name: str, root: Path | None, options: dict[str, Any], strict: bool = True) -> DatasetSource:
    from cxrzoo.plugins import datasets

    cls = datasets.get(name)
    opts = _options_for(cls, options, strict)
    source = cls(root, **opts) if root is not None else cls(**opts)
    if getattr(source, "name", "dataset") in ("dataset", None):
        source.name = name  # type: ignore[misc]
    return source


def _open_folder(path: Path, dataset: str | None, options: dict[str, Any], strict: bool) -> DatasetSource:
    if not path.exists():
        raise DatasetError(f"Dataset folder {path} does not exist")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file; a dataset is a folder")
    if dataset is not None:
        return _build(dataset, path, options, strict)
    found = detect_datasets(path)
    if len(found) == 1:
        return _build(found[0], path, options, strict)
    known = ", ".join(sorted(n for n in dataset_classes() if n != "synthetic"))
    if not found:
        raise DatasetError(
            f"{path} is in no known dataset layout (looked for: {known}); "
            f"pass --dataset NAME to read it as one of them"
        )
    raise DatasetError(
        f"{path} looks like several datasets ({', '.join(found)}); pass --dataset NAME to choose one"
    )


def open_dataset(
    spec: str | os.PathLike[str] | DatasetSource | Sequence[str | os.PathLike[str]] | None = None,
    *,
    dataset: str | Sequence[str] | None = None,
    **options: Any,
) -> DatasetSource:
    """A dataset from a folder, a registered dataset name, several folders, or ``None`` (synthetic).

    A folder is read by the registered dataset that recognises its layout (``nih14`` for the
    NIH Kaggle download, ``chexpert``, ``mimic_cxr`` … once their plugin is installed); an
    unknown or ambiguous folder is a :class:`DatasetError` listing the candidates. ``dataset``
    forces a reader for the folder. A list of folders gives a :class:`CombinedSource`
    (``dataset`` then names one reader for all or one per folder, and each source takes the
    ``options`` it knows). An existing folder wins over a dataset of the same name. A name such as
    ``"synthetic"`` builds that registered dataset with ``options``. Nothing is read until the
    dataset's table or catalog is asked for.
    """
    from cxrzoo.plugins import datasets
    from cxrzoo.registry import UnknownNameError

    if isinstance(spec, DatasetSource):
        return spec
    if isinstance(spec, (list, tuple)):
        folders = list(spec)
        names: list[str | None]
        if dataset is None or isinstance(dataset, str):
            names = [dataset] * len(folders)
        else:
            names = list(dataset)
            if len(names) == 1:
                names = names * len(folders)
        if len(names) != len(folders):
            raise DatasetOptionError(
                f"{len(names)} dataset names for {len(folders)} folders: give one --dataset for all "
                f"or one per --data"
            )
        if len(folders) == 1:
            return open_dataset(folders[0], dataset=names[0], **options)
        if not folders:
            return open_dataset(None, dataset=None, **options)
        sources = [
            _open_folder(Path(os.fspath(f)).expanduser(), n, options, strict=False)
            for f, n in zip(folders, names, strict=True)
        ]
        unused = sorted(
            k for k in options if not any(k in getattr(s, "options_defaults", {}) for s in sources)
        )
        if unused:
            raise DatasetOptionError(
                f"No dataset among {', '.join(s.name for s in sources)} takes option(s) {unused}"
            )
        return CombinedSource(sources)
    if dataset is not None and not isinstance(dataset, str):
        names = list(dataset)
        if len(names) != 1:
            raise DatasetOptionError(f"{len(names)} dataset names for one folder")
        dataset = names[0]
    if spec is None:
        return _build(dataset or "synthetic", None, options)
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if isinstance(spec, os.PathLike) or path.exists():
        return _open_folder(path, dataset, options, strict=True)
    if dataset is None and text in datasets:
        return _build(text, None, options)
    if dataset is not None or os.sep in text or "/" in text or text.startswith((".", "~")):
        raise DatasetError(f"Dataset folder {path} does not exist")
    try:
        datasets.get(text)
    except UnknownNameError as exc:
        raise DatasetError(f"No folder {text!r} and no dataset of that name. {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover
