"""Out-of-distribution gate: is this image like the ones the model was trained on?

A model answers every image it gets; this detector says when it should not be trusted to. It
describes each image by two kinds of features, taken from the model's own input and forward
pass (no second network):

- **layout** of the preprocessed input: the image reduced to an 8 x 8 grid of mean grey
  levels, a 4 x 4 grid of edge strength and a 16-bin histogram (each after standardising the
  image by its own mean and spread), and the mean and log-spread themselves. A frontal chest
  radiograph has a typical arrangement (dark lungs left and right of a bright mediastinum, a
  bright lower border); an inverted, rotated or lateral image, a CT slice, a photograph, noise
  or a blank frame does not.
- **what the model sees**: the spatial mean of the activations of the model's last feature
  layer (the one Grad-CAM uses; every member's for an ensemble), reduced by PCA fitted on the
  training images.

Both are standardised and a Mahalanobis distance to the training images is taken with a
Ledoit-Wolf shrunk covariance (scikit-learn), so a few hundred training images suffice. The
score is that distance divided by the square root of the number of features (about 1 for a
typical training image). The threshold is the conformal quantile of the scores of held-out
in-distribution images: for a stated false-rejection rate ``r`` it is the ``ceil((n + 1)(1 -
r))``-th smallest of ``n`` held-out scores, so a new image from the same distribution is
flagged with probability at most ``r``.

The fitted detector is saved beside the weights as ``ood.safetensors``; its record (rate,
threshold, image counts, feature sizes, the file's sha256) is the ``ood`` entry of
``config.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cxrzoo.errors import DataError, UserError

#: File of a model folder holding the detector's arrays.
OOD_FILE = "ood.safetensors"
#: Default share of in-distribution images the gate may flag.
DEFAULT_RATE = 0.05
#: Largest number of PCA components kept of the model's features.
MAX_COMPONENTS = 32
#: Fewest images a detector is fitted on, and fewest held-out images for its threshold.
MIN_FIT, MIN_HELDOUT = 20, 10
_GRID, _EDGE_GRID, _BINS, _HIST_GRID = 8, 4, 16, 64
#: Smallest spread a feature is standardised by.
SCALE_FLOOR = 1e-3
LAYOUT_FEATURES = _GRID * _GRID + _EDGE_GRID * _EDGE_GRID + _BINS + 2


def _grid_mean(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean of ``x`` ``[B, 1, H, W]`` over a ``cells`` x ``cells`` grid: the image cropped to a
    multiple of the grid and average-pooled (fixed kernels, so that ONNX can export it)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])  # constants in a traced graph: one image size per model
    if h < cells or w < cells:
        return F.interpolate(x, size=(cells, cells), mode="nearest")
    kh, kw = h // cells, w // cells
    return F.avg_pool2d(x[..., : kh * cells, : kw * cells], (kh, kw))


def layout_features(x: torch.Tensor) -> torch.Tensor:
    """Layout features ``[B, LAYOUT_FEATURES]`` of a preprocessed batch ``[B, C, S, S]`` (see the
    module docstring); channel 0 is used. Plain tensor arithmetic, so it runs inside an
    exported ONNX graph too."""
    g = x[:, :1].float()
    flat = g.flatten(1)
    mean = flat.mean(1, keepdim=True)
    # Written out (not Tensor.std) so that an exported graph computes exactly the same.
    spread = torch.sqrt(((flat - mean) ** 2).mean(1, keepdim=True))
    z = (g - mean[:, :, None, None]) / (spread[:, :, None, None] + 1e-6)
    coarse = _grid_mean(z, _GRID).flatten(1)
    dy = (z[..., 1:, :-1] - z[..., :-1, :-1]).abs()
    dx = (z[..., :-1, 1:] - z[..., :-1, :-1]).abs()
    edges = _grid_mean(dx + dy, _EDGE_GRID).flatten(1)
    # The histogram of the image reduced to at most 64 x 64 (bounded memory at any size), from
    # comparisons with the bin edges.
    small = _grid_mean(z, _HIST_GRID) if min(int(z.shape[-2]), int(z.shape[-1])) > _HIST_GRID else z
    edges_at = torch.linspace(-3, 3, _BINS - 1, device=z.device, dtype=z.dtype)
    below = (small.flatten(1).unsqueeze(-1) <= edges_at).to(z.dtype).mean(1)  # P(value <= edge)
    zero, one = torch.zeros_like(below[:, :1]), torch.ones_like(below[:, :1])
    hist = torch.cat([below, one], dim=1) - torch.cat([zero, below], dim=1)
    return torch.cat([coarse, edges, hist, mean, torch.log(spread + 1e-3)], dim=1)


def pooled(activation: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` from a layer's output: the spatial mean of a feature map, or the vector itself."""
    a = activation[0] if isinstance(activation, tuple | list) else activation
    a = a.float()
    return a.flatten(2).mean(2) if a.ndim > 2 else a.flatten(1)


