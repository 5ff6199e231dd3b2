"""Model cards: the README.md saved beside every trained model."""

from __future__ import annotations

from typing import Any


def render_card(model: Any, config_doc: dict[str, Any]) -> str:
    """The model card of ``model`` as Markdown with Hub YAML metadata."""
    from cxrzoo import hub

    return hub.render_model_card(model, config_doc)
