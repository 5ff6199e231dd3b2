"""The ensemble model for cxrzoo: averages the probabilities of trained members."""

from __future__ import annotations

from typing import Any

from cxrzoo.hookspecs import hookimpl

__all__ = ["DEFAULT_MEMBERS", "Ensemble", "EnsembleConfig", "MissingMemberError", "register_models"]
__version__ = "0.1.0"

# Importing the package must not import torch: the registration below names the model by its
# import path, and these names are loaded from their modules on first access.
_LAZY = {
    "Ensemble": "model",
    "MissingMemberError": "model",
    "EnsembleConfig": "config",
    "DEFAULT_MEMBERS": "config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(
        "ensemble",
        "cxrzoo_ensemble.model:Ensemble",
        description="Averages member probabilities; ``forward`` returns the logit of that average.",
        config="cxrzoo_ensemble.config:EnsembleConfig",
        card="cxrzoo_ensemble:card.md",
    )
