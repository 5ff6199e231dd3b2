"""Model folders and the local model store.

A trained model is a folder holding ``model.safetensors`` (the weights), ``config.json``
(architecture, config, sha256 of the weights, training facts, metrics, versions) and
``README.md`` (the model card). Nothing is pickled. Folders are written into a temporary
sibling first and swapped in, so a reader never sees a half-written model.

The store keeps such folders by name under ``$CXRZOO_HOME/models`` (default
``~/.cache/cxrzoo/models``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cxrzoo.errors import DataError, UserError
from cxrzoo.fsio import atomic_folder, atomic_write_bytes, check_name, entry_lock, safe_join

WEIGHTS_NAME = "model.safetensors"
# Metadata that describes where a loaded model lives, not the model: never saved.
_RUNTIME_METADATA = {"source", "folder", "name"}
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT = "cxrzoo-model"
FORMAT_VERSION = 1
#: Keys of config.json covered by ``config_sha256``: everything that decides what the model
#: computes and what its outputs mean (labels, thresholds, preprocessing, weights' digest).
SEALED_KEYS = ("format", "format_version", "architecture", "config", "weights")
#: Keys sealed too when present (absent from models saved before they existed, whose digest
#: must not change): the out-of-distribution gate and the threshold guarantees.
OPTIONAL_SEALED_KEYS = ("ood", "guarantees")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARCHITECTURE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class StoreError(DataError, RuntimeError):
    """A model folder that is missing, malformed, or does not match its weights."""


class IntegrityError(StoreError):
    """Weights or config whose sha256 differs from the one recorded in config.json."""


class ModelNotFoundError(UserError, StoreError):
    """A store name with no trained model behind it."""


def home() -> Path:
    """The cxrzoo cache root: ``$CXRZOO_HOME`` or ``~/.cache/cxrzoo``."""
    return Path(os.environ.get("CXRZOO_HOME") or Path.home() / ".cache" / "cxrzoo").expanduser()


def models_dir() -> Path:
    return home() / "models"


def model_path(name: str) -> Path:
    """The store folder of ``name``; refuses a name that is not a plain entry name."""
    return safe_join(models_dir(), check_name(name, what="store name"))


def run_path(name: str) -> Path:
    """The folder of training run ``name`` (checkpoints, log) under ``$CXRZOO_HOME/runs``."""
    return safe_join(home() / "runs", check_name(name, what="run name"))


def entry_lock_for(name: str, *, wait: float | None = 0):
    """The lock of store entry ``name``: held by whoever trains, saves or pulls into it."""
    return entry_lock(model_path(name), wait=wait, what=f"Store entry {name!r}")


def list_trained() -> list[str]:
    """Names of the trained models in the store."""
    root = models_dir()
    if not root.is_dir():
        return []
    try:
        entries = list(root.iterdir())
    except OSError as exc:
        raise StoreError(f"Cannot read the store {root}: {exc.strerror or exc}") from None
    return sorted(p.name for p in entries if not p.name.startswith(".") and (p / CONFIG_NAME).is_file())


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("cxrzoo", "torch", "timm", "safetensors"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def config_digest(doc: dict[str, Any]) -> str:
    """sha256 of the sealed keys of a config.json document, in canonical JSON."""
    sealed = {k: doc.get(k) for k in SEALED_KEYS}
    sealed.update({k: doc[k] for k in OPTIONAL_SEALED_KEYS if k in doc})
    text = json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``config_sha256`` recorded; call after any change to a sealed key."""
    doc["config_sha256"] = config_digest(doc)
    return doc


