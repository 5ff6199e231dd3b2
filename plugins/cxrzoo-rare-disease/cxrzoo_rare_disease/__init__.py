"""The rare_disease model for cxrzoo: multi-resolution features, a memory bank of rare
examples, and separate rare and common heads."""

from cxrzoo import hookimpl
from cxrzoo_rare_disease.model import RareDiseaseConfig, RareDiseaseModel

__all__ = ["RareDiseaseConfig", "RareDiseaseModel", "register_models"]
__version__ = "0.1.0"


@hookimpl
def register_models(register):
    register("rare_disease", RareDiseaseModel)
