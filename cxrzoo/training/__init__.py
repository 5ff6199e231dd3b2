"""Training: trainer, recipes, checkpoints, distributed runs, and the train/crossval entry points."""

from cxrzoo.training.recipes import RECIPES, Recipe, get_recipe
from cxrzoo.training.run import DataSpec, crossval_model, train_model

__all__ = ["RECIPES", "DataSpec", "Recipe", "crossval_model", "get_recipe", "train_model"]
