import torch

import cxrzoo
from cxrzoo.testing import ModelConformance, tiny_model


class TestConformance(ModelConformance):
    model_name = "chest_xray_attention"


def test_is_lighter_than_advanced_resnet_at_defaults():
    light = cxrzoo.create_model("chest_xray_attention").num_parameters()
    assert light < 12_000_000  # a ResNet-18-sized encoder


def test_attention_ablation():
    with_attention = tiny_model("chest_xray_attention")
    without = tiny_model("chest_xray_attention", attention=False)
    assert without.num_parameters() < with_attention.num_parameters()
    maps = with_attention.eval().feature_maps(torch.randn(1, 1, 32, 32))
    assert {"channel", "spatial", "features"} <= set(maps)
    assert "spatial" not in without.eval().feature_maps(torch.randn(1, 1, 32, 32))
