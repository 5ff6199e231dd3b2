"""Loading plugins from entry points, one at a time, so that a broken one breaks nothing else.

Every package with an entry point in group ``cxrzoo`` is a plugin; the core's own models,
datasets, transforms and metrics arrive the same way. A plugin that fails to import, or
whose hook raises, is recorded in :func:`plugin_info` (distribution, version, error) and
skipped; whatever it registered before failing is rolled back.

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
from cxrzoo.registry import Registry

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


def plugin_info() -> list[PluginInfo]:
    """Every plugin seen, loaded or failed, core first."""
    ensure_loaded()
    return list(_state.infos.values())


def reset() -> None:
    """Forget everything loaded; the next registry access loads plugins again."""
    with _state.lock:
        for name in list(_state.infos):
            unregister_plugin(name)
        for registry in REGISTRIES.values():
            for name in list(registry._entries):
                registry.remove(name)
        _state.loaded = False
