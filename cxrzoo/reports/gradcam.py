"""Grad-CAM heat maps and overlays for a model's top findings (pytorch-grad-cam).

Every model names the layers to explain through :meth:`ZooModel.gradcam_layers`; those layers
must run (as modules, so that hooks fire) in the model's ``forward``. A composite model is
explained member by member: each member's map is computed on its own preprocessed input,
resized to the largest member's input size, and the maps are merged by the composite's
:meth:`ZooModel.combine_members` (for the ensemble: averaged with the members' weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

from cxrzoo.errors import DataError
from cxrzoo.model import ZooModel
from cxrzoo.outputs import check_folder, result_folder

METHODS = ("gradcam", "gradcam++")


class GradCamError(RuntimeError):
    """A model whose Grad-CAM layers do not take part in its forward pass: a bug of the model's
    plugin, which the conformance suite (:func:`cxrzoo.testing.check_gradcam`) catches."""


class CamResult(NamedTuple):
    """``image``: the input as the model saw it, ``uint8 [S, S]`` (after the image steps);
    ``maps``: one heat map ``float32 [S, S]`` in ``[0, 1]`` per target finding."""

    image: np.ndarray
    maps: np.ndarray


def _cam_class(method: str) -> Any:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    methods = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
    if method not in methods:
        from cxrzoo.errors import UserError

        raise UserError(f"Unknown Grad-CAM method {method!r}; expected one of {sorted(methods)}")
    return methods[method]


def _layer_cams(
    part: ZooModel,
    x: torch.Tensor,
    targets: Sequence[int],
    method: str,
) -> np.ndarray:
    """``[T, S, S]`` maps of ``part`` for input ``x`` ``[1, C, S, S]``, one per target."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layers = part.gradcam_layers()
    if not layers:
        raise GradCamError(f"{type(part).__name__}.gradcam_layers() names no layer")
    calls = [0] * len(layers)

    def counter(i: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            calls[i] += 1

        return hook

    handles = [layer.register_forward_hook(counter(i)) for i, layer in enumerate(layers)]
    batch = x.expand(len(targets), -1, -1, -1).contiguous()
    try:
        with _cam_class(method)(model=part, target_layers=layers) as cam:
            try:
                maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(int(k)) for k in targets])
            except Exception:
                silent = [type(layers[i]).__name__ for i, n in enumerate(calls) if n == 0]
                if silent:
                    raise GradCamError(
                        f"{type(part).__name__}: the Grad-CAM layer(s) {silent} named by "
                        f"gradcam_layers() never ran in forward(); call them as modules there"
                    ) from None
                raise
    finally:
        for handle in handles:
            handle.remove()
    silent = [type(layers[i]).__name__ for i, n in enumerate(calls) if n == 0]
    if silent:
        raise GradCamError(
            f"{type(part).__name__}: the Grad-CAM layer(s) {silent} named by gradcam_layers() "
            f"never ran in forward(); call them as modules there"
        )
    return np.asarray(maps, dtype=np.float32)


