"""Export a trained model to ONNX and check onnxruntime agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrzoo.errors import CxrzooError
from cxrzoo.model import ZooModel


class ExportError(CxrzooError, RuntimeError):
    pass


def export_onnx(
    model: ZooModel, path: str | Path, *, opset: int = 17, atol: float = 1e-4, check: bool = True
) -> dict[str, Any]:
    """Write ``model`` as ONNX (input ``[batch, C, S, S]`` preprocessed, output logits) and,
    with ``check``, compare onnxruntime's logits to PyTorch's on random inputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    cfg = model.config
    example = torch.randn(2, cfg.in_chans, cfg.image_size, cfg.image_size)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    result: dict[str, Any] = {"path": str(path), "opset": opset, "labels": list(model.labels)}
    if check:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(
            3, cfg.in_chans, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        diff = float(np.abs(expected - got).max())
        result["max_abs_diff"] = diff
        if diff > atol:
            raise ExportError(f"onnxruntime's logits differ from PyTorch's by {diff:.2e} (> {atol:.0e})")
    return result
