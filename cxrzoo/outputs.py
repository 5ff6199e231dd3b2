"""Where commands write their results: checked before any work, replaced only atomically.

Every command that writes a file or a folder of files (``predict --out``, ``evaluate
--report``, ``compare --report``, ``explain --out``, ``export --out``, ``data synth``) follows
the same rules:

- The path is checked before any work starts. An existing file is replaced only when it holds
  an earlier result of the same kind (a cxrzoo prediction table, an ONNX export, a report file
  listed in the folder's :data:`MARKER`) or when the user gives ``--overwrite``; anything else
  is refused with one line (exit 3) and never opened for writing.
- A result is written beside its path and renamed over it when complete, so the path holds the
  old content or the new one at every instant, never a part of either.
- Missing parent folders are created when the result is written; a folder that cannot be
  written is one line naming it (exit 3), and nothing already there changes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cxrzoo.errors import DataError

#: The file in a result folder that lists which of its files cxrzoo wrote, and as what.
MARKER = ".cxrzoo-outputs.json"


class OutputExistsError(DataError):
    """An output path that holds something cxrzoo did not write (and ``--overwrite`` was not given)."""


def _refusal(option: str, path: Path, what: str) -> OutputExistsError:
    return OutputExistsError(
        f"{option} {path}: {what}; refusing to replace it (give another {option}, or --overwrite to replace it)"
    )


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we may write in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{option} {path}: the folder {parent} is not writable")


def check_file(
    path: str | os.PathLike[str],
    *,
    option: str,
    kind: str,
    is_own: Callable[[Path], bool],
    overwrite: bool = False,
) -> Path:
    """Check that ``path`` may receive a result of ``kind`` (see the module docstring).

    ``is_own(path)`` tells whether an existing file is an earlier result of the same kind; it
    must only read, and any exception it raises counts as "no".
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise DataError(f"{option} {path}: exists and is not a file")
        if not overwrite and not _safely(is_own, path):
            raise _refusal(option, path, f"exists and is not a {kind}")
    _check_parent(path, option)
    return path


def _safely(is_own: Callable[[Path], bool], path: Path) -> bool:
    try:
        return bool(is_own(path))
    except Exception:  # a file the probe cannot read is not one of ours
        return False


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file beside ``path`` to write the result into; it is renamed over ``path``
    when the block ends without error, and removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(f"Cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _new_file_mode())
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# -- result folders ---------------------------------------------------------------------------
def _marker(folder: Path) -> dict[str, object]:
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _written_here(folder: Path) -> dict[str, str]:
    """``{file name: kind}`` of the files cxrzoo wrote in ``folder`` (from its :data:`MARKER`)."""
    files = _marker(folder).get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def folder_kind(folder: str | os.PathLike[str]) -> str | None:
    """The kind of result a whole folder holds when cxrzoo wrote all of it (:func:`mark_folder`)."""
    kind = _marker(Path(folder)).get("folder")
    return kind if isinstance(kind, str) else None


def mark_folder(folder: str | os.PathLike[str], kind: str) -> None:
    """Record in ``folder`` (being built) that all of it is a cxrzoo result of ``kind``."""
    write_text(Path(folder) / MARKER, json.dumps({"folder": kind, "files": {}}, indent=1) + "\n")


def check_folder(
    folder: str | os.PathLike[str],
    *,
    option: str,
    kind: str,
    names: Iterable[str],
    overwrite: bool = False,
) -> Path:
    """Check that the files ``names`` of a result of ``kind`` may be written into ``folder``.

    The folder may exist and hold other files, which are left alone. A file of ``names`` that
    exists is replaced only when the folder's :data:`MARKER` lists it as an earlier result of the
    same kind, or with ``overwrite``.
    """
    folder = Path(folder)
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise DataError(f"{option} {folder}: exists and is not a folder")
        ours = _written_here(folder)
        clashes = []
        for name in names:
            target = folder / name
            if target.exists() or target.is_symlink():
                if not target.is_file():
                    raise DataError(f"{option} {folder}: {name} exists and is not a file")
                if ours.get(name) != kind:
                    clashes.append(name)
        if clashes and not overwrite:
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            raise _refusal(option, folder, f"{clashes[0]}{more} exists and is not a cxrzoo {kind}")
    _check_parent(folder / "x", option)
    return folder


@contextmanager
def result_folder(folder: str | os.PathLike[str], *, kind: str) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to write a result's files into.

    When the block ends without error, each file is renamed into ``folder`` (created if
    missing; other files there are left alone) and listed in its :data:`MARKER` as ``kind``;
    on error nothing in ``folder`` changes. Check with :func:`check_folder` first.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    except OSError as exc:
        raise DataError(f"Cannot write in {folder.parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
        folder.mkdir(exist_ok=True)
        written = _written_here(folder)
        for item in sorted(tmp.iterdir()):
            os.chmod(item, _new_file_mode())
            os.replace(item, folder / item.name)
            written[item.name] = kind
        write_text(folder / MARKER, json.dumps({"files": dict(sorted(written.items()))}, indent=1) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "MARKER",
    "OutputExistsError",
    "check_file",
    "check_folder",
    "folder_kind",
    "mark_folder",
    "replacing",
    "result_folder",
    "write_text",
]
