"""Conformance suite that every cxrzoo model plugin can run.

As plain functions::

    from cxrzoo.testing import check_model
    check_model("my_model")            # raises AssertionError naming the failed check

As pytest tests, by subclassing::

    from cxrzoo.testing import ModelConformance

    class TestMyModel(ModelConformance):
        model_name = "my_model"

Or as a pytest plugin (``pytest -p cxrzoo.testing``), which parametrises any test asking for
the ``zoo_model_name`` fixture over every registered model.

Each check builds the model in its tiny configuration (``cls.tiny_config()``) so the suite
runs on a CPU in seconds.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrzoo.model import ZooModel


def tiny_model(name: str, seed: int = 0, **overrides: Any) -> ZooModel:
    """The registered model ``name`` in its tiny configuration, seeded."""
    import cxrzoo
    from cxrzoo.plugins import models

    torch.manual_seed(seed)
    config = models.get(name).tiny_config()
    if overrides:
        config = config.replace(**overrides)
    return cxrzoo.create_model(name, config)


def _batch(model: ZooModel, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    return torch.randn(n, cfg.in_chans, cfg.image_size, cfg.image_size, generator=g)


def check_output(model: ZooModel) -> None:
    """Logits are ``[batch, labels]``, finite, and labels follow the config's order; every
    label is a finding of the vocabulary, once (in any order: a model of CheXpert's 14 findings
    keeps CheXpert's order)."""
    from cxrzoo.labels import canonical

    model.eval()
    with torch.no_grad():
        out = model(_batch(model, 3))
    n = len(model.labels)
    assert out.shape == (3, n), f"forward returned {tuple(out.shape)}, expected (3, {n})"
    assert torch.isfinite(out).all(), "forward returned non-finite logits"
    assert tuple(model.labels) == tuple(model.config.labels), "model.labels differs from config.labels"
    assert len(set(model.labels)) == n, f"a label appears twice: {model.labels}"
    unknown = [label for label in model.labels if canonical(label) is None]
    assert not unknown, f"labels the vocabulary does not know (cxrzoo.labels): {unknown}"
    probs = model.predict([np.random.default_rng(0).integers(0, 255, (80, 72), dtype=np.uint8)])
    assert list(probs[0]) == list(model.labels), "predict() keys are not the labels in order"
    assert all(0.0 <= p <= 1.0 for p in probs[0].values()), "predict() gave values outside [0, 1]"


def check_config_roundtrip(model: ZooModel) -> None:
    """The config survives JSON and rebuilds an identical config."""
    doc = json.loads(json.dumps(model.config.to_dict()))
    again = type(model.config).from_dict(doc)
    assert again == model.config, f"config changed through JSON: {model.config} != {again}"


def check_save_load(model: ZooModel) -> None:
    """Save then load gives identical outputs; only the expected, unpickled files are written."""
    from cxrzoo.store import load_folder

    model.eval()
    x = _batch(model, 2, seed=1)
    with torch.no_grad():
        before = model(x)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        model.save_pretrained(folder)
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["README.md", "config.json", "model.safetensors"], f"unexpected files {files}"
        for f in folder.iterdir():
            assert b"\x80\x04\x95" not in f.read_bytes()[:64], f"{f.name} looks like a pickle"
        loaded = load_folder(folder)
    assert type(loaded) is type(model), f"loaded a {type(loaded).__name__}"
    assert loaded.config == model.config, "config changed through save/load"
    with torch.no_grad():
        after = loaded(x)
    assert torch.equal(before, after), (
        f"outputs differ after load (max {float((before - after).abs().max())})"
    )
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), f"tensor {k} differs after load"


