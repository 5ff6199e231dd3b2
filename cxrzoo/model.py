"""The model plugin interface: a ``torch.nn.Module`` that knows its config and labels."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cxrzoo.config import ModelConfig

ImageLike = str | os.PathLike[str] | np.ndarray | torch.Tensor


class TrainingContext:
    """What :meth:`ZooModel.build_for_training` may ask of the core: train or load a model
    by store name with the same data, recipe and device as the run that asked."""

    def train(self, name: str) -> ZooModel:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, name: str) -> ZooModel:  # pragma: no cover - interface
        raise NotImplementedError

    def is_trained(self, name: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def echo(self, message: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def validation(self, model: ZooModel) -> tuple[Any, Any]:  # pragma: no cover - interface
        """``model``'s probabilities ``[N, labels]`` on this run's validation images and their
        labels (NaN where unknown), for a composite that tunes itself on validation."""
        raise NotImplementedError


class ZooModel(nn.Module):
    """Base class of every cxrzoo model.

    Subclasses set ``config_class`` to their config dataclass and build their layers from
    ``self.config`` in ``__init__``. ``forward`` maps a float batch ``[B, in_chans, S, S]``
    (already preprocessed) to logits ``[B, len(config.labels)]`` in label order.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: Name under which the class is registered; set by :func:`cxrzoo.create_model`.
    architecture: str = ""
    #: The out-of-distribution gate (:class:`cxrzoo.ood.OodDetector`) fitted for this model,
    #: saved beside its weights; None until one is fitted.
    ood_detector: Any = None

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        if overrides:
            config = config.replace(**overrides)
        self.config = config
        #: Free-form facts saved in config.json beside the config: training data and recipe,
        #: metrics, provenance.
        self.metadata: dict[str, Any] = {}

    # -- what subclasses may override -------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, labels]`` of a preprocessed batch: the sigmoid of :meth:`forward`,
        averaged with the mirrored batch's when ``config.flip_tta`` is on. Every prediction path
        (validation, evaluation, ``predict``, ONNX export) goes through it."""
        p = torch.sigmoid(self(x).float())
        if getattr(self.config, "flip_tta", False):
            p = (p + torch.sigmoid(self(torch.flip(x, dims=[-1])).float())) / 2
        return p

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named attention and feature maps ``[B, C, h, w]`` for explanation."""
        return {}

    def gradcam_layers(self) -> list[nn.Module]:
        """Layers whose activations Grad-CAM should use (the last spatial features)."""
        raise NotImplementedError(f"{type(self).__name__} does not name Grad-CAM layers")

    def auxiliary_loss(self, targets: torch.Tensor) -> torch.Tensor | None:
        """Extra training loss from the last forward pass (e.g. memory replay), or None."""
        return None

    @classmethod
    def tiny_config(cls) -> ModelConfig:
        """A small, fast configuration for tests (the conformance suite builds this)."""
        return cls.config_class(image_size=32)

    # -- hooks through which a model tells the core what it needs ------------------------
    #: False for a model that is not trained by gradient descent itself (a composite such as
    #: an ensemble): training then builds it with :meth:`build_for_training`, calibrates its
    #: thresholds and saves it, without a training loop.
    trains_itself: ClassVar[bool] = True

    @classmethod
    def build_for_training(cls, config: ModelConfig, context: TrainingContext) -> ZooModel:
        """The model to train (or, when not :attr:`trains_itself`, to calibrate and save).

        Work a model needs before training goes here: a composite trains the members the
        store lacks with ``context.train(name)`` and loads them with ``context.load(name)``.
        """
        return cls(config)

    def member_models(self) -> Sequence[ZooModel]:
        """The models a composite combines, each predicting on its own preprocessing; empty
        for a plain model. The inference layer predicts each member on its own input and
        merges their probabilities with :meth:`combine_members`."""
        return ()

    def combine_members(self, probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
        """Merge member probabilities ``[B, labels]`` (one per :meth:`member_models`)."""
        raise NotImplementedError(f"{type(self).__name__} has no members to combine")

    def rare_findings(self) -> tuple[str, ...]:
        """Findings this model treats as rare (reported as a group by evaluation); none by default."""
        return ()

    def training_record(self) -> dict[str, Any]:
        """Facts about how this model was built, recorded under ``training`` in config.json
        (for a composite: its members)."""
        return {}

    def card_facts(self) -> dict[str, str]:
        """Markdown for the placeholders of this model's card source; by default its config's
        (:meth:`ModelConfig.card_facts`), which a card rendered from config.json alone uses too."""
        return self.config.card_facts()

    # -- shared behaviour ---------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def set_thresholds(self, thresholds: Sequence[float] | None) -> None:
        """Replace the calibrated decision thresholds (one per label)."""
        self.config = self.config.replace(
            thresholds=None if thresholds is None else tuple(float(t) for t in thresholds)
        )

    @property
    def thresholds(self) -> np.ndarray:
        """Decision thresholds; 0.5 for every label until the model is calibrated."""
        if self.config.thresholds is None:
            return np.full(len(self.labels), 0.5)
        return np.asarray(self.config.thresholds, dtype=float)

    def preprocessing(self, augment: str | None = None):
        from cxrzoo.transforms import Preprocessing

        return Preprocessing.from_config(self.config, augment=augment)

    def predict_proba(
        self,
        images: ImageLike | Iterable[ImageLike],
        *,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        workers: int | None = None,
    ) -> np.ndarray:
        """Probabilities ``[N, labels]`` for paths, raw arrays, or preprocessed tensors.

        Paths and ``numpy`` arrays are decoded (by ``workers`` threads) and preprocessed as in
        training; a composite predicts each member on its own preprocessing. A
        ``torch.Tensor`` ``[B, C, H, W]`` (or ``[C, H, W]``) is taken as already preprocessed.
        See :func:`cxrzoo.inference.predict_proba`.
        """
        from cxrzoo.inference import predict_proba

        return predict_proba(self, images, batch_size=batch_size, device=device, workers=workers)

    def predict(self, images: ImageLike | Iterable[ImageLike], **kwargs: Any) -> list[dict[str, float]]:
        """Per image ``{label: probability}``, in label order."""
        probs = self.predict_proba(images, **kwargs)
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in probs]

    def assess(
        self, images: ImageLike | Iterable[ImageLike], *, uncertainty: bool = True, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Per image, everything a reader of the calls needs: ``probabilities`` and ``positive``
        (at the calibrated thresholds), ``uncertainty`` per finding (see
        :meth:`cxrzoo.inference.TorchRunner.run`) and, when the model has an out-of-distribution
        gate, ``ood_score`` and ``in_distribution``. ``images``: paths or grey arrays (one, or
        many); unreadable images raise their error."""
        from cxrzoo.inference import predict_stream

        if isinstance(images, str | os.PathLike) or (isinstance(images, np.ndarray) and images.ndim == 2):
            images = [images]
        out = []
        for pred in predict_stream(
            self, images, ood=True, uncertainty=uncertainty, raise_errors=True, **kwargs
        ):
            assert pred.probabilities is not None
            info = pred.details or {}
            entry: dict[str, Any] = {
                "probabilities": dict(zip(self.labels, map(float, pred.probabilities), strict=True)),
                "positive": self.positives(pred.probabilities[None])[0],
            }
            if "uncertainty" in info:
                entry["uncertainty"] = dict(zip(self.labels, map(float, info["uncertainty"]), strict=True))
            if "ood_score" in info:
                entry["ood_score"], entry["in_distribution"] = info["ood_score"], info["in_distribution"]
            out.append(entry)
        return out

    def positives(self, probs: np.ndarray) -> list[list[str]]:
        """Findings called positive at the calibrated thresholds, per row of ``probs``."""
        calls = np.asarray(probs) >= self.thresholds
        return [[lab for lab, c in zip(self.labels, row, strict=True) if c] for row in calls]

    def save_pretrained(self, folder: str | os.PathLike[str], *, card: bool = True) -> Path:
        """Write ``model.safetensors``, ``config.json`` and (by default) ``README.md``."""
        from cxrzoo.store import save_folder

        return save_folder(self, folder, card=card)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path_or_repo: str | os.PathLike[str],
        *,
        revision: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> ZooModel:
        """Load a trained model: a store name, a model folder, or ``hf://`` / ``hf-hub:org/repo``.

        The same verified loading as :func:`cxrzoo.load` (a Hub repo is pulled into the store
        first; ``revision`` and ``token`` apply to it, as in huggingface_hub's mixins). Other
        keyword arguments go to :func:`cxrzoo.store.load_folder` (``device``, ``verify``).
        Called on a subclass, refuses a model of another class.
        """
        from cxrzoo import hub
        from cxrzoo.store import load_folder

        folder = hub.resolve_model(name_or_path_or_repo, revision=revision, token=token)
        model = load_folder(folder, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{name_or_path_or_repo} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        private: bool = False,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Upload this model to the Hub repo ``repo_id`` in one commit, like huggingface_hub's mixins.

        Saves the model into a temporary folder (weights, config.json, card: the files
        ``cxrzoo push`` sends) and pushes it with :func:`cxrzoo.hub.push`; returns its
        :class:`~cxrzoo.hub.PushResult` (the commit id, with ``url``, ``commit_url`` and, with
        ``create_pr``, ``pr_url`` and ``pr_num``).
        """
        import tempfile

        from cxrzoo import hub

        with tempfile.TemporaryDirectory(prefix="cxrzoo-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return hub.push(
                folder,
                repo_id,
                revision=revision,
                private=private,
                token=token,
                commit_message=commit_message,
                create_pr=create_pr,
                timeout=timeout,
            )

    def num_parameters(self, trainable: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)

    def extra_repr(self) -> str:
        return f"architecture={self.architecture!r}, labels={len(self.labels)}"
