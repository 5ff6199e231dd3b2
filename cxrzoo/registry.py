"""Named registries of plugins: models, datasets, transforms and metrics.

Every registry is filled by the plugin hooks (see :mod:`cxrzoo.plugins`) the first time it
is read, so built-ins and third-party packages arrive the same way.

An entry holds either the object itself or, registered lazily, its import path
``"package.module:Name"``: the module is imported the first time the object is used
(:meth:`Registry.get`), so listing and describing plugins never imports their heavy
dependencies. A lazy entry whose module fails to import raises :class:`PluginLoadError`,
one line naming the plugin, the entry and the module, and only when it is used.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import re
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cxrzoo.errors import INTERNAL_EXIT_CODE, CxrzooError, UserError, one_line

T = TypeVar("T")

KINDS = ("model", "dataset", "transform", "metric")

#: ``package.module:Name`` (the attribute may be dotted: ``module:Class.attr``).
IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class RegistryError(UserError, LookupError):
    """A name that is unknown, or registered twice."""


class DuplicateNameError(RegistryError, ValueError):
    pass


class UnknownNameError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class PluginLoadError(CxrzooError, ImportError):
    """A lazily registered object whose module cannot be imported (a broken or incomplete plugin)."""

    exit_code = INTERNAL_EXIT_CODE


def is_import_path(value: object) -> bool:
    """Whether ``value`` is an import path such as ``"pkg.module:Name"``."""
    return isinstance(value, str) and IMPORT_PATH.fullmatch(value) is not None


def import_object(path: str) -> Any:
    """The object named by ``"package.module:Name"`` (imports the module)."""
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from.

    ``target`` is the object itself, or for a lazy entry its import path; :attr:`obj` is the
    object either way (importing it on first use).
    """

    name: str
    target: T | str
    kind: str
    source: str  # the plugin (distribution) that registered it
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    lazy: bool = False
    # The loaded object or the error of loading it: [(obj, None)] or [(None, (message, traceback))].
    _state: list[tuple[Any, tuple[str, str] | None]] = field(default_factory=list, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def loaded(self) -> bool:
        """Whether :attr:`obj` is available without importing anything."""
        return not self.lazy or bool(self._state and self._state[0][1] is None)

    @property
    def error(self) -> str | None:
        """Why the lazy import failed (one line), or None while it has not failed."""
        return self._state[0][1][0] if self._state and self._state[0][1] else None

    @property
    def error_traceback(self) -> str | None:
        return self._state[0][1][1] if self._state and self._state[0][1] else None

    @property
    def obj(self) -> T:
        """The registered object; a lazy entry imports its module the first time."""
        if not self.lazy:
            return self.target  # type: ignore[return-value]
        with self._lock:
            if not self._state:
                self._state.append(self._load())
        obj, failure = self._state[0]
        if failure is not None:
            raise PluginLoadError(failure[0])
        return obj  # type: ignore[no-any-return]

    def _load(self) -> tuple[Any, tuple[str, str] | None]:
        path = str(self.target)
        try:
            return import_object(path), None
        except Exception as exc:  # a plugin's module may raise anything on import
            return None, (self._failure(path, exc), traceback.format_exc())

    def _failure(self, path: str, exc: BaseException) -> str:
        module = path.partition(":")[0]
        what = (
            f"{module} has no attribute {path.partition(':')[2]!r}"
            if isinstance(exc, AttributeError)
            else f"importing {module} failed: {type(exc).__name__}: {one_line(exc, 300)}"
        )
        return (
            f"{self.kind.capitalize()} {self.name!r} of plugin {self.source!r} cannot be loaded: {what}. "
            f"Reinstall the plugin or its dependencies; 'cxrzoo plugins --check' lists every such problem."
        )

    def check(self, *, load: bool = False) -> str | None:
        """Why this entry cannot be used, or None.

        Without ``load`` only whether the module exists is checked (nothing is imported beyond
        its parent packages), so a check stays cheap; with ``load`` the object is imported.
        """
        if not self.lazy:
            return None
        if load or self._state:
            try:
                self.obj  # noqa: B018 - loading is the point
            except PluginLoadError as exc:
                return str(exc)
            return None
        module = str(self.target).partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except Exception as exc:  # a parent package that fails to import
            return self._failure(str(self.target), exc)
        if not found:
            return self._failure(str(self.target), ModuleNotFoundError(f"No module named {module!r}"))
        return None


class Registry(Generic[T]):
    """A mapping from names to plugin objects that refuses duplicates and explains misses."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loader = loader

    def _ensure_loaded(self) -> None:
        if self._loader is not None:
            self._loader()

    def add(
        self,
        name: str,
        obj: T | str,
        *,
        source: str = "<runtime>",
        description: str = "",
        **metadata: Any,
    ) -> Entry[T]:
        """Register ``obj`` under ``name``: the object, or its import path ``"pkg.module:Name"``.

        A lazy entry (an import path) is not imported here; give it a ``description``, since
        there is no docstring to take one from until it is.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"A {self.kind} name must be a non-empty string, got {name!r}")
        lazy = isinstance(obj, str)
        if lazy and not is_import_path(obj):
            raise ValueError(
                f"{self.kind.capitalize()} {name!r}: {obj!r} is not an import path; "
                f"register the object itself or 'package.module:Name'"
            )
        if name in self._entries:
            first = self._entries[name].source
            raise DuplicateNameError(
                f"{self.kind.capitalize()} {name!r} is registered twice: "
                f"first by {first!r}, again by {source!r}. Rename one of them or block a "
                f"plugin with CXRZOO_BLOCK_PLUGINS."
            )
        if not description and not lazy:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        entry: Entry[T] = Entry(name, obj, self.kind, source, description, dict(metadata), lazy)
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (used by tests that register fake plugins)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name``, without importing a lazy entry's object."""
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The object of ``name``; a lazy entry is imported now (:class:`PluginLoadError` if it fails)."""
        return self.entry(name).obj

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
        msg = f"Unknown {self.kind} {name!r}."
        if close:
            msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        return msg + f" Run 'cxrzoo list --kind {self.kind}' to see them all."

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; ``pattern`` is a shell glob such as ``'*resnet*'``."""
        self._ensure_loaded()
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def entries(self, pattern: str | None = None) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
