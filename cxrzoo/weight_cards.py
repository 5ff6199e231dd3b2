"""Cards of the published weights the zoo knows how to import (``model_cards/``).

One Markdown file per weight source (``xrv:densenet121-res224-all``, ``torchvision:resnet50`` …)
with a small ``key: value`` front matter (source, title, architecture, kind, input, address,
licence) above the card. The folder sits at the top of the repository and is installed with the
package as ``cxrzoo/model_cards`` (package data), so ``cxrzoo list --kind weights`` and
``cxrzoo info SOURCE`` work from a wheel as from a checkout. Reading a card imports nothing heavy.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WeightCard", "get", "list_cards"]


@dataclass(frozen=True)
class WeightCard:
    """One card: its front matter and its Markdown body."""

    source: str
    title: str
    kind: str
    architecture: str
    address: str
    licence: str
    input: str
    body: str
    file: str

    def to_dict(self) -> dict[str, str]:
        return {
            k: getattr(self, k)
            for k in ("source", "title", "kind", "architecture", "input", "address", "licence", "file")
        }


def _folder():
    packaged = importlib.resources.files("cxrzoo").joinpath("model_cards")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "model_cards"  # a checkout whose link was lost


def _parse(name: str, text: str) -> WeightCard | None:
    if not text.startswith("---\n"):
        return None
    head, sep, body = text[4:].partition("\n---\n")
    if not sep:
        return None
    meta = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            meta[key.strip()] = value.strip()
    if "source" not in meta:
        return None
    return WeightCard(
        source=meta["source"],
        title=meta.get("title", ""),
        kind=meta.get("kind", ""),
        architecture=meta.get("architecture", ""),
        address=meta.get("address", ""),
        licence=meta.get("licence", ""),
        input=meta.get("input", ""),
        body=body.lstrip("\n"),
        file=name,
    )


def list_cards() -> list[WeightCard]:
    """Every card, sorted by source."""
    cards = []
    folder = _folder()
    for entry in folder.iterdir():
        if entry.name.endswith(".md") and not entry.name.startswith(("README", ".")):
            card = _parse(entry.name, entry.read_text(encoding="utf-8"))
            if card is not None:
                cards.append(card)
    return sorted(cards, key=lambda c: c.source)


def get(source: str) -> WeightCard | None:
    """The card of weight source ``source`` (``xrv:…``, ``torchvision:…``), or None."""
    for card in list_cards():
        if card.source == source:
            return card
    return None
