"""The learning-rate range test (``cxrzoo train MODEL --find-lr``).

A model fresh from its initialisation is trained on the training split with a learning rate
that grows exponentially from ``start`` to ``end`` over ``steps`` optimizer steps (Smith,
"Cyclical learning rates", 2017; the fastai and torch-lr-finder form). The loss is smoothed
with a debiased exponential moving average; the sweep stops early once the smoothed loss
exceeds ``diverge`` times its minimum. The suggestion is the learning rate where the smoothed
loss falls fastest against log learning rate (the steepest descent), a point inside the sweep.
Nothing is saved to the store: the curve goes to a CSV and a plot in the run's folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrzoo.errors import DataError, UserError

Echo = Callable[[str], None]


@dataclass
class LRFinderResult:
    """The sweep: every step's learning rate, loss and smoothed loss, and the suggestion."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float
    start: float
    end: float
    stopped_early: bool
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suggested_lr": self.suggested_lr,
            "start": self.start,
            "end": self.end,
            "steps": len(self.lrs),
            "stopped_early": self.stopped_early,
            "files": {k: str(v) for k, v in self.files.items()},
        }


def steepest_descent(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """The learning rate where ``smoothed`` loss falls fastest against log learning rate, ignoring
    the first tenth of the points (the moving average still rests on few losses there) and the
    last twentieth (divergence)."""
    lrs, smoothed = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    n = len(lrs)
    if n < 3:
        return float(lrs[0]) if n else math.nan
    lo = min(max(10, n // 10), max(0, n - 3))
    hi = max(lo + 2, n - max(5, n // 20))
    grad = np.gradient(smoothed[lo:hi], np.log(lrs[lo:hi]))
    return float(lrs[lo + int(np.argmin(grad))])


def find_lr(
    model_name: str,
    *,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 200,
    smooth: float = 0.98,
    diverge: float = 4.0,
    echo: Echo = print,
    **options: Any,
) -> LRFinderResult:
    """Run the range test for ``model_name``; ``options`` are those of
    :func:`~cxrzoo.training.spec.resolve_run` (the data, recipe and config of ``cxrzoo train``).
    Writes ``lr_find.csv`` and ``lr_find.png`` in the run's folder; saves no model."""
    from cxrzoo import store
    from cxrzoo.data.arrays import arrays_for
    from cxrzoo.data.spec import load_splits
    from cxrzoo.nn.losses import masked_bce
    from cxrzoo.training.loader import BatchLoader, epoch_order
    from cxrzoo.training.run import _Context, known_prevalence
    from cxrzoo.training.spec import resolve_run
    from cxrzoo.training.trainer import positive_weights

    if not (0 < start < end <= 10):
        raise UserError(f"--find-lr: need 0 < start < end <= 10, got start={start:g}, end={end:g}")
    if steps < 10:
        raise UserError(f"--find-lr-steps {steps}: expected at least 10")
    spec = resolve_run(model_name, save=False, **{**options, "resume": False})
    if not spec.model_class.trains_itself:
        raise UserError(
            f"--find-lr: {model_name} is not trained by gradient descent itself; test its members"
        )
    for note in spec.notes:
        echo(note)
    splits = load_splits(spec.data, echo=echo)
    train = arrays_for(splits.train, spec.config, echo=echo, progress=spec.progress)
    if len(train) < 2:
        raise DataError(f"{len(train)} training image(s): the learning-rate range test needs at least 2")
    prevalence = known_prevalence(train.labels)
    config = spec.config.for_data(dict(zip(spec.config.labels, prevalence.tolist(), strict=True)))
    torch.manual_seed(spec.seed)
    model = spec.model_class.build_for_training(config, _Context(spec, echo))
    r = spec.recipe
    dev = torch.device(spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev).train()
    prep = model.preprocessing(augment=r.augment)
    pos_weight = (
        positive_weights(train.labels, r.max_pos_weight).to(dev) if r.loss == "weighted_bce" else None
    )
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": other, "weight_decay": 0.0}]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}.get(r.optimizer)
    optimizer = (
        opt_cls(groups, lr=start)
        if opt_cls is not None
        else torch.optim.SGD(groups, lr=start, momentum=0.9, nesterov=True)
    )
    echo(
        f"Learning-rate range test of {model_name} on {len(train)} training images at {config.image_size} px: "
        f"{steps} steps from {start:g} to {end:g} ({r.optimizer}, batch {r.batch_size})"
    )
    factor = (end / start) ** (1 / (steps - 1))
    aug = torch.Generator().manual_seed(spec.seed)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    epoch = 0
    while len(lrs) < steps and not stopped:
        order = epoch_order(len(train), seed=spec.seed, epoch=epoch, shuffle=True)
        for x, y in BatchLoader(train, r.batch_size, order=order, device=dev, merge_single=True):
            lr = start * factor ** len(lrs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = prep.tensor(x, train=True, generator=aug)
            loss = masked_bce(model(x).float(), y, pos_weight)
            aux = model.auxiliary_loss(y)
            if aux is not None:
                loss = loss + aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if r.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
            optimizer.step()
            value = float(loss.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.inf)
                stopped = True
                break
            avg = smooth * avg + (1 - smooth) * value
            debiased = avg / (1 - smooth ** len(lrs))
            smoothed.append(debiased)
            best = min(best, debiased)
            if len(lrs) > 10 and debiased > diverge * best:
                stopped = True
                break
            if len(lrs) >= steps:
                break
        epoch += 1
    finite = [i for i, s in enumerate(smoothed) if math.isfinite(s)]
    suggested = steepest_descent(np.asarray(lrs)[finite], np.asarray(smoothed)[finite])
    result = LRFinderResult(lrs, losses, smoothed, suggested, start, end, stopped)
    folder = store.run_path(spec.name)
    result.files = _write(result, folder, model_name)
    stop = f", stopped at {lrs[-1]:.3g} where the loss diverged" if stopped else ""
    echo(f"Suggested learning rate: {suggested:.3g} (steepest descent of the smoothed loss{stop})")
    echo(f"Loss curve: {result.files['plot']} (values in {result.files['csv']}); no model was saved")
    return result


def _write(result: LRFinderResult, folder: Path, model_name: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cxrzoo.outputs import replacing, write_text

    csv_path, plot_path = folder / "lr_find.csv", folder / "lr_find.png"
    rows = ["step,lr,loss,smoothed_loss"]
    rows += [
        f"{i + 1},{lr:.6g},{loss:.6g},{s:.6g}"
        for i, (lr, loss, s) in enumerate(zip(result.lrs, result.losses, result.smoothed, strict=True))
    ]
    write_text(csv_path, "\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="#bbbbbb", lw=0.8, label="loss")
    shown = [s if math.isfinite(s) else np.nan for s in result.smoothed]
    ax.plot(result.lrs, shown, color="#4c72b0", label="smoothed loss")
    ax.axvline(result.suggested_lr, color="#dd8452", ls="--", label=f"suggested {result.suggested_lr:.2g}")
    ax.set_xscale("log")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"Learning-rate range test: {model_name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with replacing(plot_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return {"csv": csv_path, "plot": plot_path}


__all__ = ["LRFinderResult", "find_lr", "steepest_descent"]
