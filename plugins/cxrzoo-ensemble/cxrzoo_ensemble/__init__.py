"""The ensemble model for cxrzoo: averages the probabilities of trained members."""

from cxrzoo import hookimpl
from cxrzoo_ensemble.model import DEFAULT_MEMBERS, Ensemble, EnsembleConfig, MissingMemberError

__all__ = ["DEFAULT_MEMBERS", "Ensemble", "EnsembleConfig", "MissingMemberError", "register_models"]
__version__ = "0.1.0"


@hookimpl
def register_models(register):
    register("ensemble", Ensemble)
