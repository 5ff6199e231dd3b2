"""Datasets: the plugin interface, NIH ChestX-ray14, catalog, splits and the preprocessing cache.

from cxrzoo.data import open_dataset, make_splits, build_cache
source = open_dataset("~/nih-chest-xrays")      # a folder; its layout is detected
both = open_dataset(["~/nih-chest-xrays", "~/CheXpert-v1.0-small"])   # several sources as one
report = source.catalog(verify=True)            # problems by name; report.table = usable images
splits = make_splits(source.table(), fraction=0.05, seed=0)
"""

from __future__ import annotations

from typing import Any

from cxrzoo.data.base import (
    TABLE_COLUMNS,
    CombinedSource,
    DatasetError,
    DatasetSource,
    Inventory,
    detect_datasets,
    label_columns,
    label_targets,
    open_dataset,
)
from cxrzoo.data.catalog import CatalogReport, build_catalog
from cxrzoo.data.io import ImageReadError, read_image
from cxrzoo.data.nih14 import Nih14, SyntheticSource
from cxrzoo.data.splits import Splits, class_distribution, make_splits, split_by_patient

__all__ = [
    "TABLE_COLUMNS",
    "CacheError",
    "CatalogReport",
    "CombinedSource",
    "DatasetError",
    "DatasetSource",
    "ImageCache",
    "ImageReadError",
    "Inventory",
    "Nih14",
    "Splits",
    "SyntheticSource",
    "build_cache",
    "build_catalog",
    "class_distribution",
    "detect_datasets",
    "label_columns",
    "label_targets",
    "make_splits",
    "open_dataset",
    "read_image",
    "split_by_patient",
]

_CACHE_NAMES = {"CacheError", "ImageCache", "build_cache"}


def __getattr__(name: str) -> Any:
    # The cache pulls in the transforms and the store (torch); load it only when asked for.
    if name in _CACHE_NAMES:
        from cxrzoo.data import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'cxrzoo.data' has no attribute {name!r}")
