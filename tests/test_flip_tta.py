"""Flip test-time augmentation, a model option: every prediction path averages the image and
its mirror image the same way (PyTorch, the inference layer, the ONNX graph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrzoo.testing import tiny_model


def test_flip_tta_averages_the_mirror_image() -> None:
    model = tiny_model("chest_xray_attention").eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        plain = torch.sigmoid(model(x))
        mirrored = torch.sigmoid(model(torch.flip(x, dims=[-1])))
        assert torch.allclose(model.probabilities(x), plain)
        model.config = model.config.replace(flip_tta=True)
        assert torch.allclose(model.probabilities(x), (plain + mirrored) / 2, atol=1e-6)
        # A mirror-symmetric image gives the same answer with and without the option.
        sym = torch.cat([x[..., :16], torch.flip(x[..., :16], dims=[-1])], dim=-1)
        assert torch.allclose(model.probabilities(sym), torch.sigmoid(model(sym)), atol=1e-6)


def test_every_path_applies_it(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from cxrzoo.export import OnnxModel, export_onnx

    model = tiny_model("chest_xray_attention", flip_tta=True).eval()
    image = np.random.default_rng(1).integers(0, 255, (40, 36), dtype=np.uint8)
    probs = model.predict_proba([image])
    x = model.preprocessing().tensor(torch.from_numpy(model.preprocessing().image(image)[None]))
    with torch.no_grad():
        assert np.allclose(probs, model.probabilities(x).numpy(), atol=1e-6)
        assert not np.allclose(probs, torch.sigmoid(model(x)).numpy(), atol=1e-4)
    export_onnx(model, tmp_path / "m.onnx")
    assert np.allclose(OnnxModel(tmp_path / "m.onnx").predict_proba([image]), probs, atol=1e-4)
    again = type(model).from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert again.config.flip_tta is True
    assert np.allclose(again.predict_proba([image]), probs, atol=1e-6)
