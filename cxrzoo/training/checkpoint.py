"""Resumable training checkpoints in safetensors: tensors in the file, the rest as JSON metadata.

Written atomically (temporary file, then rename), so a run killed mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cxrzoo.errors import DataError


class CheckpointError(DataError, RuntimeError):
    pass


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        plain = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[key] = value
        rest["state"][str(pid)] = plain
    return tensors, rest


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in rest["state"].items()}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor] | None,
    optimizer: dict[str, Any],
    extra: dict[str, Any],
    ema: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write model, best-so-far and averaged weights, optimizer and trainer state into one file."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.items()}
    for prefix, state in (("best", best), ("ema", ema)):
        if state is not None:
            tensors.update({f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in state.items()})
    opt_tensors, opt_rest = _split_optimizer(optimizer)
    tensors.update(opt_tensors)
    metadata = {"optimizer": json.dumps(opt_rest), "trainer": json.dumps(extra)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The pieces written by :func:`save_checkpoint`."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if "trainer" not in metadata or "optimizer" not in metadata:
        raise CheckpointError(f"{path}: not a cxrzoo training checkpoint")
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
    ema = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
    opt = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    try:
        optimizer = _join_optimizer(opt, json.loads(metadata["optimizer"]))
        extra = json.loads(metadata["trainer"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: malformed checkpoint metadata ({type(exc).__name__}: {exc})"
        ) from None
    _check_trainer_state(extra, path)
    return {"model": model, "best": best or None, "ema": ema or None, "optimizer": optimizer, "extra": extra}


#: Fields of a checkpoint's trainer state and the types they must have.
_TRAINER_FIELDS: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "optimizer_steps": (int,),
    "best_epoch": (int,),
    "bad_epochs": (int,),
    "best_score": (int, float, type(None)),
    "stopped_early": (bool,),
    "history": (list,),
    "run_config": (dict,),
}


def _check_trainer_state(extra: Any, path: Path) -> None:
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: malformed checkpoint metadata (trainer state is not an object)")
    if "epoch" not in extra:
        raise CheckpointError(f"{path}: malformed checkpoint metadata (no epoch recorded)")
    for key, kinds in _TRAINER_FIELDS.items():
        if key not in extra:
            continue
        value = extra[key]
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise CheckpointError(
                f"{path}: malformed checkpoint metadata ({key} is {value!r:.40}, expected {expected})"
            )
    if extra["epoch"] < 0:
        raise CheckpointError(f"{path}: malformed checkpoint metadata (epoch {extra['epoch']} < 0)")
