"""model_cards/: one card per published weight cxrzoo imports, listed and shown by the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cxrzoo import weight_cards
from cxrzoo.cli import main

SECTIONS = (
    "## Labels",
    "## Preprocessing",
    "## Published figures",
    "## Caveats",
    "## Licence",
    "## Citation",
)


def test_every_importable_xrv_weight_has_a_full_card():
    published = pytest.importorskip("cxrzoo_xrv.published")
    sources = {c.source for c in weight_cards.list_cards()}
    assert {w.source for w in published.WEIGHTS} <= sources
    for card in weight_cards.list_cards():
        assert card.title and card.address.startswith("https://") and card.licence, card.file
        assert all(s in card.body for s in SECTIONS), card.file


def test_list_weights_and_info_show_the_cards():
    runner = CliRunner()
    listed = runner.invoke(main, ["list", "--kind", "weights", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert "xrv:densenet121-res224-all" in {r["source"] for r in rows}
    shown = runner.invoke(main, ["info", "xrv:densenet121-res224-all"])
    assert shown.exit_code == 0 and "## Published figures" in shown.output
    assert "BENCHMARKS.md" in shown.output
    wrong = runner.invoke(main, ["info", "xrv:densenet121-res224-al"])
    assert wrong.exit_code != 0 and "xrv:densenet121-res224-all" in wrong.output
