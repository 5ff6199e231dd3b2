"""cxrzoo: a model zoo for the 14 findings of NIH ChestX-ray14.

import cxrzoo
model = cxrzoo.create_model("advanced_resnet")   # untrained, from its registry name
model = cxrzoo.load("ensemble")                  # trained, from the store (or hf-hub:org/repo)
probs = model.predict(["chest.png"])             # [{label: probability}]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# First of all: importing cxrzoo.threads sets OpenMP's wait policy, which OpenMP reads only once,
# when PyTorch loads it (see cxrzoo/threads.py).
from cxrzoo import threads as _threads
from cxrzoo.config import ConfigError, ModelConfig
from cxrzoo.hookspecs import hookimpl
from cxrzoo.labels import LABELS
from cxrzoo.registry import DuplicateNameError, PluginLoadError, RegistryError, UnknownNameError

if TYPE_CHECKING:
    from cxrzoo.model import ZooModel

__version__ = "0.1.0"

__all__ = [
    "LABELS",
    "ConfigError",
    "DuplicateNameError",
    "ModelConfig",
    "PluginLoadError",
    "RegistryError",
    "UnknownNameError",
    "ZooModel",
    "__version__",
    "create_model",
    "hookimpl",
    "list_datasets",
    "list_metrics",
    "list_models",
    "list_transforms",
    "load",
]


def __getattr__(name: str) -> Any:
    # ZooModel needs torch: imported on first use, so that `import cxrzoo` (and with it
    # `cxrzoo list`) does not pay for torch.
    if name == "ZooModel":
        from cxrzoo.model import ZooModel

        return ZooModel
    raise AttributeError(f"module 'cxrzoo' has no attribute {name!r}")


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a glob such as ``'*resnet*'``."""
    from cxrzoo.plugins import models

    return models.names(pattern)


def list_datasets(pattern: str | None = None) -> list[str]:
    from cxrzoo.plugins import datasets

    return datasets.names(pattern)


def list_transforms(pattern: str | None = None) -> list[str]:
    from cxrzoo.plugins import transforms

    return transforms.names(pattern)


def list_metrics(pattern: str | None = None) -> list[str]:
    from cxrzoo.plugins import metrics

    return metrics.names(pattern)


def create_model(name: str, config: ModelConfig | None = None, **kwargs: Any) -> ZooModel:
    """Build an untrained model by registry name.

    Keyword arguments override fields of the model's config (``attention=False``,
    ``backbone="resnet18"``, ``image_size=64`` …); strings are parsed as on the command line.
    """
    from cxrzoo.plugins import models

    cls = models.get(name)
    model = cls(config, **kwargs)
    model.architecture = name
    return model


def load(name_or_path: str | os.PathLike[str], *, device: str = "cpu") -> ZooModel:
    """Load a trained model: a store name, a model folder, or a Hub repo.

    A Hub repo is ``hf://org/repo[@revision]`` or, as timm spells it, ``hf-hub:org/repo[@revision]``;
    it is pulled into the store and verified first (see :func:`cxrzoo.hub.resolve_model`).
    """
    from cxrzoo import hub, store

    _threads.configure_threads()
    return store.load_folder(hub.resolve_model(name_or_path), device=device)
