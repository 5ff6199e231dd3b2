"""The training loop: weighted BCE, AdamW/Adam, schedules, mixed precision, gradient
accumulation, early stopping on validation AUROC, best-weight keeping, resumable
checkpoints and DistributedDataParallel.

Every epoch reseeds its randomness from ``(seed, epoch)`` (shuffling, augmentation,
dropout, memory replay), so a run resumed from an epoch checkpoint continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn

from cxrzoo.errors import DataError, UserError
from cxrzoo.model import ZooModel
from cxrzoo.nn.losses import masked_bce
from cxrzoo.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cxrzoo.training.distributed import DistContext
from cxrzoo.training.loader import ArrayData, BatchLoader, epoch_order
from cxrzoo.training.recipes import Recipe

LOG_FIELDS = ["epoch", "train_loss", "val_loss", "val_macro_auroc", "lr", "seconds", "best"]


class ResumeError(UserError, RuntimeError):
    pass


def history_csv(history: list[dict[str, Any]]) -> bytes:
    """The per-epoch training log as CSV."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in LOG_FIELDS})
    return buf.getvalue().encode()


def positive_weights(labels: np.ndarray, max_weight: float) -> torch.Tensor:
    """Inverse-frequency weight of the positive term per class, bounded to ``[1, max_weight]``.

    Counted over the known entries only: an unknown label (NaN) is neither positive nor negative.
    """
    labels = np.asarray(labels, dtype=np.float64)
    known = ~np.isnan(labels)
    pos = np.where(known, labels, 0).sum(0)
    neg = known.sum(0) - pos
    weight = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(weight, 1.0, max_weight), dtype=torch.float32)


def macro_auroc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean AUROC over the classes that have both positives and negatives."""
    from cxrzoo.metrics import evaluate_predictions

    names = [str(i) for i in range(labels.shape[1])]
    return evaluate_predictions(labels, probs, names, metrics=["auroc"])["macro_auroc"]


@dataclass
class TrainResult:
    best_score: float | None
    best_epoch: int
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend a batch with a shuffled copy of itself: ``lam * a + (1 - lam) * b`` for images and
    labels, ``lam ~ Beta(alpha, alpha)``. A label unknown (NaN) in either image stays unknown."""
    lam = float(rng.beta(alpha, alpha))
    partner = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    y = y.float()
    return lam * x + (1 - lam) * x[partner], lam * y + (1 - lam) * y[partner]


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


