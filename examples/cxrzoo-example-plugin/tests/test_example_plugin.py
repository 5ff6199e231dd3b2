"""The example plugin passes cxrzoo's conformance suite (registered in-process here; the core
tests install it as a real package and find it through its entry point)."""

import cxrzoo_example
import pytest

from cxrzoo import plugins
from cxrzoo.testing import ModelConformance


@pytest.fixture(autouse=True, scope="module")
def _registered():
    if "example_cnn" in plugins.models:  # already installed as a package
        yield
        return
    plugins.register_plugin(cxrzoo_example, "cxrzoo-example-plugin")
    yield
    plugins.unregister_plugin("cxrzoo-example-plugin")


class TestExampleConformance(ModelConformance):
    model_name = "example_cnn"


class TestCommitteeConformance(ModelConformance):
    model_name = "example_committee"


def test_committee_trains_evaluates_saves_and_loads(tmp_path, monkeypatch):
    """The composite goes through train, evaluate, save and load with no core change."""
    import json

    import numpy as np
    import torch
    from click.testing import CliRunner

    import cxrzoo
    from cxrzoo.cli import main

    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    runner = CliRunner()
    data = ["--synthetic-n", "150", "--recipe", "quick", "--no-progress", "--image-size", "32"]
    trained = runner.invoke(main, ["train", "example_committee", *data, "--set", "epochs=3"])
    assert trained.exit_code == 0, trained.output
    assert "Committee member 'example_cnn' is not trained yet" in trained.output
    committee = cxrzoo.load("example_committee")
    assert committee.metadata["training"]["members"] == ["example_cnn"]
    assert committee.config.thresholds is not None  # calibrated by the core's finishing step
    evaluated = runner.invoke(
        main, ["evaluate", "example_committee", "--bootstrap", "0", "--json", "--no-progress"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["macro_auroc"] is not None
    # Its probability is its member's (one member): prediction runs the member's preprocessing.
    image = np.random.default_rng(0).integers(0, 255, (48, 40), dtype=np.uint8)
    member = cxrzoo.load("example_cnn")
    assert np.allclose(committee.predict_proba([image]), member.predict_proba([image]), atol=1e-5)
    # Saved committees are self-contained.
    (tmp_path / "models" / "example_cnn").rename(tmp_path / "elsewhere")
    again = cxrzoo.load("example_committee")
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(x), committee(x), atol=1e-5)
