"""Grad-CAM overlays for a model's top findings (pytorch-grad-cam)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from cxrzoo.model import ZooModel


def explain_image(
    model: ZooModel,
    image_path: str | Path,
    out_dir: str | Path,
    *,
    top: int = 3,
    method: str = "gradcam",
) -> list[dict[str, object]]:
    """Write one overlay PNG per top finding of ``image_path``; returns what was written.

    The heat map is computed on the model's own preprocessed input and drawn over the image
    as the model saw it (after the image preprocessing steps, before normalisation).
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cxrzoo.data.io import read_image

    methods = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
    if method not in methods:
        raise ValueError(f"Unknown method {method!r}; expected one of {sorted(methods)}")
    image_path = Path(image_path)
    prep = model.preprocessing()
    seen = prep.image(read_image(image_path), name=image_path.name)
    x = prep.tensor(torch.from_numpy(seen)[None])
    model = model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(x.to(model.device)).float())[0].cpu().numpy()
    order = np.argsort(-probs)[:top]
    rgb = np.repeat((seen.astype(np.float32) / 255.0)[:, :, None], 3, axis=2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # Grad-CAM needs gradients even though we are explaining, not training.
    with methods[method](model=model, target_layers=model.gradcam_layers()) as cam:
        for k in order:
            heat = cam(input_tensor=x.to(model.device), targets=[ClassifierOutputTarget(int(k))])[0]
            overlay = show_cam_on_image(rgb, heat, use_rgb=True)
            label = model.labels[k]
            path = out_dir / f"{image_path.stem}_{label}.png"
            scale = max(1, 256 // overlay.shape[0])
            big = cv2.resize(overlay, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            positive = bool(probs[k] >= model.thresholds[k])
            written.append(
                {"finding": label, "probability": float(probs[k]), "positive": positive, "path": str(path)}
            )
    return written
