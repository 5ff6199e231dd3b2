"""The models a server holds, and the micro-batcher that groups their requests.

A :class:`ServedModel` is loaded once, when the server starts. Its store entry is watched, not
followed: every request compares the entry's ``config.json`` and weights file (size and
modification time, then ``config_sha256`` and the weights' sha256 when those moved) with what
was loaded. A changed entry is refused (HTTP 409) until the operator reloads it explicitly
(``POST /v1/models/NAME/reload``, or ``cxrzoo serve --reload-on-change``), so a server never
answers from other weights than the ones it reports in ``GET /v1/models``.

A :class:`Batcher` per model takes decoded images from request handlers and predicts them in
batches, in one thread, through :func:`cxrzoo.inference.predict_stream`: the batch closes when
it holds ``max_batch`` images, or when ``max_wait`` has passed since its first image while
other requests are still being decoded (a lone request is never kept waiting). A full queue
refuses at once (:class:`QueueFull`, HTTP 429).
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrzoo.errors import CxrzooError
from cxrzoo.inference import Prediction, default_workers, predict_stream


@dataclass(frozen=True)
class ServeOptions:
    """How a server batches, limits and guards its requests."""

    #: Most images predicted together.
    max_batch: int = 16
    #: Longest wait (seconds) for a batch to fill once its first image is in.
    max_wait: float = 0.01
    #: Images waiting for the model, across requests, before 429.
    queue_size: int = 64
    #: Largest request body in bytes (413 above).
    max_body_bytes: int = 32 * 1024 * 1024
    #: Bearer token every /v1 and /metrics request must carry (None: no token).
    token: str | None = None
    #: Device the models run on (None: each model's default).
    device: str | None = None
    #: Reload a store entry that changed on disk instead of refusing it (409).
    reload_on_change: bool = False
    #: Add each probability's spread (an ensemble's members' disagreement, or the mirror
    #: image's for a single model: one more forward pass).
    uncertainty: bool = False

    def __post_init__(self) -> None:
        from cxrzoo.errors import UserError

        if self.max_batch < 1:
            raise UserError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.queue_size < 1:
            raise UserError(f"--queue-size must be at least 1, got {self.queue_size}")
        if not self.max_wait >= 0:
            raise UserError(f"--max-wait-ms must be 0 or more, got {self.max_wait * 1000:g}")
        if self.max_body_bytes < 1:
            raise UserError(f"--max-body-mb must be positive, got {self.max_body_bytes / 2**20:g}")


class ModelChanged(CxrzooError):
    """The store entry of a served model is no longer what the server loaded."""


class QueueFull(CxrzooError):
    """The model's queue holds ``queue_size`` images: the request is refused, not queued."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ServedModel:
    """One trained model as the server holds it: loaded once, its entry watched on disk."""

    def __init__(self, source: str, *, device: str | None = None) -> None:
        self.source = source
        self.device = device
        #: Held while the model runs (a batch, a Grad-CAM) and while it is reloaded.
        self.lock = threading.RLock()
        #: Guards the on-disk check alone, so that checking never waits for a running batch.
        self._watch_lock = threading.Lock()
        self._load()
        self.name = str(self.model.metadata.get("name") or Path(source).name)

    # -- loading ------------------------------------------------------------------------
    def _load(self) -> None:
        import cxrzoo
        from cxrzoo import store

        model = cxrzoo.load(self.source, device=self.device or "cpu")
        folder = Path(model.metadata["folder"])
        doc = store.read_config(folder)
        weights = folder / doc["weights"].get("file", store.WEIGHTS_NAME)
        card_file = folder / "README.md"
        self.model = model
        self.folder = folder
        self.weights_file = weights
        self.doc = doc
        self.config_sha256 = str(doc.get("config_sha256") or "")
        self.weights_sha256 = str(doc["weights"].get("sha256") or "")
        self.card = card_file.read_text(encoding="utf-8", errors="replace") if card_file.is_file() else ""
        self.loaded_at = time.time()
        self._stamp = (_stat_key(folder / store.CONFIG_NAME), _stat_key(weights))
        self.problem: str | None = None

    def reload(self) -> None:
        """Load the store entry again (the new weights replace the old ones once loaded)."""
        with self.lock, self._watch_lock:
            self._load()

    # -- watching -----------------------------------------------------------------------
    def change(self) -> str | None:
        """Why the entry on disk is no longer the one loaded, or None while it is.

        Cheap when nothing moved (two ``stat`` calls); when a file's size or time moved, the
        config's sha256 and the weights' sha256 decide (a file only touched is still the same).
        """
        from cxrzoo import store

        with self._watch_lock:
            if self.problem is not None:
                return self.problem
            stamp = (_stat_key(self.folder / store.CONFIG_NAME), _stat_key(self.weights_file))
            if stamp == self._stamp:
                return None
            problem = self._compare()
            if problem is None:
                self._stamp = stamp
            else:
                self.problem = problem
            return problem

    def _compare(self) -> str | None:
        from cxrzoo import store

        if not (self.folder / store.CONFIG_NAME).is_file():
            return f"its store entry {self.folder} was removed after it was loaded"
        try:
            doc = store.read_config(self.folder)
        except CxrzooError as exc:
            return f"its store entry {self.folder} changed and is now unreadable ({exc})"
        sha = str(doc.get("config_sha256") or "")
        if sha != self.config_sha256:
            return (
                f"its store entry {self.folder} changed on disk after it was loaded "
                f"(config sha256 {self.config_sha256[:12]} -> {sha[:12]})"
            )
        weights_sha = str(doc["weights"].get("sha256") or "")
        if weights_sha != self.weights_sha256 or not self.weights_file.is_file():
            return f"its store entry {self.folder} now names other weights (sha256 {weights_sha[:12]})"
        if self.weights_sha256 and store.sha256_file(self.weights_file) != self.weights_sha256:
            return f"its weights file {self.weights_file} changed on disk after it was loaded"
        return None

    # -- describing ---------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        return self.model.config.thresholds is not None

    def info(self, *, card: bool = True) -> dict[str, Any]:
        """What ``GET /v1/models`` says of this model."""
        model = self.model
        out: dict[str, Any] = {
            "name": self.name,
            "architecture": self.doc.get("architecture"),
            "labels": list(model.labels),
            "thresholds": dict(zip(model.labels, map(float, model.thresholds), strict=True)),
            "calibrated": self.calibrated,
            "image_size": int(model.config.image_size),
            "config_sha256": self.config_sha256,
            "weights_sha256": self.weights_sha256,
            "versions": self.doc.get("versions") or {},
            "metrics": self.doc.get("metrics") or {},
            "folder": str(self.folder),
            "loaded_at": self.loaded_at,
            "changed_on_disk": self.problem,
        }
        if card:
            out["card"] = self.card
        return out


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python numbers and lists (NaN as None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: What the batcher predicts with; a test may swap it for a fake that adds ``details``.
PredictFn = Callable[..., Any]


class Batcher:
    """Groups one model's images into batches and predicts them in one thread."""

    def __init__(
        self,
        served: ServedModel,
        options: ServeOptions,
        *,
        on_batch: Callable[[int, float], None] | None = None,
        predict: PredictFn | None = None,
    ) -> None:
        self.served = served
        self.options = options
        self.on_batch = on_batch
        self.predict = predict or predict_stream
        self.queue: queue.Queue[tuple[np.ndarray, Future[Prediction]] | None] = queue.Queue(
            maxsize=options.queue_size
        )
        #: Requests admitted but still decoding: the batch waits for them, up to max_wait.
        self._incoming = 0
        self._count_lock = threading.Lock()
        #: Seconds the last batch took (for Retry-After).
        self.last_batch_seconds = 0.0
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._run, name=f"cxrzoo-batch-{served.name}", daemon=True)
        self._thread.start()

    # -- requests -----------------------------------------------------------------------
    def arriving(self) -> Callable[[], None]:
        """Count a request whose image is being decoded; call the returned function when it
        is queued (or given up)."""
        with self._count_lock:
            self._incoming += 1
        done = False

        def finished() -> None:
            nonlocal done
            if not done:
                done = True
                with self._count_lock:
                    self._incoming -= 1

        return finished

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the time to work the full queue off, at least 1."""
        batches = math.ceil(self.options.queue_size / self.options.max_batch)
        return max(1, math.ceil(batches * self.last_batch_seconds))

    def submit(self, image: np.ndarray) -> Future[Prediction]:
        """Queue one decoded image; :class:`QueueFull` when the queue is full."""
        future: Future[Prediction] = Future()
        try:
            self.queue.put_nowait((image, future))
        except queue.Full:
            raise QueueFull(
                f"model {self.served.name!r} has {self.options.queue_size} image(s) waiting; try again later",
                self.retry_after(),
            ) from None
        return future

    def depth(self) -> int:
        return self.queue.qsize()

    def close(self) -> None:
        """Stop the thread once the queued images are predicted."""
        self.queue.put(None)
        self._thread.join(timeout=30)

    # -- the batching thread ------------------------------------------------------------
    def _gather(self, first: tuple[np.ndarray, Future[Prediction]]) -> tuple[list[Any], bool]:
        batch = [first]
        deadline = time.monotonic() + self.options.max_wait
        while len(batch) < self.options.max_batch:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._incoming == 0:
                    break
                try:
                    item = self.queue.get(timeout=min(remaining, 0.002))
                except queue.Empty:
                    continue
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            live = [(img, fut) for img, fut in batch if fut.set_running_or_notify_cancel()]
            if live:
                self._predict(live)

    def _predict(self, batch: list[tuple[np.ndarray, Future[Prediction]]]) -> None:
        started = time.perf_counter()
        images = [img for img, _ in batch]
        workers = 0 if len(images) == 1 else min(len(images), default_workers())
        try:
            with self.served.lock:
                preds = list(
                    self.predict(
                        self.served.model,
                        images,
                        batch_size=len(images),
                        workers=workers,
                        device=self.options.device,
                        # ood_score and in_distribution where the model has a gate (no cost otherwise)
                        ood=True,
                        uncertainty=self.options.uncertainty,
                    )
                )
            if len(preds) != len(batch):
                raise RuntimeError(f"the model gave {len(preds)} prediction(s) for {len(batch)} image(s)")
        except BaseException as exc:  # the requests get the error; the thread goes on
            for _, fut in batch:
                fut.set_exception(exc)
            return
        self.last_batch_seconds = time.perf_counter() - started
        self.largest_batch = max(self.largest_batch, len(batch))
        if self.on_batch is not None:
            self.on_batch(len(batch), self.last_batch_seconds)
        for (_, fut), pred in zip(batch, preds, strict=True):
            fut.set_result(pred)


__all__ = ["Batcher", "ModelChanged", "QueueFull", "ServeOptions", "ServedModel", "jsonable"]
