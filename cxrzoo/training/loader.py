"""Batches from preprocessed uint8 arrays, shuffled deterministically and fed ahead of time.

Images come from the preprocessing cache (a memory-mapped ``uint8`` array) so an epoch
costs a memory copy, not a PNG decode. Augmentation and normalisation run on the batch on
the training device (see :class:`cxrzoo.transforms.Preprocessing`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from cxrzoo.data.arrays import ArrayData


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool, rank: int = 0, world: int = 1) -> np.ndarray:
    """This rank's sample order for ``epoch``; every rank gets the same number of samples."""
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    else:
        order = np.arange(n)
    if world > 1:
        per_rank = -(-n // world)
        order = np.resize(order, per_rank * world)  # pad by wrapping, as DistributedSampler does
        order = order[rank::world]
    return order


class BatchLoader:
    """Iterates ``(uint8 images [B, S, S], float labels [B, L])`` tensors, prefetching ahead.

    A background thread gathers the next batches (fancy indexing of the memory map, pinned
    when feeding a GPU) while the device works on the current one.
    """

    def __init__(
        self,
        data: ArrayData,
        batch_size: int,
        *,
        order: np.ndarray,
        device: torch.device,
        prefetch: int = 3,
        merge_single: bool = False,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.order = order
        self.device = device
        self.prefetch = prefetch
        self.pin = device.type == "cuda"
        self.merge_single = merge_single

    def batches(self) -> list[np.ndarray]:
        """The index batches, in order. With ``merge_single`` a last batch of one image joins
        the batch before it: batch norm cannot normalise a single value per channel."""
        b = self.batch_size
        batches = [self.order[i : i + b] for i in range(0, len(self.order), b)]
        if self.merge_single and len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2:] = [np.concatenate(batches[-2:])]
        return batches

    def __len__(self) -> int:
        return len(self.batches())

    def _gather(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # Sorted reads are much faster on a memory map; restore the shuffled order after.
        rows = self.data.rows[idx]
        sort = np.argsort(rows, kind="stable")
        images = np.empty((len(idx), *self.data.images.shape[1:]), dtype=np.uint8)
        images[sort] = self.data.images[rows[sort]]
        x = torch.from_numpy(images)
        y = torch.from_numpy(np.asarray(self.data.labels[idx], dtype=np.float32))
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self.batches()
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for idx in batches:
                    if stop.is_set():
                        return
                    q.put(self._gather(idx))
                q.put(None)
            except BaseException as exc:  # surface errors in the consumer
                q.put(exc)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                x, y = item
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)
