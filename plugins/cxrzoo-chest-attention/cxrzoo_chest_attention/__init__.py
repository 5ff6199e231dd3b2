"""The chest_xray_attention model for cxrzoo: a light encoder with dual attention."""

from cxrzoo import hookimpl
from cxrzoo_chest_attention.model import ChestAttentionConfig, ChestXrayAttention

__all__ = ["ChestAttentionConfig", "ChestXrayAttention", "register_models"]
__version__ = "0.1.0"


@hookimpl
def register_models(register):
    register("chest_xray_attention", ChestXrayAttention)
