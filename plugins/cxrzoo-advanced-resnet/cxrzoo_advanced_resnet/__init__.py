"""The advanced_resnet model for cxrzoo: ResNet-50 + CBAM attention + FPN."""

from cxrzoo import hookimpl
from cxrzoo_advanced_resnet.model import AdvancedResNet, AdvancedResNetConfig

__all__ = ["AdvancedResNet", "AdvancedResNetConfig", "register_models"]
__version__ = "0.1.0"


@hookimpl
def register_models(register):
    register("advanced_resnet", AdvancedResNet)
