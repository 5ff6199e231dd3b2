"""Export a trained model to ONNX, with what a deployment needs, and run it with onnxruntime.

The ONNX file is self-contained: its ``metadata_props`` carry the label names in output order,
the calibrated thresholds, the preprocessing of each input, the architecture and the cxrzoo
version (keys ``cxrzoo.*``, values JSON). :class:`OnnxModel` reads a model back from the file
alone and predicts like the PyTorch model (``cxrzoo predict model.onnx PATH --backend
onnxruntime``): the image steps (decoding, crop, resize, CLAHE …) run in numpy/OpenCV as in
training, and the tensor steps (``scale``, ``standardize``, ``normalize`` …) run with PyTorch's
CPU operators, rebuilt from their names, so that they are the very same code as in training
and a plugin's own tensor step works too.

The graph's input is the preprocessed float batch ``image`` ``[batch, C, S, S]`` and its output
``logits`` ``[batch, labels]``. A composite model (an ensemble) has one input per member,
``image_0`` … ``image_{n-1}``, each preprocessed as that member was trained, and outputs the
logits of the merged probabilities.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrzoo.errors import CxrzooError, DataError, UserError
from cxrzoo.model import ZooModel
from cxrzoo.optional import require
from cxrzoo.outputs import check_file, replacing

#: Version of the ``cxrzoo.*`` metadata layout.
METADATA_FORMAT = "1"
PREFIX = "cxrzoo."


class ExportError(CxrzooError, RuntimeError):
    pass


class _CompositeGraph(nn.Module):
    """A composite model with one input per member, as the inference layer runs it."""

    def __init__(self, model: ZooModel) -> None:
        super().__init__()
        self.model = model
        self.parts = nn.ModuleList(model.member_models())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        probs = [m.probabilities(x) for m, x in zip(self.parts, inputs, strict=True)]
        return torch.logit(self.model.combine_members(probs), eps=1e-6)


class _FlipGraph(nn.Module):
    """A model with flip test-time augmentation, as one graph (logits of the averaged probability)."""

    def __init__(self, model: ZooModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.model.probabilities(x), eps=1e-6)


class _GatedGraph(nn.Module):
    """``graph`` with a second output, ``ood_score``: the model's out-of-distribution gate
    computed in the graph from the first input's layout and each part's pooled features."""

    def __init__(self, graph: nn.Module, model: ZooModel) -> None:
        super().__init__()
        from cxrzoo.inference import _feature_layer

        self.graph = graph
        self.scorer = model.ood_detector.torch_scorer()
        self.layers = [_feature_layer(p) for p in _parts(model)]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from cxrzoo.ood import layout_features, pooled

        captured: list[list[torch.Tensor]] = [[] for _ in self.layers]
        handles = [
            layer.register_forward_hook(lambda _m, _i, out, into=into: into.append(pooled(out)))
            for layer, into in zip(self.layers, captured, strict=True)
            if layer is not None
        ]
        try:
            logits = self.graph(*inputs)
        finally:
            for h in handles:
                h.remove()
        feats = [c[0] for c in captured if c]  # the unmirrored pass of each part
        score = self.scorer(layout_features(inputs[0]), torch.cat(feats, dim=1) if feats else None)
        return logits, score


def _parts(model: ZooModel) -> tuple[ZooModel, ...]:
    return tuple(model.member_models()) or (model,)


def input_specs(model: ZooModel) -> list[dict[str, Any]]:
    """One entry per graph input: its name, preprocessing, image size and channels."""
    parts = _parts(model)
    names = (
        ["image"]
        if len(parts) == 1 and not model.member_models()
        else [f"image_{i}" for i in range(len(parts))]
    )
    return [
        {
            "name": name,
            "preprocessing": list(p.config.preprocessing),
            "image_size": p.config.image_size,
            "in_chans": p.config.in_chans,
        }
        for name, p in zip(names, parts, strict=True)
    ]


def onnx_metadata(model: ZooModel) -> dict[str, str]:
    """The ``metadata_props`` of an exported model: ``cxrzoo.*`` keys, JSON values."""
    from cxrzoo import __version__

    cfg = model.config
    facts: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "version": __version__,
        "architecture": model.architecture or type(model).__name__,
        "name": model.metadata.get("name") or model.architecture or type(model).__name__,
        "labels": list(model.labels),
        "thresholds": [float(t) for t in model.thresholds],
        "calibrated": cfg.thresholds is not None,
        "preprocessing": list(cfg.preprocessing),
        "image_size": cfg.image_size,
        "in_chans": cfg.in_chans,
        "inputs": input_specs(model),
        "output": "logits",
    }
    gate = model.ood_detector
    if gate is not None:
        facts["ood"] = {"output": "ood_score", "threshold": gate.threshold, **gate.record}
    return {PREFIX + key: json.dumps(value) for key, value in facts.items()}


def is_cxrzoo_export(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ONNX file written by :func:`export_onnx` (its ``cxrzoo.*`` metadata)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(p.key == PREFIX + "labels" for p in proto.metadata_props)


def check_export_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check ``--out`` of an export before any work (see :func:`export_onnx`)."""
    return check_file(
        path, option="--out", kind="cxrzoo ONNX export", is_own=is_cxrzoo_export, overwrite=overwrite
    )


