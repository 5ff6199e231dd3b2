import pytest
import torch

import cxrzoo
from cxrzoo.testing import ModelConformance, tiny_model


class TestConformance(ModelConformance):
    model_name = "advanced_resnet"


def test_default_parameter_count_matches_the_report():
    # The one full-size model in the test suite: the founding report counts 28,085,194.
    model = cxrzoo.create_model("advanced_resnet")
    assert model.num_parameters() == 28_085_194


@pytest.mark.parametrize(("attention", "fpn"), [(False, True), (True, False), (False, False)])
def test_ablations_are_one_option_away(attention, fpn):
    full = tiny_model("advanced_resnet")
    ablated = tiny_model("advanced_resnet", attention=attention, fpn=fpn)
    names = {n for n, _ in ablated.named_modules()}
    assert any(".channel" in n for n in names) == attention
    assert (ablated.fpn is not None) == fpn
    assert ablated.num_parameters() < full.num_parameters()
    x = torch.randn(2, 1, 32, 32)
    assert ablated.eval()(x).shape == (2, 14)


def test_feature_maps_include_attention_and_pyramid():
    model = tiny_model("advanced_resnet").eval()
    with torch.no_grad():
        maps = model.feature_maps(torch.randn(1, 1, 32, 32))
    assert {"stage3.spatial", "stage3.channel", "fpn0", "fpn3"} <= set(maps)
    spatial = maps["stage3.spatial"]
    assert spatial.shape[1] == 1 and float(spatial.min()) >= 0 and float(spatial.max()) <= 1


def test_three_channel_and_other_backbones():
    model = cxrzoo.create_model(
        "advanced_resnet", backbone="resnet18", in_chans=3, fpn_channels=32, hidden=16
    )
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 14)
    with pytest.raises(ValueError, match="resnet50"):
        cxrzoo.create_model("advanced_resnet", backbone="resnet5O")


def test_pooled_pyramid_equals_pooling_the_full_pyramid():
    # forward() skips the FPN's 3x3 convolutions by pooling first; it must not change the result.
    model = tiny_model("advanced_resnet")
    x = torch.randn(3, 1, 45, 37)  # odd sizes exercise the zero-padded borders
    feats = model._stages(x)
    full = torch.cat([f.mean((2, 3)) for f in model.fpn(feats)], dim=1)
    fast = torch.cat(model.fpn.pooled(feats), dim=1)
    assert torch.allclose(full, fast, atol=1e-6)
    grad_full = torch.autograd.grad(full.sum(), model.fpn.smooth[0].weight)[0]
    grad_fast = torch.autograd.grad(fast.sum(), model.fpn.smooth[0].weight)[0]
    assert torch.allclose(grad_full, grad_fast, atol=1e-5)
