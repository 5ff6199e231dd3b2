"""Named registries of plugins: models, datasets, transforms and metrics.

Every registry is filled by the plugin hooks (see :mod:`cxrzoo.plugins`) the first time it
is read, so built-ins and third-party packages arrive the same way.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cxrzoo.errors import UserError

T = TypeVar("T")

KINDS = ("model", "dataset", "transform", "metric")


class RegistryError(UserError, LookupError):
    """A name that is unknown, or registered twice."""


class DuplicateNameError(RegistryError, ValueError):
    pass


class UnknownNameError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and where it came from."""

    name: str
    obj: T
    kind: str
    source: str  # the plugin (distribution) that registered it
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


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
        obj: T,
        *,
        source: str = "<runtime>",
        description: str = "",
        **metadata: Any,
    ) -> Entry[T]:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"A {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            first = self._entries[name].source
            raise DuplicateNameError(
                f"{self.kind.capitalize()} {name!r} is registered twice: "
                f"first by {first!r}, again by {source!r}. Rename one of them or block a "
                f"plugin with CXRZOO_BLOCK_PLUGINS."
            )
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        entry = Entry(name, obj, self.kind, source, description, dict(metadata))
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (used by tests that register fake plugins)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
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
