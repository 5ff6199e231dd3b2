"""torchxrayvision's published chest X-ray classifiers as cxrzoo models.

``xrv_densenet`` (DenseNet-121, 224 px) and ``xrv_resnet`` (ResNet-50, 512 px) rebuilt from
torchvision layers; ``cxrzoo import xrv:densenet121-res224-all`` turns a published file into a
store entry (see :mod:`cxrzoo_xrv.importer`). torchxrayvision itself is never imported.
"""

from __future__ import annotations

from typing import Any

from cxrzoo.hookspecs import hookimpl

__all__ = ["XrvDenseNet", "XrvDenseNetConfig", "XrvResNet", "XrvResNetConfig", "register_models"]
__version__ = "0.1.0"

_LAZY = {
    "XrvDenseNet": "model",
    "XrvResNet": "model",
    "XrvDenseNetConfig": "config",
    "XrvResNetConfig": "config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(
        "xrv_densenet",
        "cxrzoo_xrv.model:XrvDenseNet",
        description="torchxrayvision's DenseNet-121 (1 channel, 224 px, [-1024, 1024] input).",
        config="cxrzoo_xrv.config:XrvDenseNetConfig",
        card="cxrzoo_xrv:card.md",
    )
    register(
        "xrv_resnet",
        "cxrzoo_xrv.model:XrvResNet",
        description="torchxrayvision's ResNet-50 (1 channel, 512 px, [-1024, 1024] input).",
        config="cxrzoo_xrv.config:XrvResNetConfig",
        card="cxrzoo_xrv:card.md",
    )
