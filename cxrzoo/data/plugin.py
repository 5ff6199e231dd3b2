"""The core's datasets, registered through the same hook as any plugin's."""

from __future__ import annotations

from cxrzoo.hookspecs import Register, hookimpl


@hookimpl
def register_datasets(register: Register) -> None:
    from cxrzoo.data.nih14 import Nih14, SyntheticSource

    register("nih14", Nih14, description="NIH ChestX-ray14 as Kaggle ships it (a folder)")
    register("synthetic", SyntheticSource, description="Chest-radiograph phantoms with drawn findings")