@dataclass
class OodDetector:
    """A fitted gate (see the module docstring); :meth:`score` and :meth:`inside` per image."""

    layout_dim: int
    pca_mean: np.ndarray  # [Dm]
    pca_components: np.ndarray  # [k, Dm]
    center: np.ndarray  # [D] mean of the standardised features
    scale: np.ndarray  # [D] their spread on the training images
    precision: np.ndarray  # [D, D] Ledoit-Wolf precision
    threshold: float
    record: dict[str, Any] = field(default_factory=dict)

    # -- scoring ------------------------------------------------------------------------
    def _vectors(self, layout: np.ndarray, model: np.ndarray | None) -> np.ndarray:
        parts = [np.asarray(layout, np.float64)]
        if len(self.pca_components):
            if model is None:
                raise UserError("this detector needs the model's features, and none were given")
            parts.append((np.asarray(model, np.float64) - self.pca_mean) @ self.pca_components.T)
        return (np.concatenate(parts, axis=1) - self.center) / self.scale

    @property
    def whitening(self) -> np.ndarray:
        """``L`` with ``precision = L Lᵀ``: the distance is ``|v L|``, a sum of squares that
        float32 (an exported graph) computes without the cancellations of ``vᵀ P v``."""
        if getattr(self, "_whitening", None) is None:
            self._whitening = np.linalg.cholesky((self.precision + self.precision.T) / 2)
        return self._whitening

    def score(self, layout: np.ndarray, model: np.ndarray | None) -> np.ndarray:
        """Scores ``[B]``: about 1 for a typical training image, larger the further out."""
        v = self._vectors(layout, model) @ self.whitening
        return np.sqrt((v * v).sum(1) / v.shape[1])

    def torch_scorer(self) -> torch.nn.Module:
        """The same score as a module of (layout, model features) tensors, for an exported graph."""
        return _Scorer(self)

    def inside(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    # -- fitting ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        layout: np.ndarray,
        model: np.ndarray | None,
        heldout_layout: np.ndarray,
        heldout_model: np.ndarray | None,
        *,
        rate: float = DEFAULT_RATE,
    ) -> OodDetector:
        """Fit on the training images' features; threshold on held-out in-distribution images'."""
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        if not 0 < rate < 1:
            raise UserError(f"the false-rejection rate must be in (0, 1), got {rate}")
        n = len(layout)
        if n < MIN_FIT:
            raise DataError(f"an out-of-distribution gate needs at least {MIN_FIT} training images, got {n}")
        if len(heldout_layout) < MIN_HELDOUT:
            raise DataError(
                f"an out-of-distribution gate needs at least {MIN_HELDOUT} held-out images for its "
                f"threshold, got {len(heldout_layout)}"
            )
        layout = np.asarray(layout, np.float64)
        if model is not None and model.shape[1]:
            k = max(1, min(MAX_COMPONENTS, n // 4, model.shape[1]))
            pca = PCA(n_components=k, random_state=0).fit(np.asarray(model, np.float64))
            mean, components = pca.mean_, pca.components_
            reduced = pca.transform(model)
        else:
            mean, components = np.zeros(0), np.zeros((0, 0))
            reduced = np.zeros((n, 0))
        raw = np.concatenate([layout, reduced], axis=1)
        center = raw.mean(0)
        scale = raw.std(0)
        # A floor on the spread: a feature (nearly) constant on the training images would
        # otherwise turn rounding differences (float32 in an exported graph) into distances.
        scale = np.maximum(scale, SCALE_FLOOR)
        precision = LedoitWolf().fit((raw - center) / scale).precision_
        detector = cls(layout.shape[1], mean, components, center, scale, precision, math.inf)
        held = detector.score(heldout_layout, heldout_model)
        m = len(held)
        rank = math.ceil((m + 1) * (1 - rate))
        detector.threshold = float(np.sort(held)[rank - 1]) if rank <= m else float(held.max())
        detector.record = {
            "method": "mahalanobis (Ledoit-Wolf) on input layout + PCA of the last feature layer",
            "false_rejection_rate": rate,
            "threshold": detector.threshold,
            "guaranteed": rank <= m,
            "fit_images": n,
            "heldout_images": m,
            "heldout_flagged": float(np.mean(held > detector.threshold)),
            "layout_features": int(layout.shape[1]),
            "model_features": int(components.shape[1]) if len(components) else 0,
            "components": len(components),
        }
        return detector

    # -- saving -------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        arrays = {
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
            "center": self.center,
            "scale": self.scale,
            "precision": self.precision,
            "threshold": np.array([self.threshold]),
            "layout_dim": np.array([self.layout_dim]),
        }
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in arrays.items()}

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], record: dict[str, Any], *, source: str
    ) -> OodDetector:
        need = ("pca_mean", "pca_components", "center", "scale", "precision", "threshold", "layout_dim")
        missing = [k for k in need if k not in tensors]
        if missing:
            raise DataError(f"{source}: not an out-of-distribution detector (missing {', '.join(missing)})")
        a = {k: tensors[k].double().numpy() for k in need}
        d = len(a["center"])
        comps = (
            a["pca_components"].reshape(-1, len(a["pca_mean"])) if len(a["pca_mean"]) else np.zeros((0, 0))
        )
        if (
            a["precision"].shape != (d, d)
            or len(a["scale"]) != d
            or int(a["layout_dim"][0]) + len(comps) != d
        ):
            raise DataError(f"{source}: the detector's arrays do not fit together")
        if not all(np.isfinite(v).all() for v in a.values()):
            raise DataError(f"{source}: the detector holds values that are not finite")
        return cls(
            int(a["layout_dim"][0]),
            a["pca_mean"],
            comps,
            a["center"],
            a["scale"],
            a["precision"],
            float(a["threshold"][0]),
            dict(record),
        )