def export_onnx(
    model: ZooModel,
    path: str | Path,
    *,
    opset: int = 17,
    atol: float = 1e-4,
    check: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``model`` as ONNX with its metadata (see the module docstring) and, with ``check``,
    compare onnxruntime's logits to PyTorch's on random inputs.

    An existing ``path`` is replaced only when it is an earlier cxrzoo export, or with
    ``overwrite`` (:mod:`cxrzoo.outputs`); the file is written beside it and renamed.
    """
    onnx = require("onnx", purpose="ONNX export")
    if check:
        require("onnxruntime", purpose="Checking the ONNX export")
    path = check_export_path(path, overwrite=overwrite)
    model = model.eval().cpu()
    specs = input_specs(model)
    if model.member_models():
        graph: nn.Module = _CompositeGraph(model)
    elif model.config.flip_tta:
        graph = _FlipGraph(model)
    else:
        graph = model
    outputs = ["logits"]
    if model.ood_detector is not None:
        graph = _GatedGraph(graph, model)
        outputs.append("ood_score")
    graph = graph.eval()

    def examples(n: int, seed: int | None = None) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return tuple(
            torch.randn(n, s["in_chans"], s["image_size"], s["image_size"], generator=g) for s in specs
        )

    names = [s["name"] for s in specs]
    with replacing(path) as tmp, warnings.catch_warnings():
        # The gate's shape-dependent pooling is traced as constants on purpose (one image size).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            examples(2),
            str(tmp),
            input_names=names,
            output_names=outputs,
            dynamic_axes={**{n: {0: "batch"} for n in names}, **{o: {0: "batch"} for o in outputs}},
            opset_version=opset,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, onnx_metadata(model))
        onnx.save(proto, str(tmp))
    result: dict[str, Any] = {"path": str(path), "opset": opset, "labels": list(model.labels)}
    if check:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        xs = examples(3, seed=0)
        with torch.no_grad():
            expected = graph(*xs)
        got = session.run(outputs, {n: x.numpy() for n, x in zip(names, xs, strict=True)})
        if isinstance(expected, tuple):  # the gate's score too, compared relative to its size
            score, got_score = expected[1].numpy(), got[1]
            result["ood_max_rel_diff"] = float(
                np.abs(score - got_score).max() / max(np.abs(score).max(), 1e-6)
            )
            expected = expected[0]
        expected, got = expected.numpy(), got[0]
        diff = float(np.abs(expected - got).max())
        result["max_abs_diff"] = diff
        if diff > atol:
            raise ExportError(f"onnxruntime's logits differ from PyTorch's by {diff:.2e} (> {atol:.0e})")
    return result


class OnnxModel:
    """An exported model read from its ONNX file alone, predicted with onnxruntime.

    Has what the inference layer and ``cxrzoo predict`` use of a model: ``labels``,
    ``thresholds``, ``positives()``, ``metadata`` and :meth:`inference_runner`. ``device``
    ``cpu`` (default) or ``cuda[:N]`` where onnxruntime has its CUDA provider.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None) -> None:
        ort = require("onnxruntime", purpose="The onnxruntime backend")
        from cxrzoo.threads import configure_threads

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such ONNX file")
        settings = configure_threads()
        options = ort.SessionOptions()
        if settings.torch_threads:
            options.intra_op_num_threads = settings.torch_threads
        providers = ["CPUExecutionProvider"]
        dev = torch.device(device) if device else torch.device("cpu")
        if dev.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError(f"--device {device}: this onnxruntime has no CUDA provider (onnxruntime-gpu)")
            providers = [("CUDAExecutionProvider", {"device_id": dev.index or 0}), "CPUExecutionProvider"]
        elif dev.type != "cpu":
            raise UserError(f"--device {device}: the onnxruntime backend runs on cpu or cuda")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise DataError(f"{self.path}: not a model onnxruntime can load ({exc})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if PREFIX + "labels" not in props:
            raise DataError(
                f"{self.path}: no cxrzoo metadata (labels, thresholds, preprocessing); export it "
                f"with 'cxrzoo export'"
            )
        try:
            self.metadata: dict[str, Any] = {
                k[len(PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)
            }
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.path}: unreadable cxrzoo metadata ({exc})") from None
        self.labels: tuple[str, ...] = tuple(self.metadata["labels"])
        #: The gate's threshold when the graph computes ``ood_score`` (None without a gate).
        self.ood_threshold: float | None = (self.metadata.get("ood") or {}).get("threshold")
        self.inputs: list[dict[str, Any]] = list(self.metadata["inputs"])
        self.architecture = self.metadata.get("architecture", "")

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.metadata["thresholds"], dtype=float)

    @property
    def calibrated(self) -> bool:
        return bool(self.metadata.get("calibrated"))

    def positives(self, probs: np.ndarray) -> list[list[str]]:
        calls = np.asarray(probs) >= self.thresholds
        return [[lab for lab, c in zip(self.labels, row, strict=True) if c] for row in calls]

    def inference_runner(self, device: Any = None) -> _OnnxRunner:
        return _OnnxRunner(self)

    def predict_proba(self, images: Any, **kwargs: Any) -> np.ndarray:
        """Probabilities ``[N, labels]`` for image files or arrays, as ``ZooModel.predict_proba``."""
        from cxrzoo.inference import predict_proba

        return predict_proba(self, images, **kwargs)