class Trainer:
    """Trains one :class:`ZooModel` on preprocessed arrays, validating every epoch."""

    def __init__(
        self,
        model: ZooModel,
        recipe: Recipe,
        train: ArrayData,
        val: ArrayData,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        run_dir: str | Path | None = None,
        run_config: dict[str, Any] | None = None,
        progress: bool = True,
        echo: Callable[[str], None] = print,
        dist: DistContext | None = None,
        backbone: Collection[str] = (),
    ) -> None:
        self.model = model
        #: Parameter names of the backbone an --init loaded: frozen by ``recipe.freeze_backbone``,
        #: trained at ``recipe.backbone_lr`` times the learning rate otherwise.
        self.backbone = frozenset(backbone)
        self.recipe = recipe
        self.train_data, self.val_data = train, val
        self.device = torch.device(device)
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir else None
        self.run_config = run_config or {}
        self.progress = progress
        self.dist = dist or DistContext()
        self.echo = echo if self.dist.is_main else (lambda _msg: None)
        if len(train) < 2:
            raise DataError(
                f"{len(train)} training image(s) left (missing or unreadable?): training needs at "
                f"least 2; use more data or a larger --fraction"
            )
        if len(val) == 0:
            raise DataError(
                "No validation images: early stopping and calibration need some; use more data or a "
                "larger --fraction"
            )

        self.prep = model.preprocessing(augment=recipe.augment)
        self.model.to(self.device)
        if self.device.type == "cuda" and recipe.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if self.dist.world > 1:
            self.net = self.dist.wrap(self.model)
        if recipe.compile:
            self.net = torch.compile(self.net)
        self.pos_weight = (
            positive_weights(train.labels, recipe.max_pos_weight).to(self.device)
            if recipe.loss == "weighted_bce"
            else None
        )
        self.optimizer = self._make_optimizer()
        self.optimizer_steps = 0
        # An exponential moving average of the weights is what gets validated and kept, when on.
        self.ema = ModelEmaV3(self.model, decay=recipe.ema, use_warmup=True) if recipe.ema else None
        order = epoch_order(
            len(train), seed=seed, epoch=0, shuffle=True, rank=self.dist.rank, world=self.dist.world
        )
        self.steps_per_epoch = math.ceil(math.ceil(len(order) / recipe.batch_size) / recipe.accumulate)
        self.scheduler = self._make_scheduler()
        self.scaler = torch.amp.GradScaler(
            "cuda",
            enabled=self.device.type == "cuda" and recipe.amp and not torch.cuda.is_bf16_supported(),
        )

    # -- construction -------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        r = self.recipe
        buckets: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            in_backbone = name in self.backbone
            if in_backbone and r.freeze_backbone:
                p.requires_grad_(False)
            if p.requires_grad:
                # Norm scales and biases are not regularised.
                buckets.setdefault((in_backbone, p.ndim > 1), []).append(p)
        if not buckets:
            raise UserError("Nothing to train: every parameter is frozen (freeze_backbone with no head?)")
        # The two groups of a run without --init come first and always exist, in the order
        # checkpoints of earlier runs hold them; backbone groups follow when there are any.
        keys = [(False, True), (False, False), *(k for k in ((True, True), (True, False)) if k in buckets)]
        groups = [
            {
                "params": buckets.get(key, []),
                "weight_decay": r.weight_decay if key[1] else 0.0,
                "lr": r.lr * (r.backbone_lr if key[0] else 1.0),
            }
            for key in keys
        ]
        if r.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=r.lr)
        if r.optimizer == "adam":
            # The founding report's Adam: L2 penalty in the gradient, as torch.optim.Adam does.
            return torch.optim.Adam(groups, lr=r.lr)
        return torch.optim.SGD(groups, lr=r.lr, momentum=0.9, nesterov=True)

    def _make_scheduler(self) -> Any:
        r = self.recipe
        total = max(1, r.epochs * self.steps_per_epoch)
        if r.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer,
                max_lr=[g["lr"] for g in self.optimizer.param_groups],
                total_steps=total,
                pct_start=r.warmup,
                anneal_strategy="cos",
            )
        if r.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=total, eta_min=r.lr * 1e-3
            )
        if r.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=r.plateau_factor, patience=r.plateau_patience
            )
        return None

    # -- state ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoint.safetensors" if self.run_dir else None

    @property
    def log_path(self) -> Path | None:
        return self.run_dir / "train_log.csv" if self.run_dir else None

    def _save(self, epoch: int, best: dict[str, torch.Tensor] | None, state: dict[str, Any]) -> None:
        if not self.dist.is_main or self.checkpoint_path is None:
            return
        extra = {
            "epoch": epoch,
            "run_config": self.run_config,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "optimizer_steps": self.optimizer_steps,
            **state,
        }
        save_checkpoint(
            self.checkpoint_path,
            model=self.model.state_dict(),
            best=best,
            optimizer=self.optimizer.state_dict(),
            extra=json.loads(json.dumps(extra, default=float)),
            ema=self.ema.module.state_dict() if self.ema is not None else None,
        )

    def _resume(self) -> tuple[int, dict[str, torch.Tensor] | None, dict[str, Any]]:
        path = self.checkpoint_path
        if path is None or not path.is_file():
            raise ResumeError(f"Nothing to resume: no checkpoint at {path}")
        ckpt = load_checkpoint(path)
        extra = ckpt["extra"]
        saved = extra.get("run_config", {})
        if saved != json.loads(json.dumps(self.run_config, default=float)):
            changed = sorted(
                k for k in set(saved) | set(self.run_config) if saved.get(k) != self.run_config.get(k)
            )
            raise ResumeError(
                f"{path} was written by a run with different settings ({', '.join(changed)}); "
                f"resume with the same options, or start afresh without --resume"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and extra.get("scheduler"):
                self.scheduler.load_state_dict(extra["scheduler"])
            if self.scaler.is_enabled() and extra.get("scaler"):
                self.scaler.load_state_dict(extra["scaler"])
            if self.ema is not None and ckpt["ema"] is not None:
                self.ema.module.load_state_dict(ckpt["ema"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            from cxrzoo.errors import one_line

            raise CheckpointError(
                f"{path} does not fit this run's model or optimizer ({one_line(exc, 200)}); start afresh "
                f"without --resume"
            ) from None
        self.optimizer_steps = int(extra.get("optimizer_steps", 0))
        return int(extra["epoch"]) + 1, ckpt["best"], extra

    def _write_log(self, history: list[dict[str, Any]]) -> None:
        if not self.dist.is_main or self.log_path is None:
            return
        from cxrzoo.store import atomic_write_bytes

        atomic_write_bytes(self.log_path, history_csv(history))

    # -- the loop -------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> float:
        r = self.recipe
        torch.manual_seed(self.seed * 100_003 + epoch)
        aug = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 1)
        order = epoch_order(
            len(self.train_data),
            seed=self.seed,
            epoch=epoch,
            shuffle=True,
            rank=self.dist.rank,
            world=self.dist.world,
        )
        loader = BatchLoader(
            self.train_data, r.batch_size, order=order, device=self.device, merge_single=True
        )
        self.net.train()
        # The running loss stays on the device: reading it every step would make the CPU wait
        # for the GPU each step instead of queueing the next batch's work.
        total, count = torch.zeros((), device=self.device), 0
        bar = _progress(loader, f"epoch {epoch + 1}/{r.epochs}", enabled=self.progress and self.dist.is_main)
        self.optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        # Mixup weights and partners come from their own seeded stream, so a resumed run
        # blends the same pairs as an uninterrupted one.
        mix = np.random.default_rng([self.seed, epoch, 0x6D6978]) if r.mixup > 0 else None
        for step, (x, y) in enumerate(bar):
            x = self.prep.tensor(x, train=True, generator=aug)
            if mix is not None:
                x, y = mixup_batch(x, y, mix, r.mixup)
            if self.device.type == "cuda" and r.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            last = step + 1 == n_batches
            sync = (step + 1) % r.accumulate == 0 or last
            ctx = self.dist.no_sync(self.net) if not sync else contextlib.nullcontext()
            with ctx:
                with autocast_for(self.device, r.amp):
                    logits = self.net(x)
                loss = masked_bce(logits.float(), y, self.pos_weight)
                aux = self.model.auxiliary_loss(y)
                if aux is not None:
                    loss = loss + aux
                self.scaler.scale(loss / r.accumulate).backward()
            if sync:
                if r.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), r.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.optimizer_steps += 1
                if self.ema is not None:
                    self.ema.update(self.model, step=self.optimizer_steps)
                if self.scheduler is not None and r.schedule != "plateau":
                    # OneCycleLR refuses to step past its total; early-stopped runs never reach it.
                    if r.schedule != "onecycle" or self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
                        self.scheduler.step()
            total += loss.detach().float() * len(y)
            count += len(y)
            if hasattr(bar, "set_postfix") and (step % 20 == 0 or last):
                bar.set_postfix(loss=f"{float(total) / count:.4f}")
        return float(total) / max(count, 1)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and kept: the moving average when on."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> tuple[np.ndarray, float | None, float]:
        # Validation predicts through the inference layer, exactly as evaluation and predict do.
        from cxrzoo.inference import predict_arrays

        probs = predict_arrays(
            self.eval_model,
            self.val_data.images,
            rows=self.val_data.rows,
            device=self.device,
            batch_size=self.recipe.eval_batch_size,
            amp=self.recipe.amp,
        )
        labels = self.val_data.labels.astype(np.float32)
        with torch.no_grad():
            p = torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6)
            val_loss = float(masked_bce(torch.logit(p), torch.from_numpy(labels)))
        return probs, macro_auroc(labels, probs), val_loss

    def fit(self, *, resume: bool = False) -> TrainResult:
        r = self.recipe
        start, best_state, state = 0, None, {}
        if resume:
            start, best_state, state = self._resume()
            self.echo(f"Resuming from epoch {start + 1} ({self.checkpoint_path})")
        history: list[dict[str, Any]] = state.get("history", [])
        best = state.get("best_score")
        best_epoch = state.get("best_epoch", -1)
        bad_epochs = state.get("bad_epochs", 0)
        stopped_early = state.get("stopped_early", False)
        for epoch in range(start, r.epochs):
            if stopped_early:
                break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            _, score, val_loss = self.validate()
            if self.scheduler is not None and r.schedule == "plateau":
                self.scheduler.step(score if score is not None else 0.0)
            improved = score is not None and (best is None or score > best + 1e-4)
            keep = improved or best_state is None or r.select == "last"
            if keep:
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()
                }
            if r.select == "last":
                best, best_epoch, bad_epochs = score, epoch, 0  # "best" is simply the kept epoch
            elif improved:
                best, best_epoch, bad_epochs = score, epoch, 0
            else:
                bad_epochs += 1
            row = {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 6),
                "val_loss": round(val_loss, 6),
                "val_macro_auroc": None if score is None else round(score, 6),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 2),
                "best": bool(improved),
            }
            history.append(row)
            if self.dist.world > 1:
                self.dist.check_in_sync(self.model)
                self.echo(f"DDP: parameters identical on {self.dist.world} ranks")
            auc = "undefined" if score is None else f"{score:.4f}"
            self.echo(
                f"epoch {epoch + 1:>3}/{r.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                f"val macro AUROC {auc}{'  *' if improved else ''}  ({row['seconds']:.1f}s)"
            )
            if bad_epochs >= r.patience and epoch + 1 >= r.min_epochs:
                stopped_early = True
                self.echo(f"Early stop: no better validation AUROC for {r.patience} epochs")
            self._save(
                epoch,
                best_state,
                {
                    "history": history,
                    "best_score": best,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                },
            )
            self._write_log(history)
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return TrainResult(best, best_epoch + 1, len(history), history, stopped_early)


def _progress(iterable: Any, desc: str, *, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None)
