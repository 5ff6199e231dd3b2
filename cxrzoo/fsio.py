"""File-system primitives that every writer in cxrzoo shares.

- :func:`check_name`: the one validator of store, run and cache names;
- :func:`safe_join`: joins a name under a root and refuses any result outside it;
- :func:`entry_lock`: one lock per store entry or cache key (``fcntl`` locks through
  ``filelock``, released by the kernel when the process exits, even on SIGKILL);
- :func:`atomic_folder` / :func:`atomic_write_bytes`: readers see the old content or the new,
  never a mix, and a crash leaves at most a temporary that the next writer removes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cxrzoo.errors import DataError, LockedError, UserError

#: Store, run and cache names: a letter or digit, then letters, digits, '.', '_', '-'.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_MAX = 100
#: Temporaries older than this are taken to belong to a process that died.
STALE_SECONDS = 6 * 3600


class InvalidNameError(UserError, ValueError):
    """A name that cannot be a store, run or cache entry."""


class PathEscapeError(UserError, ValueError):
    """A path that would leave the folder it must stay in."""


def check_name(name: object, *, what: str = "name") -> str:
    """``name`` if it is a valid entry name, else a :class:`InvalidNameError` saying why."""
    if not isinstance(name, str):
        raise InvalidNameError(f"Invalid {what} {name!r}: expected text")
    shown = name if len(name) <= 60 else name[:57] + "..."
    if len(name) > NAME_MAX:
        raise InvalidNameError(f"Invalid {what} {shown!r}: longer than {NAME_MAX} characters")
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"Invalid {what} {shown!r}: use letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit (no '/', no '..', no spaces)"
        )
    return name


def safe_join(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root / parts…``, refusing a result that is not strictly inside ``root``.

    Symbolic links are resolved on both sides, so a link inside ``root`` that points outside
    it is refused too.
    """
    base = Path(root).expanduser().resolve()
    joined = base.joinpath(*parts)
    target = joined.resolve()
    if target == base or not target.is_relative_to(base):
        raise PathEscapeError(f"{joined} is outside {base}; refusing to use it")
    return joined


# -- locks ----------------------------------------------------------------------------------
def lock_path(target: str | os.PathLike[str]) -> Path:
    """Where the lock of ``target`` lives: a hidden ``.locks`` folder beside it."""
    target = Path(target)
    return target.parent / ".locks" / f"{target.name}.lock"


@contextmanager
def entry_lock(target: str | os.PathLike[str], *, wait: float | None = 0, what: str = "") -> Iterator[None]:
    """Hold the lock of ``target`` (a store entry or a cache folder) for the block.

    ``wait=0`` fails at once with :class:`LockedError` when another process holds it;
    ``wait=None`` waits as long as it takes, a number waits that many seconds.
    """
    from filelock import FileLock, Timeout

    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create {path.parent}: {exc.strerror or exc}") from None
    lock = FileLock(str(path), timeout=-1 if wait is None else wait)
    try:
        lock.acquire()
    except Timeout:
        label = what or str(target)
        raise LockedError(
            f"{label} is being written by another process right now (lock {path}); wait for it to "
            f"finish or use another name"
        ) from None
    except OSError as exc:
        raise DataError(f"Cannot lock {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


# -- atomic writes --------------------------------------------------------------------------
def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def clean_stale_temporaries(parent: str | os.PathLike[str], name: str, *, age: float = STALE_SECONDS) -> None:
    """Remove temporaries of ``name`` left in ``parent`` by a process that died.

    A temporary is stale when nobody holds the entry's lock (the caller holds it) or when it
    is older than ``age`` seconds.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return
    for prefix in (f".{name}.tmp-", f".{name}.old-"):
        for p in parent.glob(f"{glob_escape(prefix)}*"):
            try:
                if age <= 0 or time.time() - p.lstat().st_mtime > age:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
            except OSError:
                pass


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


@contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``.

    The swap is one atomic exchange where the file system supports it, so at every instant
    ``target`` is either the old folder or the new one. On error the temporary folder is
    removed and ``target`` is left as it was. Callers that may race hold :func:`entry_lock`.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise DataError(f"Cannot write in {target.parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists() or target.is_symlink():
            if target.is_symlink() or not target.is_dir():
                raise DataError(f"{target} exists and is not a folder; refusing to replace it")
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # now holds the old content
                return
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "x")
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / "x", target)  # put the old one back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "NAME_MAX",
    "NAME_PATTERN",
    "InvalidNameError",
    "PathEscapeError",
    "atomic_folder",
    "atomic_write_bytes",
    "check_name",
    "clean_stale_temporaries",
    "entry_lock",
    "safe_join",
]
