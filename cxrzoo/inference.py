"""Decoding, batching and prediction over arrays, files and folders.

The one place that turns images into probabilities; ``ZooModel.predict_proba``, ``cxrzoo
predict``, ``explain`` and ``export`` go through it.

- :func:`expand_inputs`: command-line PATHs (files, folders searched recursively, glob patterns)
  to a sorted list of image files.
- :func:`decode_stream`: a thread pool decodes images and runs the image preprocessing steps
  ahead of the model, in bounded batches: each image is decoded once and brought down to the
  model's input size at once, so memory does not grow with the number of images.
- :func:`predict_stream`: ``(path, probabilities, error)`` per image, in input order; an image
  that cannot be read gets its error and the others are still predicted.
- :func:`predict_arrays`: probabilities for images already through the image steps (the
  preprocessing cache of training and evaluation).

A composite model (one whose :meth:`~cxrzoo.model.ZooModel.member_models` is not empty) is
predicted member by member, each on its own preprocessing of the same decoded image, and the
members' probabilities are merged by its :meth:`~cxrzoo.model.ZooModel.combine_members`.
"""

from __future__ import annotations

import glob
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import cv2
import numpy as np
import torch

from cxrzoo.data.base import looks_like_dicom, scan_tree
from cxrzoo.data.io import ImageReadError, read_image, to_grey_uint8
from cxrzoo.errors import CxrzooError, UserError, one_line
from cxrzoo.threads import available_cpus, configure_threads, threads_beside

if TYPE_CHECKING:  # pragma: no cover
    from cxrzoo.model import ZooModel
    from cxrzoo.transforms import Preprocessing