class _OnnxRunner:
    def __init__(self, model: OnnxModel) -> None:
        from cxrzoo.transforms import Preprocessing

        self.model = model
        self.preprocessings = [
            Preprocessing(s["preprocessing"], image_size=int(s["image_size"]), in_chans=int(s["in_chans"]))
            for s in model.inputs
        ]
        self.names = [s["name"] for s in model.inputs]

    @contextmanager
    def active(self) -> Iterator[_OnnxRunner]:
        with torch.no_grad():
            yield self

    def _feed(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {
            name: prep.tensor(torch.from_numpy(np.ascontiguousarray(batch))).numpy()
            for name, prep, batch in zip(self.names, self.preprocessings, inputs, strict=True)
        }

    @staticmethod
    def _sigmoid(logits: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def __call__(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return self._sigmoid(self.model.session.run(["logits"], self._feed(inputs))[0])

    def run(
        self,
        inputs: Sequence[np.ndarray],
        *,
        ood: bool = False,
        uncertainty: bool = False,
        features: bool = False,
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Probabilities and, with ``ood`` and a graph that has the gate, ``ood_score`` and
        ``in_distribution`` per image (as :meth:`cxrzoo.inference.TorchRunner.run`)."""
        if uncertainty or features:
            raise UserError("uncertainty and gate features need the PyTorch backend (--backend torch)")
        threshold = self.model.ood_threshold
        if not ood or threshold is None:
            probs = self(inputs)
            return probs, [{} for _ in range(len(probs))]
        logits, scores = self.model.session.run(["logits", "ood_score"], self._feed(inputs))
        details = [{"ood_score": float(s), "in_distribution": bool(s <= threshold)} for s in scores]
        return self._sigmoid(logits), details


__all__ = ["ExportError", "OnnxModel", "export_onnx", "input_specs", "onnx_metadata"]
