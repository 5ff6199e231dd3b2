"""Loading plugins from entry points, one at a time, so that a broken one breaks nothing else.

Every package with an entry point in group ``cxrzoo`` is a plugin; the core's own models,
datasets, transforms and metrics arrive the same way. A plugin that fails to import, or
whose hook raises, is recorded in :func:`plugin_info` (distribution, version, error) and
skipped; whatever it registered before failing is rolled back.

A plugin may register an object lazily, by its import path (``"pkg.module:Name"``) with a
one-line description: the module is imported on first use, so ``cxrzoo list``, ``info`` and
``plugins`` never import a model's heavy dependencies (torch, timm). A model registered so also
names its config class (``config="pkg.config:NameConfig"``, a module that does not import
torch) and its card source (``card="pkg:card.md"``, package data)::

    register(
        "rare_disease",
        "cxrzoo_rare_disease.model:RareDiseaseModel",
        description="Rare-finding memory bank and dual heads",
        config="cxrzoo_rare_disease.config:RareDiseaseConfig",
        card="cxrzoo_rare_disease:card.md",
    )

A lazy object whose module fails to import raises :class:`~cxrzoo.registry.PluginLoadError` when
used; :func:`check_plugins` finds such problems ahead of use.

Environment variables limit what loads for a run (names are entry-point or distribution
names, comma-separated):

- ``CXRZOO_PLUGINS``: load only these plugins (the core's own always load).
- ``CXRZOO_BLOCK_PLUGINS``: never load these.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
import traceback
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from cxrzoo import hookspecs
from cxrzoo.registry import Entry, Registry, is_import_path

CORE_DISTRIBUTION = "cxrzoo"
ENTRY_POINT_GROUP = "cxrzoo"
HOOKS = {
    "model": "register_models",
    "dataset": "register_datasets",
    "transform": "register_transforms",
    "metric": "register_metrics",
}


@dataclass
class PluginInfo:
    """What one plugin package did when it was loaded."""

    name: str
    distribution: str | None
    version: str | None
    module: str | None
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    #: One line per registered entry that cannot be used (a lazy import that fails).
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded = False
        self.loading = False
        self.infos: dict[str, PluginInfo] = {}
        self.manager = pluggy.PluginManager("cxrzoo")
        self.manager.add_hookspecs(hookspecs)


_state = _State()

models: Registry[Any] = Registry("model", loader=lambda: ensure_loaded())
datasets: Registry[Any] = Registry("dataset", loader=lambda: ensure_loaded())
transforms: Registry[Any] = Registry("transform", loader=lambda: ensure_loaded())
metrics: Registry[Any] = Registry("metric", loader=lambda: ensure_loaded())
REGISTRIES: dict[str, Registry[Any]] = {
    "model": models,
    "dataset": datasets,
    "transform": transforms,
    "metric": metrics,
}


def _names_from_env(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _wanted(ep: md.EntryPoint, dist_name: str | None) -> bool:
    names = {ep.name, ep.value.split(":")[0]}
    if dist_name:
        names |= {dist_name, dist_name.replace("-", "_")}
    blocked = _names_from_env("CXRZOO_BLOCK_PLUGINS")
    if blocked and names & blocked:
        return False
    if dist_name == CORE_DISTRIBUTION:
        return True
    allowed = _names_from_env("CXRZOO_PLUGINS")
    return allowed is None or bool(names & allowed)


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _entry_points() -> list[md.EntryPoint]:
    eps = list(md.entry_points(group=ENTRY_POINT_GROUP))
    # Distributions installed twice on sys.path (e.g. editable + target dir) show up twice.
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in eps:
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    # Core first, so a third party can never shadow a built-in name.
    return sorted(unique, key=lambda ep: (_dist_name(ep) != CORE_DISTRIBUTION, ep.name))


def _dist_name(ep: md.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def ensure_loaded() -> None:
    """Load every plugin once (cheap after the first call)."""
    if _state.loaded:
        return
    with _state.lock:
        if _state.loaded or _state.loading:
            return
        _state.loading = True
        try:
            for ep in _entry_points():
                dist_name = _dist_name(ep)
                if not _wanted(ep, dist_name):
                    continue
                info = PluginInfo(
                    name=ep.name,
                    distribution=dist_name,
                    version=ep.dist.version if getattr(ep, "dist", None) else None,
                    module=ep.value,
                )
                try:
                    module = ep.load()
                except Exception as exc:  # a plugin may raise anything on import
                    info.error = f"import failed: {_short_error(exc)}"
                    info.traceback = traceback.format_exc()
                    _state.infos[ep.name] = info
                    continue
                _register(module, info)
            _state.loaded = True
        finally:
            _state.loading = False


def _register(module: ModuleType | object, info: PluginInfo) -> PluginInfo:
    """Register one plugin object with pluggy and run its hooks, rolling back on error."""
    _state.infos[info.name] = info
    try:
        _state.manager.register(module, name=info.name)
    except Exception as exc:  # pluggy validates hook names and signatures here
        info.error = f"invalid plugin: {_short_error(exc)}"
        info.traceback = traceback.format_exc()
        return info
    unknown = [hc.name for hc in _state.manager.get_hookcallers(module) or [] if not hc.has_spec()]
    if unknown:
        import difflib

        hints = {n: difflib.get_close_matches(n, HOOKS.values(), n=1) for n in unknown}
        described = ", ".join(
            f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in hints.items()
        )
        info.error = f"invalid plugin: {described} is not a cxrzoo hook; hooks: {', '.join(HOOKS.values())}"
        _state.manager.unregister(name=info.name)
        return info
    for kind, hook_name in HOOKS.items():
        registry = REGISTRIES[kind]
        impls = [
            impl
            for impl in getattr(_state.manager.hook, hook_name).get_hookimpls()
            if impl.plugin_name == info.name
        ]
        for impl in impls:
            added: list[str] = []

            def register(
                name: str,
                obj: Any,
                *,
                description: str = "",
                _registry: Registry[Any] = registry,
                _added: list[str] = added,
                **meta: Any,
            ) -> None:
                source = info.distribution or info.name
                _check_meta(name, meta)
                _registry.add(name, obj, source=source, description=description, **meta)
                _added.append(name)

            try:
                impl.function(register=register)
            except Exception as exc:
                for name in added:
                    registry.remove(name)
                info.error = f"{hook_name} failed: {_short_error(exc)}"
                info.traceback = traceback.format_exc()
                _rollback(info)
                _state.manager.unregister(name=info.name)
                return info
            if added:
                info.registered.setdefault(kind, []).extend(added)
    return info


def _check_meta(name: str, meta: dict[str, Any]) -> None:
    config = meta.get("config")
    if config is not None and not (is_import_path(config) or isinstance(config, type)):
        raise ValueError(f"{name!r}: config={config!r} is not a class or an import path 'pkg.module:Name'")
    card = meta.get("card")
    if card is not None and not (isinstance(card, str) and card.count(":") == 1 and card.split(":")[1]):
        raise ValueError(f"{name!r}: card={card!r} is not 'package:resource', e.g. 'my_plugin:card.md'")


def _rollback(info: PluginInfo) -> None:
    for kind, names in info.registered.items():
        for name in names:
            REGISTRIES[kind].remove(name)
    info.registered = {}


def register_plugin(plugin: ModuleType | object, name: str) -> PluginInfo:
    """Register an in-process plugin object (tests, notebooks). Returns what it did."""
    ensure_loaded()
    with _state.lock:
        if name in _state.infos:
            raise ValueError(f"A plugin named {name!r} is already loaded")
        return _register(plugin, PluginInfo(name=name, distribution=None, version=None, module=None))


def unregister_plugin(name: str) -> None:
    """Remove an in-process plugin and everything it registered."""
    with _state.lock:
        info = _state.infos.pop(name, None)
        if info is None:
            return
        _rollback(info)
        if _state.manager.has_plugin(name):
            _state.manager.unregister(name=name)


def _entries_of(info: PluginInfo) -> list[Entry[Any]]:
    return [
        REGISTRIES[kind]._entries[name]
        for kind, names in info.registered.items()
        for name in names
        if name in REGISTRIES[kind]._entries
    ]


def plugin_info() -> list[PluginInfo]:
    """Every plugin seen, loaded or failed, core first.

    ``problems`` lists the lazy entries whose import already failed in this process; see
    :func:`check_plugins` to look for them ahead of use.
    """
    ensure_loaded()
    infos = list(_state.infos.values())
    for info in infos:
        info.problems = [e.error for e in _entries_of(info) if e.error]
    return infos


def check_plugins(*, load: bool = False) -> list[PluginInfo]:
    """:func:`plugin_info`, with ``problems`` checked for every lazy entry.

    By default only whether each lazy entry's module exists is checked, which imports nothing
    heavy; ``load=True`` imports every lazy entry (and so torch), finding errors raised inside
    the modules too.
    """
    infos = plugin_info()
    for info in infos:
        info.problems = [p for p in (e.check(load=load) for e in _entries_of(info)) if p]
    return infos


def model_config_class(name: str) -> type[Any]:
    """The config class of model ``name``, importing only its config module when it names one.

    A model registered with ``config=`` is described without importing the model itself (nor
    torch); one registered without it (an eager third-party plugin) is imported for its
    ``config_class``.
    """
    entry = models.entry(name)
    config = entry.metadata.get("config")
    if config is None:
        return entry.obj.config_class  # type: ignore[no-any-return]
    if isinstance(config, type):
        return config
    probe = Entry(name, config, "model", entry.source, lazy=True)
    return probe.obj  # type: ignore[return-value]


def reset() -> None:
    """Forget everything loaded; the next registry access loads plugins again."""
    with _state.lock:
        for name in list(_state.infos):
            unregister_plugin(name)
        for registry in REGISTRIES.values():
            for name in list(registry._entries):
                registry.remove(name)
        _state.loaded = False