#: What :func:`predict_stream` takes per image: a file, or an image array (grey, BGR, 16-bit …).
ImageInput = str | os.PathLike[str] | np.ndarray
#: Decoding threads by default: one per usable CPU, at most this many.
MAX_DEFAULT_WORKERS = 8
_GLOB_CHARS = frozenset("*?[")


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _scan_folder(folder: str) -> list[str]:
    """Image files under ``folder``, recursively (links to folders followed, loops skipped),
    DICOM files without suffix included; hidden files and folders are skipped. The same walk
    as the data set readers' (:func:`cxrzoo.data.base.scan_tree`)."""
    return scan_tree(folder, bare_dicom=True, hidden_files=False)["path"].tolist()


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``paths``, sorted, each once.

    A PATH is a file (taken whatever its name), a folder (searched recursively for PNG, JPEG,
    TIFF and DICOM files, by suffix, and DICOM files without suffix by their magic bytes) or a
    glob pattern such as ``'scans/**/*.dcm'`` (matching files are taken as a shell would
    expand them; matching folders are searched). A PATH that matches nothing, or a folder
    without images, is a :class:`~cxrzoo.errors.UserError` naming it.
    """
    chosen: dict[str, str] = {}

    def add(path: str) -> None:
        chosen.setdefault(os.path.realpath(path), path)

    for item in paths:
        text = os.fspath(item)
        if not text:
            raise UserError("An empty PATH was given: expected an image file, a folder or a glob pattern")
        expanded = os.path.expanduser(text)
        if os.path.isdir(expanded):
            found = _scan_folder(expanded)
            if not found:
                raise UserError(f"Folder {text} holds no PNG, JPEG, TIFF or DICOM image")
            for path in found:
                add(path)
        elif os.path.lexists(expanded):
            add(expanded)
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(expanded, recursive=True))
            files = []
            for match in matches:
                files.extend(_scan_folder(match) if os.path.isdir(match) else [match])
            if not files:
                raise UserError(f"{text!r} matches no image file")
            for path in files:
                add(path)
        else:
            raise UserError(f"{text}: no such file or folder")
    return [Path(p) for p in sorted(chosen.values())]


def default_workers() -> int:
    """Decoding threads by default: one per CPU this process may use, at most 8."""
    return max(1, min(MAX_DEFAULT_WORKERS, available_cpus()))


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


class Decoded(NamedTuple):
    """One decoded input: ``inputs`` holds one ``uint8 [S, S]`` array per preprocessing (None on
    error), ``error`` the reason it could not be used."""

    index: int
    path: str | None
    inputs: tuple[np.ndarray, ...] | None
    error: str | None


def _prepare(item: ImageInput, preprocessings: Sequence[Preprocessing]) -> tuple[np.ndarray, ...]:
    """Decode ``item`` once and run each preprocessing's image steps on it (shared where two
    preprocessings have the same image steps and size)."""
    if isinstance(item, np.ndarray):
        image, name = to_grey_uint8(item), None
    else:
        image, name = read_image(item), os.path.basename(os.fspath(item))
    done: dict[str, np.ndarray] = {}
    out = []
    for prep in preprocessings:
        key = prep.cache_key
        if key not in done:
            done[key] = prep.image(image, name=name)
        out.append(done[key])
    return tuple(out)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageReadError):
        return exc.reason
    if isinstance(exc, cv2.error):
        return f"image preprocessing failed ({one_line(exc, 200)})"
    return one_line(exc, 300)


def decode_stream(
    items: Iterable[ImageInput],
    preprocessings: Sequence[Preprocessing],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    raise_errors: bool = False,
) -> Iterator[list[Decoded]]:
    """Batches of decoded, image-preprocessed inputs, in order.

    ``workers`` threads (default :func:`default_workers`; 0 decodes in the calling thread) work
    at most ``2 * batch_size + workers`` images ahead of the consumer, so the memory in use is
    bounded by the batch size, never by the number of images; an image is held at full size only
    while a worker decodes and downscales it. An image that cannot be read or preprocessed
    (a :class:`~cxrzoo.errors.CxrzooError` such as :class:`~cxrzoo.data.io.ImageReadError`, or
    an OpenCV error) comes back with its ``error``; with ``raise_errors`` it is raised instead.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UserError(f"workers must be 0 or more, got {workers}")
    preps = tuple(preprocessings)

    def label(item: ImageInput) -> str | None:
        return None if isinstance(item, np.ndarray) else os.fspath(item)

    def finish(index: int, item: ImageInput, get: Callable[[], tuple[np.ndarray, ...]]) -> Decoded:
        try:
            return Decoded(index, label(item), get(), None)
        except (CxrzooError, cv2.error) as exc:
            if raise_errors:
                raise
            return Decoded(index, label(item), None, _reason(exc))

    batch: list[Decoded] = []
    if workers == 0:
        for index, item in enumerate(items):
            batch.append(finish(index, item, lambda item=item: _prepare(item, preps)))
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        return

    ahead = 2 * batch_size + workers
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrzoo-decode")
    pending: deque[tuple[int, ImageInput, Future[tuple[np.ndarray, ...]]]] = deque()
    source = enumerate(items)
    try:

        def fill() -> None:
            while len(pending) < ahead:
                try:
                    index, item = next(source)
                except StopIteration:
                    return
                pending.append((index, item, pool.submit(_prepare, item, preps)))

        fill()
        while pending:
            index, item, future = pending.popleft()
            batch.append(finish(index, item, future.result))
            fill()
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Running models
# ---------------------------------------------------------------------------------------------


class Runner(Protocol):
    """What the inference layer needs of a model: the preprocessing of each input and a
    function from those inputs (``uint8 [B, S, S]`` each) to probabilities ``[B, labels]``."""

    preprocessings: Sequence[Preprocessing]

    def __call__(self, inputs: Sequence[np.ndarray]) -> np.ndarray: ...

    def active(self) -> AbstractContextManager[Any]: ...


def _autocast(device: torch.device, amp: bool) -> AbstractContextManager[Any]:
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


