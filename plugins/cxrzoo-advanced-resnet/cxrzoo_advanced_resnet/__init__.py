"""The advanced_resnet model for cxrzoo: ResNet-50 + CBAM attention + FPN."""

from __future__ import annotations

from typing import Any

from cxrzoo.hookspecs import hookimpl

__all__ = ["AdvancedResNet", "AdvancedResNetConfig", "register_models"]
__version__ = "0.1.0"

# Importing the package must not import torch: the registration below names the model by its
# import path, and these names are loaded from their modules on first access.
_LAZY = {
    "AdvancedResNet": "model",
    "AdvancedResNetConfig": "config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(
        "advanced_resnet",
        "cxrzoo_advanced_resnet.model:AdvancedResNet",
        description="ResNet-50 + CBAM attention + FPN, pooled over every pyramid level.",
        config="cxrzoo_advanced_resnet.config:AdvancedResNetConfig",
        card="cxrzoo_advanced_resnet:card.md",
    )