class _Scorer(torch.nn.Module):
    def __init__(self, detector: OodDetector) -> None:
        super().__init__()
        for name in ("pca_mean", "pca_components", "center", "scale", "whitening"):
            self.register_buffer(name, torch.from_numpy(np.asarray(getattr(detector, name), np.float32)))
        self.use_model = bool(len(detector.pca_components))

    def forward(self, layout: torch.Tensor, model: torch.Tensor | None) -> torch.Tensor:
        parts = [layout.float()]
        if self.use_model and model is not None:
            parts.append((model.float() - self.pca_mean) @ self.pca_components.T)
        v = ((torch.cat(parts, dim=1) - self.center) / self.scale) @ self.whitening
        return torch.sqrt((v * v).sum(1) / v.shape[1])


def fit_detector(
    model: Any,
    fit_images: Sequence[Any],
    heldout_images: Sequence[Any],
    *,
    rate: float = DEFAULT_RATE,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    workers: int | None = None,
) -> OodDetector:
    """Fit ``model``'s gate on ``fit_images`` (its training images: paths or arrays) and choose
    its threshold on ``heldout_images`` (in-distribution images it was not fitted on). Images
    that cannot be read are left out."""
    layout, feats = image_features(model, fit_images, device=device, batch_size=batch_size, workers=workers)
    h_layout, h_feats = image_features(
        model, heldout_images, device=device, batch_size=batch_size, workers=workers
    )
    return OodDetector.fit(layout, feats, h_layout, h_feats, rate=rate)


def image_features(
    model: Any,
    images: Sequence[Any],
    *,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Layout and model features of readable ``images`` (see :func:`cxrzoo.inference.predict_stream`)."""
    from cxrzoo.inference import predict_stream

    layout, feats = [], []
    for pred in predict_stream(
        model, images, batch_size=batch_size, workers=workers, device=device, features=True
    ):
        if pred.details is not None and "features" in pred.details:
            layout.append(pred.details["features"]["layout"])
            feats.append(pred.details["features"]["model"])
    if not layout:
        return np.zeros((0, LAYOUT_FEATURES)), None
    model_feats = None if feats[0] is None else np.stack(feats)
    return np.stack(layout), model_feats


__all__ = [
    "DEFAULT_RATE",
    "LAYOUT_FEATURES",
    "OOD_FILE",
    "OodDetector",
    "fit_detector",
    "image_features",
    "layout_features",
    "pooled",
]
