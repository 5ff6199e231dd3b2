"""A cache of preprocessed images: decoded and run through the image steps once, read at memory speed.

A cache is a folder ``$CXRZOO_HOME/cache/<key>/`` holding ``images.npy`` (one uint8 array
``[N, S, S]``, opened as a read-only memory map) and ``index.json`` (image names in row order,
images that failed and why, the preprocessing, shape, creation time). The key hashes the
preprocessing's image steps and the data (image folders, and each image's name, size and
modification time), so a change of either builds a new cache.

A cache is built in a temporary folder beside its target and renamed only when complete, so an
interrupted build never leaves a cache that looks whole. Builds of one key are serialised by a
lock (concurrent builders wait, then reuse the first one's cache); a builder removes the
temporaries that killed builds left behind, and checks and reserves the disk space the cache
needs before writing it, so a full disk is one clear error rather than a SIGBUS.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrzoo.data.catalog import classify_failure, threaded_map
from cxrzoo.data.io import ImageReadError, read_image
from cxrzoo.errors import DataError
from cxrzoo.fsio import STALE_SECONDS, atomic_folder, clean_stale_temporaries, entry_lock
from cxrzoo.store import home
from cxrzoo.transforms.base import Preprocessing

FORMAT = "cxrzoo-image-cache"
FORMAT_VERSION = 1
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"


class CacheError(DataError, RuntimeError):
    """A cache folder that is missing, incomplete or inconsistent."""


def default_cache_dir() -> Path:
    """Where caches live: ``$CXRZOO_HOME/cache``."""
    return home() / "cache"


def _file_identity(table: pd.DataFrame) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    files = table.loc[:, ["image", "path"]].drop_duplicates("image").sort_values("image", kind="stable")
    names = files["image"].astype(str).tolist()
    paths = files["path"].astype(str).tolist()
    stats = []
    for path in paths:
        try:
            st = os.stat(path)
            stats.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((-1, -1))
    return names, paths, stats


def cache_key(table: pd.DataFrame, preprocessing: Preprocessing) -> str:
    """``<preprocessing key>-<data key>`` for the images of ``table`` under ``preprocessing``."""
    names, paths, stats = _file_identity(table)
    return _key(preprocessing, names, paths, stats)


def _key(
    preprocessing: Preprocessing, names: list[str], paths: list[str], stats: list[tuple[int, int]]
) -> str:
    folders = sorted({os.path.realpath(d) for d in {os.path.dirname(p) for p in paths}})
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "folders": folders}).encode())
    for name, (size, mtime) in zip(names, stats):
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return f"{preprocessing.cache_key}-{digest.hexdigest()[:16]}"


def cache_path(
    table: pd.DataFrame, preprocessing: Preprocessing, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The folder the cache of ``table`` under ``preprocessing`` has (or would have)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / cache_key(table, preprocessing)


class ImageCache:
    """Preprocessed images of one table, memory-mapped read-only.

    ``images[i]`` is the ``[S, S]`` uint8 image of ``names[i]``; :meth:`index_of` and
    :meth:`indices` map names to rows. ``failed`` holds images that could not be decoded.
    """

    def __init__(
        self, folder: Path, index: dict[str, Any], images: np.ndarray, *, built: bool = False
    ) -> None:
        self.folder = folder
        self.index = index
        self.images = images
        self.names: list[str] = list(index["names"])
        self.failed: dict[str, str] = dict(index.get("failed", {}))
        self.built = built
        self._positions = pd.Index(self.names)

    @property
    def key(self) -> str:
        return str(self.index["key"])

    @property
    def image_size(self) -> int:
        return int(self.index["shape"][1])

    @property
    def seconds(self) -> float:
        """How long the build took."""
        return float(self.index.get("seconds", 0.0))

    @property
    def images_per_second(self) -> float:
        done = len(self.names) + len(self.failed)
        return done / self.seconds if self.seconds > 0 else float("inf")

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ImageCache({self.folder}, {len(self)} images of {self.image_size}x{self.image_size})"

    def index_of(self, name: str) -> int:
        """Row of image ``name``; a ``KeyError`` saying why when it is not cached."""
        try:
            return int(self._positions.get_loc(name))
        except KeyError:
            if name in self.failed:
                raise KeyError(f"{name} is not in the cache: {self.failed[name]}") from None
            raise KeyError(f"{name} is not in the cache {self.folder}") from None

    def indices(self, names: Any) -> np.ndarray:
        """Rows of many names at once; ``-1`` for names that are not cached."""
        return self._positions.get_indexer(pd.Index(names))

    def get(self, name: str) -> np.ndarray:
        return np.asarray(self.images[self.index_of(name)])

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> ImageCache:
        """Open a complete cache folder; :class:`CacheError` when it is missing or incomplete."""
        folder = Path(folder)
        index_file, images_file = folder / INDEX_FILE, folder / IMAGES_FILE
        if not index_file.is_file() or not images_file.is_file():
            raise CacheError(f"No complete image cache in {folder}")
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"{index_file}: unreadable cache index ({exc})") from None
        if (
            not isinstance(index, dict)
            or index.get("format") != FORMAT
            or index.get("format_version") != FORMAT_VERSION
        ):
            raise CacheError(f"{index_file}: not a cxrzoo image cache of version {FORMAT_VERSION}")
        shape_value, names = index.get("shape"), index.get("names")
        if (
            not isinstance(shape_value, list)
            or len(shape_value) != 3
            or not all(isinstance(v, int) and v >= 0 for v in shape_value)
            or not isinstance(names, list)
            or not isinstance(index.get("failed", {}), dict)
            or not isinstance(index.get("key"), str)
        ):
            raise CacheError(f"{index_file}: malformed cache index; delete {folder} to rebuild it")
        shape = tuple(shape_value)
        try:
            if shape[0] == 0:
                images: np.ndarray = np.zeros(shape, dtype=np.uint8)
            else:
                images = np.load(images_file, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CacheError(f"{images_file}: unreadable ({exc})") from None
        if images.shape != shape or images.dtype != np.uint8 or len(index["names"]) != shape[0]:
            raise CacheError(f"{folder}: images.npy does not match its index; delete the folder to rebuild")
        return cls(folder, index, images)

    @classmethod
    def lookup(
        cls,
        table: pd.DataFrame,
        preprocessing: Preprocessing,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> ImageCache | None:
        """The complete cache of ``table`` under ``preprocessing``, or ``None``."""
        try:
            return cls.open(cache_path(table, preprocessing, cache_dir))
        except CacheError:
            return None

    @classmethod
    def load_or_build(cls, table: pd.DataFrame, preprocessing: Preprocessing, **kwargs: Any) -> ImageCache:
        """Same as :func:`build_cache`: reuse the complete cache, else build it."""
        return build_cache(table, preprocessing, **kwargs)


def build_cache(
    table: pd.DataFrame,
    preprocessing: Preprocessing,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    rebuild: bool = False,
) -> ImageCache:
    """The cache of ``table``'s images under ``preprocessing``'s image steps; built if needed.

    ``table`` needs ``image`` and ``path`` columns (a dataset table). Each image is decoded
    once and run through ``preprocessing.image(img, name=image)`` by ``workers`` threads
    (default: one per CPU). An image that cannot be decoded is skipped, named in
    ``ImageCache.failed`` and in a warning; any other error aborts the build and leaves no cache.
    """
    names, paths, stats = _file_identity(table)
    key = _key(preprocessing, names, paths, stats)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / key
    if not rebuild:
        try:
            return ImageCache.open(folder)
        except CacheError:
            pass
    # One builder per key: the others wait here, then find its cache complete.
    with entry_lock(folder, wait=None, what=f"Image cache {key}"):
        if not rebuild:
            try:
                return ImageCache.open(folder)
            except CacheError:
                pass
        # Under the lock every temporary of this key belongs to a build that died; those of
        # other keys are removed once they are old enough to be surely abandoned.
        clean_stale_temporaries(root, key, age=0)
        _clean_old_temporaries(root)
        return _build_locked(folder, key, names, paths, preprocessing, workers=workers, progress=progress)


def _clean_old_temporaries(root: Path) -> None:
    for tmp in root.glob(".*.tmp-*"):
        name = tmp.name[1:].split(".tmp-")[0]
        clean_stale_temporaries(root, name, age=STALE_SECONDS)


def _build_locked(
    folder: Path,
    key: str,
    names: list[str],
    paths: list[str],
    preprocessing: Preprocessing,
    *,
    workers: int | None,
    progress: bool,
) -> ImageCache:
    size = preprocessing.image_size
    start = time.perf_counter()
    with atomic_folder(folder) as tmp:
        failed = _write_images(
            tmp / IMAGES_FILE, paths, names, preprocessing, workers=workers, progress=progress
        )
        kept = [i for i, name in enumerate(names) if name not in failed]
        if failed:
            _compact(tmp / IMAGES_FILE, kept)
        index = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "key": key,
            "names": [names[i] for i in kept],
            "failed": dict(sorted(failed.items())),
            "shape": [len(kept), size, size],
            "dtype": "uint8",
            "preprocessing": {
                "cache_key": preprocessing.cache_key,
                "image_specs": list(preprocessing.image_specs),
                "image_size": size,
            },
            "folders": sorted({os.path.dirname(p) for p in paths}),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - start, 4),
        }
        # The index is written last: a folder without it is never taken for a cache.
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1))
    if failed:
        shown = "; ".join(f"{name} ({reason})" for name, reason in list(failed.items())[:10])
        more = f"; and {len(failed) - 10} more (see {folder / INDEX_FILE})" if len(failed) > 10 else ""
        warnings.warn(
            f"{len(failed)} image(s) could not be decoded and are not cached: {shown}{more}", stacklevel=2
        )
    cache = ImageCache.open(folder)
    cache.built = True
    return cache


def _write_images(
    target: Path,
    paths: list[str],
    names: list[str],
    preprocessing: Preprocessing,
    *,
    workers: int | None,
    progress: bool,
) -> dict[str, str]:
    """Decode and preprocess every image into row ``i`` of ``target``; ``{name: reason}`` of failures."""
    size = preprocessing.image_size
    shape = (len(names), size, size)
    if not names:  # an empty file cannot be memory-mapped
        np.save(target, np.zeros(shape, dtype=np.uint8))
        return {}
    _reserve(target, shape)
    out = np.lib.format.open_memmap(target, mode="r+")

    def process(i: int) -> str | None:
        try:
            img = read_image(paths[i])
        except ImageReadError as exc:
            return classify_failure(paths[i], exc.reason).replace("_", " ")
        out[i] = preprocessing.image(img, name=names[i])
        return None

    failed: dict[str, str] = {}
    for i, reason in threaded_map(
        process, range(len(names)), workers=workers, progress=progress, desc="Caching", unit="img"
    ):
        if reason is not None:
            failed[names[i]] = reason
    out.flush()
    return failed


def _compact(target: Path, kept: list[int]) -> None:
    """Rewrite ``target`` without the rows of failed images."""
    full = np.load(target, mmap_mode="r")
    compact_file = target.with_name("images.compact.npy")
    _reserve(compact_file, (len(kept), *full.shape[1:]))
    compact = np.lib.format.open_memmap(compact_file, mode="r+")
    step = 1024
    for start in range(0, len(kept), step):
        rows = kept[start : start + step]
        compact[start : start + len(rows)] = full[rows]
    compact.flush()
    del compact, full
    os.replace(compact_file, target)


def _reserve(target: Path, shape: tuple[int, ...]) -> None:
    """Create the ``.npy`` file ``target`` of ``shape`` uint8 with all its blocks allocated.

    Writing through a memory map into a file whose blocks the disk cannot supply kills the
    process with SIGBUS; allocating first turns a full disk into this clear error instead.
    """
    import shutil

    header = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape)
    offset = header.offset
    del header
    needed = offset + int(np.prod(shape))
    free = shutil.disk_usage(target.parent).free
    try:
        fd = os.open(target, os.O_RDWR)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, needed)
            elif free < needed:
                raise OSError(28, "No space left on device")
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (28, 122):  # ENOSPC, EDQUOT
            raise CacheError(
                f"Not enough disk space for the image cache in {target.parent.parent}: it needs "
                f"{_mib(needed)} and {_mib(free)} is free. Free some space, or point CXRZOO_HOME "
                f"at a larger disk"
            ) from None
        raise


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
