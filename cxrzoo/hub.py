"""Everything that touches the Hugging Face Hub. The only module importing huggingface_hub."""

from __future__ import annotations

from typing import Any


def render_model_card(model: Any, config_doc: dict[str, Any]) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        license="apache-2.0",
        library_name="cxrzoo",
        tags=["cxrzoo", "chest-x-ray", "multi-label-classification", model.architecture],
        datasets=["nih-chest-xrays"],
    )
    body = f"# {model.architecture}\n\nA cxrzoo model for the 14 NIH ChestX-ray14 findings.\n"
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))
