"""Model folders and the local model store.

A trained model is a folder holding ``model.safetensors`` (the weights), ``config.json``
(architecture, config, sha256 of the weights, training facts, metrics, versions) and
``README.md`` (the model card). Nothing is pickled. Folders are written into a temporary
sibling first and swapped in, so a reader never sees a half-written model.

The store keeps such folders by name under ``$CXRZOO_HOME/models`` (default
``~/.cache/cxrzoo/models``).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
# Metadata that describes where a loaded model lives, not the model: never saved.
_RUNTIME_METADATA = {"source", "folder", "name"}
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT = "cxrzoo-model"
FORMAT_VERSION = 1


class StoreError(RuntimeError):
    """A model folder that is missing, malformed, or does not match its weights."""


class IntegrityError(StoreError):
    """Weights whose sha256 differs from the one recorded in config.json."""


def home() -> Path:
    """The cxrzoo cache root: ``$CXRZOO_HOME`` or ``~/.cache/cxrzoo``."""
    return Path(os.environ.get("CXRZOO_HOME") or Path.home() / ".cache" / "cxrzoo").expanduser()


def models_dir() -> Path:
    return home() / "models"


def model_path(name: str) -> Path:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise StoreError(f"Invalid store name {name!r}: use letters, digits, '-', '_' and '.'")
    return models_dir() / name


def list_trained() -> list[str]:
    """Names of the trained models in the store."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if not p.name.startswith(".") and (p / CONFIG_NAME).is_file()
    )


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


@contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``.

    On error the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        **{k: v for k, v in model.metadata.items() if k not in _RUNTIME_METADATA},
        "versions": _versions(),
        "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config_doc, indent=2, default=_json_default))
    if card:
        from cxrzoo.cards import render_card

        (folder / CARD_NAME).write_text(render_card(model, config_doc))
    return config_doc


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


def save(model: Any, name: str | None = None, *, extra_files: dict[str, bytes] | None = None) -> Path:
    """Save ``model`` into the store under ``name`` (default: its architecture)."""
    name = name or model.architecture
    target = model_path(name)
    with atomic_folder(target) as tmp:
        write_model_files(model, tmp)
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
    return target


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise StoreError(f"{folder} is not a cxrzoo model folder: {CONFIG_NAME} is missing")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreError(f'{path}: not a cxrzoo model config (no "format": "{FORMAT}")')
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise StoreError(
            f"{path}: written by a newer cxrzoo (format {doc['format_version']}); upgrade cxrzoo"
        )
    for key in ("architecture", "config", "weights"):
        if key not in doc:
            raise StoreError(f"{path}: missing key {key!r}")
    return doc


def build_from_config(doc: dict[str, Any], *, source: str = "config.json") -> Any:
    """An untrained model as described by a config.json document."""
    from cxrzoo.plugins import models

    cls = models.get(doc["architecture"])
    config = cls.config_class.from_dict(doc["config"], source=source)
    model = cls(config)
    model.architecture = doc["architecture"]
    return model


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model``; any missing, extra or mis-shaped tensor is an error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensor(s) {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if extra:
        problems.append(f"unexpected tensor(s) {extra[:5]}" + (" ..." if len(extra) > 5 else ""))
    for key in sorted(set(expected) & set(state)):
        if tuple(expected[key].shape) != tuple(state[key].shape):
            problems.append(
                f"tensor {key!r} has shape {tuple(state[key].shape)} in the weights but "
                f"{tuple(expected[key].shape)} in the model built from the config"
            )
    if problems:
        raise StoreError(f"{source} does not match its config: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_folder(
    folder: str | os.PathLike[str], *, device: str | torch.device = "cpu", verify: bool = True
) -> Any:
    """Rebuild a model from a folder: config first, then the weights, strictly."""
    folder = Path(folder)
    doc = read_config(folder)
    weights = folder / doc["weights"].get("file", WEIGHTS_NAME)
    if not weights.is_file():
        raise StoreError(f"{folder}: weights file {weights.name} is missing")
    if weights.suffix != ".safetensors":
        raise StoreError(f"{weights}: only safetensors weights are loaded, never pickles")
    if verify:
        verify_weights(weights, doc["weights"].get("sha256"), str(weights))
    model = build_from_config(doc, source=str(folder / CONFIG_NAME))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise StoreError(f"{weights}: not a readable safetensors file ({exc})") from None
    load_state_strict(model, state, source=str(weights))
    model.metadata = {
        k: v
        for k, v in doc.items()
        if k not in {"format", "format_version", "architecture", "config", "weights", "versions", "saved"}
    }
    source_file = folder / "source.json"
    if source_file.is_file():
        model.metadata["source"] = json.loads(source_file.read_text())
    model.metadata["folder"] = str(folder)
    model.metadata.setdefault("name", folder.name)
    return model.to(device).eval()


def resolve(name_or_folder: str | os.PathLike[str]) -> Path:
    """The folder of a store name or a path; a clear error when neither exists."""
    text = str(name_or_folder)
    path = Path(text).expanduser()
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return path
    if os.sep not in text and "/" not in text and not text.startswith("."):
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
    raise StoreError(msg)


def remove(name: str) -> None:
    path = model_path(name)
    if not path.exists():
        raise StoreError(f"No trained model {name!r} in the store ({models_dir()})")
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
