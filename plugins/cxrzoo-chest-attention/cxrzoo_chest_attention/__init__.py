"""The chest_xray_attention model for cxrzoo: a light encoder with dual attention."""

from __future__ import annotations

from typing import Any

from cxrzoo.hookspecs import hookimpl

__all__ = ["ChestAttentionConfig", "ChestXrayAttention", "register_models"]
__version__ = "0.1.0"

# Importing the package must not import torch: the registration below names the model by its
# import path, and these names are loaded from their modules on first access.
_LAZY = {
    "ChestXrayAttention": "model",
    "ChestAttentionConfig": "config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(
        "chest_xray_attention",
        "cxrzoo_chest_attention.model:ChestXrayAttention",
        description="Encoder -> dual attention -> global average pool -> linear classifier.",
        config="cxrzoo_chest_attention.config:ChestAttentionConfig",
        card="cxrzoo_chest_attention:card.md",
    )
