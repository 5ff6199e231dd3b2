"""The rare_disease model for cxrzoo: multi-resolution features, a memory bank of rare
examples, and separate rare and common heads."""

from __future__ import annotations

from typing import Any

from cxrzoo.hookspecs import hookimpl

__all__ = ["RareDiseaseConfig", "RareDiseaseModel", "register_models"]
__version__ = "0.1.0"

# Importing the package must not import torch: the registration below names the model by its
# import path, and these names are loaded from their modules on first access.
_LAZY = {
    "RareDiseaseModel": "model",
    "RareDiseaseConfig": "config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(
        "rare_disease",
        "cxrzoo_rare_disease.model:RareDiseaseModel",
        description="Backbone stages -> per-resolution projections -> rare head + common head.",
        config="cxrzoo_rare_disease.config:RareDiseaseConfig",
        card="cxrzoo_rare_disease:card.md",
    )
