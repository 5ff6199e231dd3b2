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