def gradcam_maps(
    model: ZooModel,
    image: np.ndarray,
    targets: Sequence[int],
    *,
    method: str = "gradcam",
    name: str | None = None,
    device: str | torch.device | None = None,
) -> CamResult:
    """Heat maps of ``targets`` (label indices) for one decoded grey image ``uint8 [H, W]``.

    The maps are computed on the model's own preprocessed input (``name`` is the file name,
    for steps that need it); for a composite, on each member's input and merged by
    ``combine_members``. Raises :class:`GradCamError` when a layer named by
    ``gradcam_layers()`` does not run in the forward pass.
    """
    from cxrzoo.data.io import to_grey_uint8

    image = to_grey_uint8(image)
    dev = torch.device(device) if device is not None else model.device
    members = tuple(model.member_models())
    parts: tuple[ZooModel, ...] = members or (model,)
    was_training = [p.training for p in parts]
    model.to(dev)
    seen_images, part_maps = [], []
    try:
        for part in parts:
            prep = part.preprocessing()
            seen = prep.image(image, name=name)
            x = prep.tensor(torch.from_numpy(seen)[None].to(dev))
            part_maps.append(_layer_cams(part.eval(), x, targets, method))
            seen_images.append(seen)
    finally:
        for part, flag in zip(parts, was_training, strict=True):
            part.train(flag)
    if not members:
        return CamResult(seen_images[0], part_maps[0])
    size = max(s.shape[0] for s in seen_images)
    shown = next(s for s in seen_images if s.shape[0] == size)
    flat = []
    for maps in part_maps:
        resized = [cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in maps]
        flat.append(torch.from_numpy(np.stack(resized).reshape(len(targets), -1)).to(dev))
    with torch.no_grad():
        merged = model.combine_members(flat).float().cpu().numpy()
    return CamResult(shown, np.clip(merged.reshape(len(targets), size, size), 0.0, 1.0))


def overlay(image: np.ndarray, heat: np.ndarray, *, min_size: int = 256) -> np.ndarray:
    """The heat map drawn over the grey image, ``uint8 RGB``, scaled up to at least ``min_size``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat((image.astype(np.float32) / 255.0)[:, :, None], 3, axis=2)
    drawn = show_cam_on_image(rgb, heat, use_rgb=True)
    scale = max(1, min_size // drawn.shape[0])
    return cv2.resize(drawn, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def explain_image(
    model: ZooModel,
    image_path: str | Path,
    out_dir: str | Path,
    *,
    top: int = 3,
    method: str = "gradcam",
    stem: str | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
) -> list[dict[str, object]]:
    """Write one overlay PNG per top finding of ``image_path``; returns what was written.

    The heat map is computed on the model's own preprocessed input and drawn over the image
    as the model saw it (after the image preprocessing steps, before normalisation). Files are
    named ``{stem}_{finding}.png`` (``stem`` defaults to the image's); an existing file of that
    name is replaced only when an earlier explanation wrote it, or with ``overwrite``
    (:mod:`cxrzoo.outputs`). The image's overlays are renamed into ``out_dir`` together.
    """
    from cxrzoo.data.io import read_image
    from cxrzoo.inference import predict_proba

    _cam_class(method)
    image_path = Path(image_path)
    image = read_image(image_path)
    probs = predict_proba(model, [image], device=device, workers=0)[0]
    order = [int(k) for k in np.argsort(-probs)[:top]]
    result = gradcam_maps(model, image, order, method=method, name=image_path.name, device=device)
    out_dir = Path(out_dir)
    names = {k: overlay_name(stem or image_path.stem, model.labels[k]) for k in order}
    check_folder(out_dir, option="--out", kind=OVERLAY_KIND, names=names.values(), overwrite=overwrite)
    written = []
    with result_folder(out_dir, kind=OVERLAY_KIND) as tmp:
        for k, heat in zip(order, result.maps, strict=True):
            drawn = overlay(result.image, heat)
            if not cv2.imwrite(str(tmp / names[k]), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
                raise DataError(f"{out_dir / names[k]}: could not write the overlay image")
            positive = bool(probs[k] >= model.thresholds[k])
            written.append(
                {
                    "finding": model.labels[k],
                    "probability": float(probs[k]),
                    "positive": positive,
                    "path": str(out_dir / names[k]),
                }
            )
    return written


#: What :mod:`cxrzoo.outputs` records an overlay as in the folder's list of written files.
OVERLAY_KIND = "Grad-CAM overlay"


def overlay_name(stem: str, finding: str) -> str:
    """The file name of the overlay of ``finding`` for an image named ``stem``."""
    return f"{stem}_{finding}.png"


__all__ = [
    "METHODS",
    "OVERLAY_KIND",
    "CamResult",
    "GradCamError",
    "explain_image",
    "gradcam_maps",
    "overlay",
    "overlay_name",
]
