"""The hooks a cxrzoo plugin implements.

A plugin is a module named by an entry point in group ``cxrzoo``. It implements any of these
hooks with :data:`cxrzoo.hookimpl`; each receives a ``register`` callback::

    from cxrzoo import hookimpl

    @hookimpl
    def register_models(register):
        register("my_model", MyModel, description="What it is")

``register(name, obj, *, description="", **metadata)`` adds ``obj`` to the registry of that
kind; registering a name that is already taken raises an error naming both plugins.

``obj`` may also be an import path, ``"my_plugin.model:MyModel"``: the module is imported on
first use only, so that ``cxrzoo list`` stays fast however heavy the plugin. Give such an entry
its one-line ``description``; a model also names its config class (in a module that does not
import torch, so ``cxrzoo info`` can show the defaults) and may name its card source, a file
shipped as package data::

    @hookimpl
    def register_models(register):
        register(
            "my_model",
            "my_plugin.model:MyModel",
            description="What it is",
            config="my_plugin.config:MyConfig",
            card="my_plugin:card.md",
        )

The metadata keys cxrzoo reads: ``config`` (a class or an import path) and ``card``
(``"package:resource"``, read with :mod:`importlib.resources`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("cxrzoo")
hookimpl = pluggy.HookimplMarker("cxrzoo")

Register = Callable[..., Any]


@hookspec
def register_models(register: Register) -> None:
    """Register model classes: ``register(name, cls)`` where ``cls`` subclasses ``ZooModel``, or
    ``register(name, "pkg.module:Cls", description=..., config="pkg.config:Cfg", card="pkg:card.md")``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset sources: ``register(name, cls)`` where ``cls`` subclasses ``DatasetSource``."""


@hookspec
def register_transforms(register: Register) -> None:
    """Register image transforms: ``register(name, cls)`` where ``cls`` subclasses ``Transform``."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register metrics: ``register(name, metric)`` where ``metric`` is a ``Metric``."""