def state_to_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def write_model_files(model: Any, folder: Path, *, card: bool = True) -> dict[str, Any]:
    """Write the model's files into an existing, empty ``folder``; returns config.json."""
    weights = folder / WEIGHTS_NAME
    save_file(state_to_save(model), str(weights), metadata={"format": "pt"})
    config_doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture,
        "config": model.config.to_dict(),
        "weights": {
            "file": WEIGHTS_NAME,
            "sha256": sha256_file(weights),
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        **{k: v for k, v in model.metadata.items() if k not in _RUNTIME_METADATA and k != "ood"},
        "versions": _versions(),
        "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    detector = getattr(model, "ood_detector", None)
    if detector is not None:
        from cxrzoo.ood import OOD_FILE

        save_file(detector.tensors(), str(folder / OOD_FILE), metadata={"format": "pt"})
        config_doc["ood"] = {**detector.record, "file": OOD_FILE, "sha256": sha256_file(folder / OOD_FILE)}
    # Round-trip through JSON first so the digest covers exactly what is written.
    config_doc = seal(json.loads(json.dumps(config_doc, default=_json_default)))
    write_config(folder, config_doc)
    if card:
        from cxrzoo.cards import render_card

        (folder / CARD_NAME).write_text(render_card(model, config_doc))
    return config_doc


def write_config(folder: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write config.json atomically (used after metadata updates such as held-out metrics)."""
    atomic_write_bytes(Path(folder) / CONFIG_NAME, (json.dumps(doc, indent=2) + "\n").encode())


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_folder(model: Any, folder: str | os.PathLike[str], *, card: bool = True) -> Path:
    """Save ``model`` as a model folder, atomically replacing any folder already there."""
    if not model.architecture:
        raise StoreError(
            f"{type(model).__name__} has no registered architecture name; "
            f"build it with cxrzoo.create_model(name)"
        )
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        write_model_files(model, tmp, card=card)
    return folder


def save(
    model: Any,
    name: str | None = None,
    *,
    extra_files: dict[str, bytes] | None = None,
    locked: bool = False,
) -> Path:
    """Save ``model`` into the store under ``name`` (default: its architecture).

    Takes the entry's lock unless the caller holds it already (``locked=True``): a second
    writer of the same name fails with :class:`~cxrzoo.errors.LockedError` instead of racing.
    """
    name = model.architecture if name is None else name
    target = model_path(name)
    for fname in extra_files or {}:
        check_name(fname, what="file name")
    if locked:
        _save_into(model, target, extra_files)
    else:
        with entry_lock_for(name):
            _save_into(model, target, extra_files)
    return target


def _save_into(model: Any, target: Path, extra_files: dict[str, bytes] | None) -> None:
    with atomic_folder(target) as tmp:
        write_model_files(model, tmp)
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)


def read_config(folder: str | os.PathLike[str], *, check: bool = True) -> dict[str, Any]:
    """config.json of a model folder, its structure validated and its digest verified.

    ``check=False`` skips the digest (for tools that inspect a damaged folder).
    """
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise StoreError(f"{folder} is not a cxrzoo model folder: {CONFIG_NAME} is missing")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise StoreError(f"{path}: unreadable ({exc.strerror or exc})") from None
    validate_config_doc(doc, where=str(path), check_digest=check)
    return doc


def _bad(where: str, what: str) -> StoreError:
    return StoreError(f"{where}: {what}")


def validate_config_doc(doc: Any, *, where: str = CONFIG_NAME, check_digest: bool = True) -> None:
    """Refuse a config.json whose structure or values do not make sense, or that was changed.

    Checks the keys and their types, the architecture and weights file names (plain names:
    nothing joined to a path may leave the folder), the weights' sha256 format and, last, the
    ``config_sha256`` digest over :data:`SEALED_KEYS`. The meaning of the model config itself
    (labels in the vocabulary, thresholds in [0, 1] …) is checked when the config class is
    built from it (:func:`build_from_config`).
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(where, f'not a cxrzoo model config (no "format": "{FORMAT}")')
    version = doc.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(where, f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise _bad(where, f"written by a newer cxrzoo (format {version}); upgrade cxrzoo")
    for key, kind in (("architecture", str), ("config", dict), ("weights", dict)):
        if key not in doc:
            raise _bad(where, f"missing key {key!r}")
        if not isinstance(doc[key], kind):
            raise _bad(
                where, f"{key!r} must be {'text' if kind is str else 'an object'}, got {doc[key]!r:.80}"
            )
    arch = doc["architecture"]
    if not _ARCHITECTURE.fullmatch(arch) or ".." in arch:
        raise _bad(where, f"architecture {arch!r:.80} is not a registered model name")
    weights = doc["weights"]
    file = weights.get("file", WEIGHTS_NAME)
    if (
        not isinstance(file, str)
        or Path(file).name != file
        or not file.endswith(".safetensors")
        or file.startswith(".")
    ):
        raise _bad(
            where,
            f"weights.file must be a safetensors file name beside {CONFIG_NAME}, got {file!r:.80} "
            f"(only safetensors weights are loaded, never pickles)",
        )
    sha = weights.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise IntegrityError(f"{where} records no valid sha256 for {file} (got {sha!r:.80})")
    for name, sha in sidecar_files(doc).items():
        if Path(name).name != name or not name.endswith(".safetensors") or name.startswith("."):
            raise _bad(where, f"a file beside the weights must be a safetensors file name, got {name!r:.80}")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise IntegrityError(f"{where} records no valid sha256 for {name} (got {sha!r:.80})")
    params = weights.get("parameters")
    if params is not None and (not isinstance(params, int) or isinstance(params, bool) or params < 0):
        raise _bad(where, f"weights.parameters must be a non-negative integer, got {params!r:.80}")
    for key in ("metrics", "training", "calibration"):
        if key in doc and doc[key] is not None and not isinstance(doc[key], dict):
            raise _bad(where, f"{key!r} must be an object, got {doc[key]!r:.80}")
    if check_digest:
        recorded = doc.get("config_sha256")
        if not isinstance(recorded, str) or not _SHA256.fullmatch(recorded):
            raise IntegrityError(
                f"{where} records no config_sha256; it was not saved by cxrzoo {FORMAT_VERSION}.x or was "
                f"edited. Refusing to load it"
            )
        actual = config_digest(doc)
        if actual != recorded:
            raise IntegrityError(
                f"{where}: the model's config (architecture, labels, thresholds, preprocessing or weights "
                f"entry) was changed after saving: config_sha256 {actual[:12]}… does not match "
                f"{recorded[:12]}… recorded. Refusing to load it"
            )


def sidecar_files(doc: dict[str, Any]) -> dict[str, Any]:
    """``{file name: recorded sha256}`` of the files config.json names beside the weights
    (the out-of-distribution gate); saved, verified, pushed and pulled with them."""
    ood = doc.get("ood")
    if isinstance(ood, dict):
        if not isinstance(ood.get("file"), str):
            raise StoreError(f"{CONFIG_NAME}: 'ood' names no file")
        return {ood["file"]: ood.get("sha256")}
    if ood is not None:
        raise StoreError(f"{CONFIG_NAME}: 'ood' must be an object, got {ood!r:.80}")
    return {}


def load_ood(folder: Path, doc: dict[str, Any], *, verify: bool = True) -> Any:
    """The out-of-distribution gate a model folder holds, or None."""
    record = doc.get("ood")
    if not isinstance(record, dict):
        return None
    from cxrzoo.ood import OodDetector

    path = folder / record["file"]
    if not path.is_file():
        raise StoreError(f"{folder}: {record['file']} (the out-of-distribution gate) is missing")
    if verify:
        verify_weights(path, record.get("sha256"), str(path))
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise StoreError(f"{path}: not a readable safetensors file ({exc})") from None
    detector = OodDetector.from_tensors(tensors, record, source=str(path))
    detector.record = {k: v for k, v in record.items() if k not in ("file", "sha256")}
    return detector


def build_from_config(doc: dict[str, Any], *, source: str = "config.json") -> Any:
    """An untrained model as described by a config.json document.

    Never downloads or reads initial weights: the stored weights replace them anyway, so every
    weight source field of the config (:func:`cxrzoo.config.weight_source`) is cleared first.
    """
    from cxrzoo.config import ConfigError
    from cxrzoo.plugins import models

    cls = models.get(doc["architecture"])
    values = cls.config_class.clear_weight_source(dict(doc["config"]))
    try:
        config = cls.config_class.from_dict(values, source=source)
    except ConfigError as exc:
        raise StoreError(str(exc) if source in str(exc) else f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{source}: config does not fit {cls.__name__}: {exc}") from None
    model = cls(config)
    model.architecture = doc["architecture"]
    return model


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model``: same tensor names, shapes and dtypes; finite values."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensor(s) {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if extra:
        problems.append(f"unexpected tensor(s) {extra[:5]}" + (" ..." if len(extra) > 5 else ""))
    for key in sorted(set(expected) & set(state)):
        want, got = expected[key], state[key]
        if tuple(want.shape) != tuple(got.shape):
            problems.append(
                f"tensor {key!r} has shape {tuple(got.shape)} in the weights but "
                f"{tuple(want.shape)} in the model built from the config"
            )
        elif want.dtype != got.dtype:
            problems.append(f"tensor {key!r} is {got.dtype} in the weights but {want.dtype} in the model")
        elif got.is_floating_point() and not bool(torch.isfinite(got).all()):
            problems.append(f"tensor {key!r} holds NaN or infinite values")
        if len(problems) >= 5:
            break
    if problems:
        raise StoreError(f"{source} does not match its config: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_folder(
    folder: str | os.PathLike[str], *, device: str | torch.device = "cpu", verify: bool = True
) -> Any:
    """Rebuild a model from a folder: config first, then the weights, strictly."""
    folder = Path(folder)
    doc = read_config(folder, check=verify)
    weights = folder / doc["weights"].get("file", WEIGHTS_NAME)
    if not weights.is_file():
        raise StoreError(f"{folder}: weights file {weights.name} is missing")
    if verify:
        verify_weights(weights, doc["weights"].get("sha256"), str(weights))
    model = build_from_config(doc, source=str(folder / CONFIG_NAME))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise StoreError(f"{weights}: not a readable safetensors file ({exc})") from None
    load_state_strict(model, state, source=str(weights))
    model.ood_detector = load_ood(folder, doc, verify=verify)
    model.metadata = {
        k: v
        for k, v in doc.items()
        if k
        not in {
            "format",
            "format_version",
            "architecture",
            "config",
            "weights",
            "versions",
            "saved",
            "config_sha256",
            "ood",
        }
    }
    source_file = folder / "source.json"
    if source_file.is_file():
        try:
            model.metadata["source"] = json.loads(source_file.read_text())
        except (OSError, ValueError):
            model.metadata["source"] = {"error": "source.json unreadable"}
    model.metadata["folder"] = str(folder)
    model.metadata.setdefault("name", folder.name)
    return model.to(device).eval()


def resolve(name_or_folder: str | os.PathLike[str]) -> Path:
    """The folder of a store name or a path; a clear error when neither exists."""
    text = str(name_or_folder)
    path = Path(text).expanduser()
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return path
    if os.sep not in text and "/" not in text and not text.startswith(".") and text.strip():
        candidate = model_path(text)
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    if path.is_dir():
        raise StoreError(f"{path} is not a cxrzoo model folder: {CONFIG_NAME} is missing")
    from cxrzoo.plugins import models

    trained = list_trained()
    msg = f"No trained model {text!r} in the store ({models_dir()})."
    close = difflib.get_close_matches(text, trained, n=3)
    if close:
        msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    if text in models:
        msg += f" Train it with 'cxrzoo train {text}' or pull one with 'cxrzoo pull REPO_ID'."
    else:
        msg += " Run 'cxrzoo list --trained' to see the trained models."
    raise ModelNotFoundError(msg)


def remove(name: str) -> None:
    path = model_path(name)
    if not path.exists():
        raise ModelNotFoundError(f"No trained model {name!r} in the store ({models_dir()})")
    with entry_lock_for(name):
        shutil.rmtree(path)


def verify_weights(
    weights: str | os.PathLike[str] | bytes,
    recorded: object,
    where: str,
    *,
    remedy: str = "the file was changed or corrupted. Refusing to load it.",
    error: type[IntegrityError] = IntegrityError,
) -> str:
    """The sha256 of ``weights`` (a file, or its bytes) once it matches ``recorded``.

    The one check of weights against the sha256 their config.json records, used by loading,
    pushing and pulling alike. ``where`` names the weights in the message (a path, or
    ``repo@revision``); ``remedy`` ends it; ``error`` is the :class:`IntegrityError` subclass
    to raise when the sha256 is missing or differs.
    """
    if not isinstance(recorded, str) or not recorded:
        raise error(f"{where}: {CONFIG_NAME} records no sha256 for the weights; {remedy}")
    if isinstance(weights, bytes | bytearray | memoryview):
        actual = hashlib.sha256(weights).hexdigest()
    else:
        actual = sha256_file(weights)
    if actual != recorded:
        raise error(
            f"{where}: sha256 {actual[:12]}… does not match {recorded[:12]}… recorded in {CONFIG_NAME}; "
            f"{remedy}"
        )
    return actual


#: Evaluations kept in config.json besides the latest, oldest dropped first.
MAX_EVALUATIONS = 20


def record_evaluation(folder: str | os.PathLike[str], metrics: dict[str, Any]) -> dict[str, Any]:
    """Record a held-out evaluation in a model folder's config.json and re-render its card.

    ``metrics`` is what :func:`cxrzoo.reports.evaluate.evaluate_model` returns. The latest is
    kept under ``evaluation`` (shown in the card and its Hub ``model-index``), a one-line
    summary of each under ``evaluations``. The sealed keys are not touched, so the config
    digest still holds; both files are replaced atomically under the entry's lock.
    """
    from cxrzoo.cards import render_card

    folder = Path(folder)
    per_class = {
        label: {
            k: v
            for k, v in values.items()
            if k in (*metrics.get("metrics", []), "threshold", "positives", "negatives", "unknown")
        }
        for label, values in (metrics.get("per_class") or {}).items()
    }
    entry = {
        "split": metrics.get("split"),
        "dataset": (metrics.get("data") or {}).get("dataset"),
        "data": metrics.get("data"),
        "evaluated": metrics.get("evaluated"),
        "n_images": metrics.get("n_images"),
        "macro_auroc": metrics.get("macro_auroc"),
        "macro_auroc_ci": metrics.get("macro_auroc_ci"),
        "macro": metrics.get("macro"),
        "metrics": metrics.get("metrics"),
        "per_class": per_class,
        "not_scorable": metrics.get("not_scorable") or {},
    }
    in_store = folder.parent.resolve() == models_dir().resolve()
    with entry_lock_for(folder.name, wait=60) if in_store else contextlib.nullcontext():
        doc = read_config(folder)
        doc["evaluation"] = entry
        history = [e for e in doc.get("evaluations") or [] if isinstance(e, dict)]
        summary = {k: entry[k] for k in ("split", "dataset", "evaluated", "n_images", "macro_auroc")}
        doc["evaluations"] = [*history, summary][-MAX_EVALUATIONS:]
        write_config(folder, doc)
        atomic_write_bytes(folder / CARD_NAME, render_card(None, doc).encode())
    return doc