class TorchRunner:
    """A :class:`~cxrzoo.model.ZooModel` on ``device``: the model itself, or each of its members
    on its own preprocessing, merged by ``combine_members``."""

    def __init__(self, model: ZooModel, *, device: str | torch.device | None = None, amp: bool = False):
        self.model = model
        self.device = torch.device(device) if device is not None else model.device
        self.amp = amp
        self.members = tuple(model.member_models())
        self.parts = self.members or (model,)
        self.preprocessings = [m.preprocessing() for m in self.parts]

    @contextmanager
    def active(self) -> Iterator[TorchRunner]:
        """The model on the device in eval mode, its training flag restored afterwards."""
        was_training = self.model.training
        self.model.to(self.device)
        self.model.eval()
        try:
            with torch.no_grad():
                yield self
        finally:
            self.model.train(was_training)

    def probabilities(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Probabilities ``[B, labels]`` (on the device) from ``uint8`` batches, one per part."""
        probs = []
        for part, prep, batch in zip(self.parts, self.preprocessings, inputs, strict=True):
            x = prep.tensor(batch.to(self.device, non_blocking=True))
            with _autocast(self.device, self.amp):
                probs.append(part.probabilities(x).float())
        if not self.members:
            return probs[0]
        return self.model.combine_members(probs).float()

    def __call__(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
        return self.probabilities(tensors).cpu().numpy()

    def run(
        self,
        inputs: Sequence[np.ndarray],
        *,
        ood: bool = False,
        uncertainty: bool = False,
        features: bool = False,
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Probabilities ``[B, labels]`` and, per image, the details asked for:

        - ``ood``: ``ood_score`` and ``in_distribution`` from the model's out-of-distribution
          gate (:mod:`cxrzoo.ood`; nothing when the model has none);
        - ``uncertainty``: one number per finding, the spread of the probability: the standard
          deviation over an ensemble's members, or for a single model half the difference
          between the image's and its mirror image's probability;
        - ``features``: the gate's input (``layout`` and ``model`` feature vectors).

        All come from the same forward pass as the probabilities (plus one mirrored pass for a
        single model's uncertainty).
        """
        from cxrzoo.ood import layout_features, pooled

        detector = getattr(self.model, "ood_detector", None) if ood else None
        want_features = features or detector is not None
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
        part_probs, model_feats = [], []
        layout: torch.Tensor | None = None
        spread: torch.Tensor | None = None
        for part, prep, batch in zip(self.parts, self.preprocessings, tensors, strict=True):
            x = prep.tensor(batch.to(self.device, non_blocking=True))
            captured: list[torch.Tensor] = []
            handle = None
            if want_features:
                if layout is None:
                    layout = layout_features(x)
                layer = _feature_layer(part)
                if layer is not None:
                    handle = layer.register_forward_hook(
                        lambda _m, _i, out, into=captured: into.append(pooled(out))
                    )
            try:
                with _autocast(self.device, self.amp):
                    p = part.probabilities(x).float()
            finally:
                if handle is not None:
                    handle.remove()
            if captured:
                model_feats.append(captured[0])  # the unmirrored pass when flip TTA runs two
            if uncertainty and not self.members:
                with _autocast(self.device, self.amp):
                    mirrored = torch.sigmoid(part(torch.flip(x, dims=[-1])).float())
                    plain = torch.sigmoid(part(x).float()) if part.config.flip_tta else p
                spread = (plain - mirrored).abs() / 2
            part_probs.append(p)
        probs = part_probs[0] if not self.members else self.model.combine_members(part_probs).float()
        if uncertainty and self.members:
            spread = torch.stack(part_probs).std(0, unbiased=False)
        details: list[dict[str, Any]] = [{} for _ in range(len(probs))]
        feats = torch.cat(model_feats, dim=1).cpu().numpy() if model_feats else None
        if want_features:
            assert layout is not None
            lay = layout.cpu().numpy()
            if detector is not None:
                scores = detector.score(lay, feats)
                for d, score, inside in zip(details, scores, detector.inside(scores), strict=True):
                    d["ood_score"], d["in_distribution"] = float(score), bool(inside)
            if features:
                for i, d in enumerate(details):
                    d["features"] = {"layout": lay[i], "model": None if feats is None else feats[i]}
        if spread is not None:
            for d, row in zip(details, spread.cpu().numpy(), strict=True):
                d["uncertainty"] = row
        return probs.cpu().numpy(), details


def _feature_layer(model: ZooModel) -> torch.nn.Module | None:
    """The layer whose pooled output describes what ``model`` sees (its Grad-CAM layer)."""
    try:
        layers = model.gradcam_layers()
    except NotImplementedError:
        return None
    return layers[-1] if layers else None


def runner_for(model: Any, *, device: str | torch.device | None = None, amp: bool = False) -> Runner:
    """The :class:`Runner` of a ZooModel, or of any object with an ``inference_runner`` method
    (an exported model read by :class:`cxrzoo.export.OnnxModel`)."""
    configure_threads()
    make = getattr(model, "inference_runner", None)
    if make is not None:
        return make(device=device)
    return TorchRunner(model, device=device, amp=amp)


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """PyTorch's thread count set to ``count`` (None: unchanged) for the block. The decoding
    threads run beside the model: an operator's threads that share their cores with them wait
    for each other at every operator, which costs far more than a thread less."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Prediction(NamedTuple):
    """One image's result: ``probabilities`` ``[labels]`` in the model's label order, or
    ``error`` (why the image could not be used). ``path`` is None for an array input."""

    path: str | None
    probabilities: np.ndarray | None
    error: str | None
    #: What :meth:`TorchRunner.run` adds when asked: ``ood_score``, ``in_distribution``,
    #: ``uncertainty`` ``[labels]``, ``features``; None when nothing was asked.
    details: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def predict_stream(
    model: Any,
    inputs: Iterable[ImageInput],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    raise_errors: bool = False,
    ood: bool = False,
    uncertainty: bool = False,
    features: bool = False,
) -> Iterator[Prediction]:
    """One :class:`Prediction` per input, in order, as batches finish.

    ``inputs`` are image files or arrays, decoded by ``workers`` threads ahead of the model
    (see :func:`decode_stream`) and preprocessed as in training; ``device`` defaults to the
    model's. ``model`` is a :class:`~cxrzoo.model.ZooModel` (a composite is predicted member by
    member) or an exported model (:class:`cxrzoo.export.OnnxModel`). Unreadable images give a
    Prediction with its ``error`` (raised instead with ``raise_errors``) and the rest go on.
    ``ood``, ``uncertainty`` and ``features`` fill each Prediction's ``details`` (see
    :meth:`TorchRunner.run`; an exported model gives ``ood`` only, when its graph has the gate).
    """
    runner = runner_for(model, device=device, amp=amp)
    detailed = ood or uncertainty or features
    if detailed and not hasattr(runner, "run"):
        raise UserError(
            "out-of-distribution scores and uncertainty need the PyTorch backend (--backend torch)"
        )
    workers = default_workers() if workers is None else workers
    with (
        runner.active(),
        _torch_threads(threads_beside(workers) if isinstance(runner, TorchRunner) else None),
    ):
        batches = decode_stream(
            inputs, runner.preprocessings, batch_size=batch_size, workers=workers, raise_errors=raise_errors
        )
        for batch in batches:
            good = [d for d in batch if d.inputs is not None]
            probs: np.ndarray | None = None
            extra: list[dict[str, Any]] | None = None
            if good:
                stacked = [np.stack([d.inputs[k] for d in good]) for k in range(len(runner.preprocessings))]  # type: ignore[index]
                if detailed:
                    probs, extra = runner.run(stacked, ood=ood, uncertainty=uncertainty, features=features)  # type: ignore[union-attr]
                else:
                    probs = runner(stacked)
            row = 0
            for d in batch:
                if d.inputs is None:
                    yield Prediction(d.path, None, d.error)
                else:
                    assert probs is not None
                    yield Prediction(d.path, probs[row], None, None if extra is None else extra[row])
                    row += 1


def predict_proba(
    model: Any,
    images: ImageInput | torch.Tensor | Iterable[ImageInput],
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Probabilities ``[N, labels]`` for image files, raw arrays, or a preprocessed tensor.

    Files and arrays are decoded and preprocessed as in training (:func:`predict_stream`); an
    unreadable file raises its :class:`~cxrzoo.data.io.ImageReadError`. A ``torch.Tensor``
    ``[B, C, H, W]`` (or ``[C, H, W]``) is taken as already preprocessed and fed to the model's
    ``forward`` as it is.
    """
    n_labels = len(model.labels)
    if isinstance(images, torch.Tensor):
        return _predict_tensor(model, images, batch_size=batch_size, device=device)
    if isinstance(images, str | os.PathLike | np.ndarray):
        images = [images]

    def checked() -> Iterator[ImageInput]:
        for item in images:  # type: ignore[union-attr]
            if isinstance(item, torch.Tensor):
                raise TypeError(
                    "Mixing tensors with paths or arrays is ambiguous: pass a single "
                    "preprocessed tensor batch, or paths/arrays"
                )
            yield item

    rows = [
        p.probabilities
        for p in predict_stream(
            model, checked(), batch_size=batch_size, workers=workers, device=device, raise_errors=True
        )
    ]
    if not rows:
        return np.zeros((0, n_labels), dtype=np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


def _predict_tensor(
    model: ZooModel, images: torch.Tensor, *, batch_size: int, device: str | torch.device | None
) -> np.ndarray:
    runner = TorchRunner(model, device=device)
    batch = images[None] if images.ndim == 3 else images
    out = []
    with runner.active():
        for i in range(0, len(batch), batch_size):
            x = batch[i : i + batch_size].to(runner.device).float()
            out.append(model.probabilities(x).float().cpu())
    if not out:
        return np.zeros((0, len(model.labels)), dtype=np.float32)
    return torch.cat(out).numpy()


def predict_arrays(
    model: ZooModel,
    images: np.ndarray | Sequence[np.ndarray],
    *,
    rows: np.ndarray | None = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    amp: bool = True,
) -> np.ndarray:
    """Probabilities ``[N, labels]`` for images already through the model's image steps.

    ``images`` is ``uint8 [M, S, S]``, the output of ``model.preprocessing().image`` (a
    preprocessing cache's memory map, say); ``rows`` picks which of its rows to predict, in
    order (default all), so a memory map is read one batch at a time. The tensor steps run on
    ``device`` (default the model's); ``amp`` uses autocast on CUDA.

    A composite model takes one such array per member (:meth:`ZooModel.member_models` order),
    each made with that member's image steps; a single array is accepted when every member has
    the same image steps and size.
    """
    runner = TorchRunner(model, device=device, amp=amp)
    arrays = _arrays_per_part(runner, images)
    count = len(arrays[0]) if rows is None else len(rows)
    for a, prep in zip(arrays, runner.preprocessings, strict=True):
        if a.ndim != 3 or a.shape[1:] != (prep.image_size, prep.image_size) or a.dtype != np.uint8:
            raise UserError(
                f"predict_arrays needs uint8 images [N, {prep.image_size}, {prep.image_size}], "
                f"got {a.dtype} {tuple(a.shape)}"
            )
        if rows is None and len(a) != count:
            raise UserError(f"predict_arrays: member arrays hold {len(a)} and {count} images")
    index = np.arange(count) if rows is None else np.asarray(rows, dtype=np.int64)
    out = []
    with runner.active():
        for start in range(0, count, batch_size):
            pick = index[start : start + batch_size]
            batches = [torch.from_numpy(np.ascontiguousarray(a[pick])) for a in arrays]
            out.append(runner.probabilities(batches).cpu())
    if not out:
        return np.zeros((0, len(model.labels)), dtype=np.float32)
    return torch.cat(out).numpy()


def _arrays_per_part(runner: TorchRunner, images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    parts = len(runner.parts)
    if isinstance(images, np.ndarray):
        if parts > 1 and len({p.cache_key for p in runner.preprocessings}) > 1:
            steps = "; ".join(
                f"{getattr(m, 'architecture', '') or type(m).__name__}: {list(p.image_specs)} at {p.image_size}"
                for m, p in zip(runner.parts, runner.preprocessings, strict=True)
            )
            raise UserError(
                f"This composite model's members preprocess differently ({steps}): pass one "
                f"array per member to predict_arrays"
            )
        return [images] * parts
    arrays = list(images)
    if len(arrays) != parts:
        raise UserError(f"predict_arrays got {len(arrays)} arrays for a model with {parts} member(s)")
    return arrays


__all__ = [
    "Decoded",
    "ImageInput",
    "Prediction",
    "Runner",
    "TorchRunner",
    "decode_stream",
    "default_workers",
    "expand_inputs",
    "looks_like_dicom",
    "predict_arrays",
    "predict_proba",
    "predict_stream",
    "runner_for",
]


# ---------------------------------------------------------------------------------------------
# Dataset tables (validation, evaluation)
# ---------------------------------------------------------------------------------------------


def predict_table(
    model: ZooModel,
    table: Any,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 128,
    echo: Any = print,
    progress: bool = True,
    amp: bool = True,
    details: list[dict[str, Any]] | None = None,
    uncertainty: bool = False,
) -> tuple[np.ndarray, Any]:
    """Probabilities for a dataset table's images, and the :class:`~cxrzoo.data.arrays.ArrayData`
    they were predicted from (its labels aligned to the model's, NaN where unknown).

    Images go through the preprocessing cache (each model's image steps, once); images that
    do not decode are named and left out. A composite predicts each member on that member's
    cached images and merges them with ``combine_members``, over the images every member has.
    Given a list as ``details``, each image's details from :meth:`TorchRunner.run` are appended
    to it, in the same order: the gate's ``ood_score`` / ``in_distribution`` when the model has a
    gate, and the ``uncertainty`` per finding with ``uncertainty``.
    """
    from cxrzoo.data.arrays import arrays_for
    from cxrzoo.labels import table_targets

    members = model.member_models()
    if not members:
        kept = [arrays_for(table, model.config, echo=echo, progress=progress)]
    else:
        parts = [arrays_for(table, m.config, echo=echo, progress=progress) for m in members]
        names = set(parts[0].names).intersection(*(set(p.names) for p in parts[1:]))
        kept = [p.subset(np.flatnonzero([n in names for n in p.names])) for p in parts]
        order = [np.argsort(np.asarray(p.names), kind="stable") for p in kept]
        kept = [p.subset(o) for p, o in zip(kept, order, strict=True)]
    runner = TorchRunner(model, device=device, amp=amp)
    gate = getattr(model, "ood_detector", None) is not None
    detailed = details is not None and (gate or uncertainty)
    out = []
    with runner.active():
        for start in range(0, len(kept[0]), batch_size):
            batches = [np.ascontiguousarray(p.images[p.rows[start : start + batch_size]]) for p in kept]
            if detailed:
                probs, found = runner.run(batches, ood=gate, uncertainty=uncertainty)
                details.extend(found)  # type: ignore[union-attr]
                out.append(torch.from_numpy(probs))
            else:
                out.append(runner.probabilities([torch.from_numpy(b) for b in batches]).cpu())
    probs = torch.cat(out).numpy() if out else np.zeros((0, len(model.labels)), dtype=np.float32)
    data = kept[0]
    if members:
        rows = table.set_index("image").loc[data.names].reset_index()
        data.labels = table_targets(rows, model.labels)
    return probs, data