def check_backward(model: ZooModel) -> None:
    """A training step reaches every parameter with a finite gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = _batch(model, 4, seed=2)
    targets = (torch.rand(4, len(model.labels), generator=torch.Generator().manual_seed(3)) < 0.5).float()
    out = model(x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out, targets)
    aux = model.auxiliary_loss(targets)
    if aux is not None:
        loss = loss + aux
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:8]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:8]}"
    model.zero_grad(set_to_none=True)
    model.eval()


def check_feature_maps(model: ZooModel) -> None:
    """Explanation hooks exist: Grad-CAM layers are submodules; feature maps are spatial."""
    layers = model.gradcam_layers()
    assert layers, "gradcam_layers() returned nothing"
    own = {id(m) for m in model.modules()}
    assert all(id(layer) in own for layer in layers), "gradcam_layers() are not submodules of the model"
    with torch.no_grad():
        maps = model.eval().feature_maps(_batch(model, 1))
    for name, m in maps.items():
        assert m.ndim == 4 and m.shape[0] == 1, f"feature map {name!r} has shape {tuple(m.shape)}"


def check_gradcam(model: ZooModel) -> None:
    """A real Grad-CAM pass: the layers of ``gradcam_layers()`` run in forward (their hooks
    fire), and the maps of the findings are finite, in [0, 1] and as large as the model's
    input (a composite's: its largest member's). Where the explained layer is larger than 1 x 1
    (:data:`GRADCAM_IMAGE_SIZE` gives that to the tiny models) some finding's map must not be
    all zero (an untrained model's map can be zero for one finding, not for every one)."""
    from cxrzoo.reports.gradcam import gradcam_maps

    image = np.random.default_rng(0).integers(0, 255, (80, 72), dtype=np.uint8)
    image[20:60, 15:35] = 230  # something to look at
    targets = list(range(min(16, len(model.labels))))
    was_training = model.training
    members = model.member_models()
    layers = [layer for part in (members or [model]) for layer in part.gradcam_layers()]
    shapes: list[tuple[int, ...]] = []
    handles = [
        layer.register_forward_hook(lambda _m, _a, out: shapes.append(tuple(out.shape))) for layer in layers
    ]
    try:
        result = gradcam_maps(model, image, targets)
    finally:
        for handle in handles:
            handle.remove()
    assert model.training == was_training, "gradcam_maps() left the model in another mode"
    size = max(m.config.image_size for m in members) if members else model.config.image_size
    assert result.image.shape == (size, size), f"Grad-CAM image is {result.image.shape}, expected {size}"
    assert result.maps.shape == (len(targets), size, size), (
        f"Grad-CAM maps have shape {result.maps.shape}, expected {(len(targets), size, size)}"
    )
    assert np.isfinite(result.maps).all(), "Grad-CAM maps are not finite"
    assert result.maps.min() >= 0.0 and result.maps.max() <= 1.0, "Grad-CAM maps are outside [0, 1]"
    if any(len(s) == 4 and s[2] * s[3] > 1 for s in shapes):
        assert result.maps.max() > 0.0, "every Grad-CAM map is empty (all zero)"


#: Input size of the tiny models in :func:`check_gradcam`: their last stage is then 2 x 2, not
#: 1 x 1, so a heat map has something to show.
GRADCAM_IMAGE_SIZE = 64

CHECKS: dict[str, Callable[[ZooModel], None]] = {
    "output": check_output,
    "config_roundtrip": check_config_roundtrip,
    "save_load": check_save_load,
    "backward": check_backward,
    "feature_maps": check_feature_maps,
    "gradcam": check_gradcam,
}


#: Config overrides of the tiny model for some checks.
CHECK_OVERRIDES: dict[str, dict[str, Any]] = {"gradcam": {"image_size": GRADCAM_IMAGE_SIZE}}


def check_model(name: str, checks: list[str] | None = None) -> None:
    """Run the conformance checks on registered model ``name`` (all by default)."""
    for check in checks or list(CHECKS):
        CHECKS[check](tiny_model(name, **CHECK_OVERRIDES.get(check, {})))


class ModelConformance:
    """Subclass with ``model_name = "..."`` to get one pytest test per check."""

    model_name: str = ""

    def _model(self, **overrides: Any) -> ZooModel:
        assert self.model_name, "set model_name on the ModelConformance subclass"
        return tiny_model(self.model_name, **overrides)

    def test_output(self) -> None:
        check_output(self._model())

    def test_config_roundtrip(self) -> None:
        check_config_roundtrip(self._model())

    def test_save_load(self) -> None:
        check_save_load(self._model())

    def test_backward(self) -> None:
        check_backward(self._model())

    def test_feature_maps(self) -> None:
        check_feature_maps(self._model())

    def test_gradcam(self) -> None:
        check_gradcam(self._model(**CHECK_OVERRIDES["gradcam"]))


# -- pytest plugin --------------------------------------------------------------------------
def pytest_generate_tests(metafunc: Any) -> None:
    """Parametrise ``zoo_model_name`` over every registered model."""
    if "zoo_model_name" in metafunc.fixturenames:
        import cxrzoo

        metafunc.parametrize("zoo_model_name", cxrzoo.list_models())


# -- inputs that are not chest radiographs --------------------------------------------------
def _ct_slice(rng: np.random.Generator, size: int) -> np.ndarray:
    """An axial CT-like slice: an elliptic body, two dark lungs, a bright spine, noise."""
    import cv2

    img = np.zeros((size, size), np.uint8)
    c, s = size // 2, size / 64
    cv2.ellipse(img, (c, c), (int(26 * s), int(20 * s)), 0, 0, 360, int(rng.integers(90, 130)), -1)
    for dx in (-12, 12):
        cv2.ellipse(img, (c + int(dx * s), c - int(2 * s)), (int(7 * s), int(9 * s)), 0, 0, 360, 30, -1)
    cv2.circle(img, (c, c + int(13 * s)), int(4 * s), 250, -1)
    noisy = img.astype(np.int16) + rng.integers(0, 20, img.shape)
    return cv2.GaussianBlur(np.clip(noisy, 0, 255).astype(np.uint8), (3, 3), 0)


def odd_inputs(radiographs: list[np.ndarray], size: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Inputs an out-of-distribution gate must flag, by kind: radiographs inverted, rotated and
    upside down (from ``radiographs``, grey ``uint8``), blank frames, noise, photo-like smooth
    images and CT-like axial slices, all ``size`` x ``size``."""
    import cv2

    rng = np.random.default_rng(seed)
    some = radiographs[:30]
    return {
        "inverted": [255 - r for r in some],
        "rotated": [np.ascontiguousarray(np.rot90(r)) for r in some],
        "upside_down": [np.ascontiguousarray(r[::-1]) for r in some],
        "blank": [np.full((size, size), v, np.uint8) for v in rng.integers(0, 256, 15)],
        "noise": [rng.integers(0, 256, (size, size)).astype(np.uint8) for _ in range(15)],
        "photo_like": [
            cv2.resize(
                rng.integers(0, 256, (6, 6)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
            )
            for _ in range(15)
        ],
        "ct_slice": [_ct_slice(rng, size) for _ in range(15)],
    }
