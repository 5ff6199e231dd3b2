"""The conformance kit accepts any 14 findings in any order, as a model of another data set has."""

from __future__ import annotations

from cxrzoo.labels import LABELS
from cxrzoo.testing import check_output, tiny_model


def test_a_model_of_fourteen_findings_in_another_order_conforms():
    tiny = tiny_model("chest_xray_attention", seed=0)
    reordered = type(tiny)(tiny.config.replace(labels=tuple(reversed(LABELS))))
    reordered.architecture = "chest_xray_attention"
    check_output(reordered)
    assert reordered.labels[0] == "Hernia"
