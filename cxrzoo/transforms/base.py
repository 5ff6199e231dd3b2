"""The transform plugin interface and the preprocessing pipeline built from names.

A model's config lists its preprocessing as transform specs, each a registered name with
optional keyword arguments: ``"clahe"`` or ``"clahe(clip_limit=3.0, tile=8)"``. Steps come in
two stages:

- ``image`` steps work on one decoded 8-bit grey image (``numpy`` ``uint8`` ``[H, W]``) and
  are deterministic, so their output can be cached on disk once for every epoch;
- ``tensor`` steps work on a float batch ``[B, C, H, W]`` on any device.

Training inserts batch augmentation after the ``scale`` step; inference runs the same steps
without it, so a model always sees at inference what it saw in training.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from cxrzoo.errors import UserError


class TransformError(UserError, ValueError):
    """A preprocessing spec that cannot be built."""


class Transform:
    """Base class of every transform plugin.

    ``stage`` is ``"image"``, ``"tensor"`` or ``"augment"``. Constructors take keyword
    arguments only; ``image_size`` is always passed and may be ignored.
    """

    stage: ClassVar[str] = "image"

    def __init__(self, *, image_size: int, **params: Any) -> None:
        self.image_size = image_size
        if params:
            raise TransformError(f"{type(self).__name__} takes no option(s) {sorted(params)}")

    def __call__(self, x: Any, **context: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Spec:
    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.kwargs) + ")"


def parse_spec(text: str) -> Spec:
    """``"clahe(clip_limit=3.0)"`` -> ``Spec("clahe", (("clip_limit", 3.0),))``."""
    text = text.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise TransformError(
            f"Cannot parse preprocessing step {text!r}: expected NAME or NAME(key=value, ...)"
        ) from None
    if isinstance(node, ast.Name):
        return Spec(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        try:
            kwargs = tuple((kw.arg, ast.literal_eval(kw.value)) for kw in node.keywords)
        except ValueError:
            raise TransformError(f"Preprocessing step {text!r}: options must be literals") from None
        if any(k is None for k, _ in kwargs):
            raise TransformError(f"Preprocessing step {text!r}: options must be key=value")
        return Spec(node.func.id, kwargs)  # type: ignore[arg-type]
    raise TransformError(f"Cannot parse preprocessing step {text!r}: expected NAME or NAME(key=value, ...)")


def build_transform(spec: str | Spec, *, image_size: int) -> Transform:
    from cxrzoo.plugins import transforms

    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    cls = transforms.get(parsed.name)
    try:
        return cls(image_size=image_size, **dict(parsed.kwargs))
    except TypeError as exc:
        raise TransformError(f"Preprocessing step {parsed}: {exc}") from None


class Preprocessing:
    """The steps of a model's config, split into cacheable image steps and tensor steps."""

    def __init__(
        self,
        specs: Sequence[str],
        *,
        image_size: int,
        in_chans: int = 1,
        augment: str | None = None,
    ) -> None:
        self.specs = tuple(str(parse_spec(s)) for s in specs)
        self.image_size = image_size
        self.in_chans = in_chans
        steps = [(s, build_transform(s, image_size=image_size)) for s in self.specs]
        self.image_steps: list[Transform] = []
        self.tensor_steps: list[Transform] = []
        for spec, step in steps:
            if step.stage == "image":
                if self.tensor_steps:
                    raise TransformError(
                        f"Preprocessing step {spec!r} works on images but comes after a "
                        f"tensor step in {list(self.specs)}; put every image step first"
                    )
                self.image_steps.append(step)
            elif step.stage == "tensor":
                self.tensor_steps.append(step)
            else:
                raise TransformError(
                    f"{spec!r} is an augmentation preset: pass it as the training recipe's "
                    f"augment option, not as a preprocessing step"
                )
        self.image_specs = tuple(s for s, t in steps if t.stage == "image")
        self.tensor_specs = tuple(s for s, t in steps if t.stage == "tensor")
        if not any(parse_spec(s).name == "resize" for s in self.image_specs):
            raise TransformError(
                f"Preprocessing {list(self.specs)} has no 'resize' step; every model input "
                f"must be brought to image_size={image_size}"
            )
        if not self.tensor_specs or parse_spec(self.tensor_specs[0]).name != "scale":
            raise TransformError(f"Preprocessing {list(self.specs)} must start its tensor steps with 'scale'")
        self.augment = build_transform(augment, image_size=image_size) if augment else None
        if self.augment is not None and self.augment.stage != "augment":
            raise TransformError(f"{augment!r} is not an augmentation preset")

    @classmethod
    def from_config(cls, config: Any, *, augment: str | None = None) -> Preprocessing:
        return cls(
            config.preprocessing,
            image_size=config.image_size,
            in_chans=config.in_chans,
            augment=augment,
        )

    @property
    def cache_key(self) -> str:
        """Identifies the cached output of the image steps."""
        blob = json.dumps({"image_steps": self.image_specs, "size": self.image_size})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def image(self, img: np.ndarray, **context: Any) -> np.ndarray:
        """Image steps on one decoded grey ``uint8`` image; returns ``[S, S]`` ``uint8``."""
        for step in self.image_steps:
            img = step(img, **context)
        if img.shape != (self.image_size, self.image_size):
            raise TransformError(
                f"Image steps {list(self.image_specs)} gave shape {img.shape}, "
                f"expected {(self.image_size, self.image_size)}"
            )
        return img

    def tensor(
        self,
        batch: torch.Tensor,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Tensor steps on a ``uint8`` batch ``[B, H, W]`` or ``[B, 1, H, W]``.

        Returns float ``[B, in_chans, S, S]``; augments when ``train`` and a preset is set.
        """
        if batch.ndim == 3:
            batch = batch.unsqueeze(1)
        x = self.tensor_steps[0](batch)
        if train and self.augment is not None:
            x = self.augment(x, generator=generator)
        if self.in_chans != x.shape[1]:
            x = x.expand(-1, self.in_chans, -1, -1)
        for step in self.tensor_steps[1:]:
            x = step(x)
        return x.contiguous()

    def __call__(self, img: np.ndarray, **context: Any) -> torch.Tensor:
        """One decoded image to a model-ready ``[in_chans, S, S]`` float tensor."""
        out = self.image(img, **context)
        return self.tensor(torch.from_numpy(out)[None])[0]
