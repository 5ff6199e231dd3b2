"""Weights from outside the zoo: safe checkpoint reading and the one initialisation loader.

Two things live here, and only here:

- :func:`read_checkpoint` reads a checkpoint file into a flat ``{name: tensor}`` state dict
  without running any code it contains. safetensors files are read as they are; pickles
  (``.pt``/``.pth``/``.bin``, a state dict or a whole pickled module) go through
  ``torch.load(weights_only=True)`` with an allow-list of exactly the classes the published
  formats need (:data:`TORCH_MODULE_CLASSES`, and the classes named in
  :data:`FOREIGN_MODULE_CLASSES`, which are rebuilt as inert stand-ins so that neither
  torchxrayvision nor torchvision code runs). Anything else is refused with one line naming
  the offending global (:class:`CheckpointRefused`).
- :func:`init_from` copies the tensors of a source state dict into a model by name and shape,
  the way timm's ``load_pretrained`` does: key layouts are lined up by their common suffixes
  (torchvision's ``layer1.0.conv1.weight`` onto a timm encoder's
  ``encoder.layer1.0.conv1.weight``), a three-channel stem is folded to one channel with timm's
  ``adapt_input_conv``, label heads keep the rows of the findings both sides share. It reports
  how many tensors were loaded, adapted and left new.

:func:`resolve_source` turns an ``--init`` / weight source spec (a store name, a checkpoint
file, ``timm:``, ``torchvision:``, ``hf-hub:``, or anything an import plugin registers) into
such a state dict; downloads are cached under ``$CXRZOO_HOME/downloads``.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrzoo.errors import DataError, UserError

__all__ = [
    "FOREIGN_MODULE_CLASSES",
    "TORCH_MODULE_CLASSES",
    "CheckpointRefused",
    "InitReport",
    "LoadedWeights",
    "init_from",
    "read_checkpoint",
    "register_source",
    "resolve_source",
    "state_dict_of",
]


class CheckpointRefused(DataError):
    """A checkpoint whose pickle names a global outside the allow-list (it would run code)."""


class WeightSourceError(UserError):
    """A weight source spec that names nothing loadable, or an --init that loads nothing."""


# -- the allow-list ----------------------------------------------------------------------------
#: torch.nn classes a pickled chest X-ray network (torchxrayvision's DenseNet-121 and ResNet-50,
#: torchvision's ImageNet classifiers) is made of. Their ``__setstate__`` only fills ``__dict__``.
TORCH_MODULE_CLASSES: tuple[type, ...] = (
    nn.Module,
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Linear,
    nn.Dropout,
    nn.Identity,
    nn.Flatten,
)


class PickledModule(nn.Module):
    """Inert stand-in for a module class of another library found in a whole pickled model.

    Built through ``__new__`` and ``__setstate__`` only (what ``nn.Module`` does: fill
    ``__dict__``), so it holds the pickled parameters, buffers and submodules and nothing of the
    original class's code runs; :func:`state_dict_of` then reads its state dict.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called
        raise RuntimeError("a stand-in for a pickled module cannot run")


#: Module classes of other libraries that published whole-module pickles reference, rebuilt as
#: :class:`PickledModule` (torchxrayvision's DenseNet-121 files pickle its own classes;
#: torchvision's are listed for whole-pickled ImageNet classifiers).
FOREIGN_MODULE_CLASSES: tuple[str, ...] = (
    "torchxrayvision.models.DenseNet",
    "torchxrayvision.models.ResNet",
    "torchxrayvision.models._DenseBlock",
    "torchxrayvision.models._DenseLayer",
    "torchxrayvision.models._Transition",
    "torchvision.models.densenet.DenseNet",
    "torchvision.models.densenet._DenseBlock",
    "torchvision.models.densenet._DenseLayer",
    "torchvision.models.densenet._Transition",
    "torchvision.models.resnet.ResNet",
    "torchvision.models.resnet.Bottleneck",
    "torchvision.models.resnet.BasicBlock",
)


def _allow_list() -> list[Any]:
    allowed: list[Any] = [(cls, f"{cls.__module__}.{cls.__qualname__}") for cls in TORCH_MODULE_CLASSES]
    allowed += [(PickledModule, name) for name in FOREIGN_MODULE_CLASSES]
    # Plain containers a pickled module's __dict__ holds (its hook dicts, its buffer-name set).
    allowed += [set, collections.OrderedDict]
    return allowed


_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
_BLOCKED = re.compile(r"unsupported GLOBAL (\S+) whose module")
_REDUCE = re.compile(r"call reduce for unrecognized function (.+?)(?: which belongs|$)")


def _refusal(path: Path, exc: BaseException) -> CheckpointRefused:
    text = str(exc)
    match = _GLOBAL.search(text) or _BLOCKED.search(text) or _REDUCE.search(text)
    what = match.group(1) if match else text.strip().splitlines()[0][:160]
    return CheckpointRefused(
        f"Refusing {path}: its pickle calls {what}, which is not among the classes published "
        f"chest X-ray checkpoints need (it could run code); nothing was loaded or written"
    )


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    # 8-byte little-endian header length, then the JSON header.
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from a checkpoint file, without running its code.

    safetensors is read directly. A pickle is read with ``torch.load(weights_only=True)`` under
    the allow-list; it may hold a state dict, a whole module, or a training checkpoint with the
    state dict under ``state_dict`` / ``model`` / ``model_state_dict`` / ``state_dict_ema``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"Checkpoint {path} does not exist")
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise DataError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        with torch.serialization.safe_globals(_allow_list()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Only persistent_load of storage is allowed" not in str(exc):
            raise _refusal(path, exc) from None
        # A whole module saved by torch < 1.6 (the legacy format: torchxrayvision's DenseNet
        # files) names each module class in a persistent id, which weights_only refuses
        # whatever the allow-list. The same allow-list, enforced by a restricted unpickler.
        obj = _legacy_load(path)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "GLOBAL" in str(exc) or "reduce" in str(exc):
            raise _refusal(path, exc) from None
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({first[:200]})") from None
    return state_dict_of(obj, where=str(path))


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allow-listed globals (the classic way to
    restrict unpickling, as the pickle documentation shows), for legacy-format checkpoints."""

    def find_class(self, module: str, name: str) -> Any:
        import _compat_pickle

        # Protocol 2 files written by Python 3 name builtins the Python 2 way ("__builtin__").
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _legacy_allowed()
        full = f"{module}.{name}"
        if full in allowed:
            return allowed[full]
        raise pickle.UnpicklingError(
            f"Unsupported global: GLOBAL {full} was not an allowed global by default."
        )


class _RestrictedPickle:
    """The pickle module torch.load uses for a legacy checkpoint: only its Unpickler differs."""

    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(f: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(f, **kwargs).load()


def _legacy_allowed() -> dict[str, Any]:
    allowed: dict[str, Any] = {}
    for item in _allow_list():
        obj, name = item if isinstance(item, tuple) else (item, f"{item.__module__}.{item.__qualname__}")
        allowed[name] = obj
    allowed["builtins.set"] = set
    allowed["collections.OrderedDict"] = collections.OrderedDict
    for fn in (
        torch._utils._rebuild_tensor,
        torch._utils._rebuild_tensor_v2,
        torch._utils._rebuild_parameter,
        torch._utils._rebuild_parameter_with_state,
    ):
        allowed[f"torch._utils.{fn.__name__}"] = fn
    allowed["torch.Size"] = torch.Size
    return allowed


def _legacy_load(path: Path) -> Any:
    import warnings

    try:
        with warnings.catch_warnings():
            # torch compares each pickled class's saved source with the stand-in's: noise here.
            warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None


_NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model_state_dict", "model", "net")


def state_dict_of(obj: Any, *, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The flat tensor dict inside whatever a checkpoint held."""
    if isinstance(obj, nn.Module):
        return {k: v.detach() for k, v in obj.state_dict().items() if isinstance(v, torch.Tensor)}
    if isinstance(obj, Mapping):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors
        for key in _NESTED_KEYS:
            if key in obj and isinstance(obj[key], Mapping | nn.Module):
                return state_dict_of(obj[key], where=where)
    raise DataError(f"{where} holds no state dict of tensors (found {type(obj).__name__})")


# -- matching tensors by name and shape ---------------------------------------------------------
@dataclass
class InitReport:
    """What :func:`init_from` did: target tensor names by outcome, and the source unused."""

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    shared_labels: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    #: Parameter names of the backbone (initialised from the source, label heads excepted):
    #: what ``freeze_backbone`` / ``backbone_lr`` act on; filled in by training.
    backbone: list[str] = field(default_factory=list)

    @property
    def initialised(self) -> set[str]:
        return {*self.loaded, *self.adapted}

    def counts(self) -> dict[str, int]:
        return {
            "loaded": len(self.loaded),
            "adapted": len(self.adapted),
            "new": len(self.new),
            "unused": len(self.unused),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            **self.counts(),
            "shared_labels": self.shared_labels,
            "backbone_tensors": len(self.backbone),
            "adapted_tensors": dict(sorted(self.details.items())[:20]),
        }

    def line(self) -> str:
        c = self.counts()
        return (
            f"Initialised from {self.source}: {c['loaded']} tensors loaded, {c['adapted']} adapted, "
            f"{c['new']} new ({c['unused']} of the source's unused)"
        )


def _split_points(key: str) -> Iterable[tuple[str, str]]:
    # "_" separates module names too: timm's feature extractors flatten module paths
    # ("features.conv0" becomes "features_conv0"); the tensor's own name ("running_mean") is
    # kept whole. Both sides are read the same way.
    *modules, tensor = key.split(".")
    parts = [p for m in modules for p in m.split("_")] + [tensor]
    # The rest keeps at least two components ("conv1.weight"), so a bare "weight" never aligns.
    for i in range(0, len(parts) - 1):
        yield ".".join(parts[:i]), ".".join(parts[i:])


def align_keys(target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Target name -> source name, lining up the two key layouts by prefix.

    Greedy: the (target prefix, source prefix) pair under which the most names coincide wins,
    then the next among what is left, so ``encoder.`` on one side and ``model.`` or nothing on
    the other line up wherever the rest of the name agrees. A name coinciding exactly always
    counts.
    """
    by_rest: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for s in source:
        for sp, rest in _split_points(s):
            by_rest[rest].append((sp, s))
    votes: collections.Counter[tuple[str, str]] = collections.Counter()
    candidates: dict[tuple[str, str], dict[str, str]] = collections.defaultdict(dict)
    for t in target:
        for tp, rest in _split_points(t):
            for sp, s in by_rest.get(rest, ()):
                votes[(tp, sp)] += 1
                candidates[(tp, sp)][t] = s
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for pair, _ in votes.most_common():
        for t, s in candidates[pair].items():
            if t not in mapping and s not in used:
                mapping[t] = s
                used.add(s)
    return mapping


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A stem convolution's weight for ``in_chans`` input channels: timm's own helper for a
    three-channel source (summed to one channel, or repeated and rescaled); a one-channel
    source is repeated and divided by ``in_chans`` (the same response to a grey image)."""
    if weight.shape[1] == 1:
        return (weight.float().repeat(1, in_chans, 1, 1) / in_chans).to(weight.dtype)
    from timm.models import adapt_input_conv as timm_adapt

    return timm_adapt(in_chans, weight.float()).to(weight.dtype)


def _is_stem_pair(got: torch.Tensor, want: torch.Tensor) -> bool:
    """A convolution weight that differs only in its input channels, one side grey (1) or RGB (3)."""
    return (
        got.ndim == 4
        and want.ndim == 4
        and got.shape[0] == want.shape[0]
        and got.shape[2:] == want.shape[2:]
        and got.shape[1] != want.shape[1]
        and got.shape[1] in (1, 3)
        and want.shape[1] in (1, 3)
    )


def label_tensors(model: nn.Module, num_labels: int) -> set[str]:
    """Names of the parameters of a model's label heads: ``nn.Linear`` layers with one output
    per label (a model may name others through ``label_tensor_names()``)."""
    named = getattr(model, "label_tensor_names", None)
    if callable(named):
        return set(named())
    out = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_labels:
            for pname, _ in module.named_parameters(recurse=False):
                out.add(f"{name}.{pname}" if name else pname)
    return out


def init_from(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    *,
    source_name: str = "checkpoint",
    source_labels: Sequence[str] | None = None,
    target_labels: Sequence[str] | None = None,
    key_map: Callable[[str], str | None] | None = None,
) -> InitReport:
    """Copy matching tensors of ``source`` into ``model``; returns what was loaded.

    - names are lined up by :func:`align_keys` (after ``key_map``, which renames a source key
      or drops it by returning None);
    - a tensor of the same shape is loaded; a 4-d stem weight differing only in input channels
      is adapted with timm's ``adapt_input_conv``;
    - a label head (:func:`label_tensors`) with ``source_labels`` known keeps the rows of the
      labels both share (matched by canonical name) and leaves the others fresh;
    - everything else stays as initialised ("new").
    """
    from cxrzoo.labels import canonical

    if key_map is not None:
        renamed = {}
        for k, v in source.items():
            nk = key_map(k)
            if nk is not None:
                renamed[nk] = v
        source = renamed
    target = model.state_dict()
    report = InitReport(source=source_name)
    mapping = align_keys(target, source)
    labels = list(target_labels if target_labels is not None else getattr(model, "labels", ()) or ())
    heads = label_tensors(model, len(labels)) if labels else set()
    src_index = {}
    if source_labels is not None:
        src_index = {canonical(lab) or lab: i for i, lab in enumerate(source_labels) if lab}
    shared = [
        (i, src_index[canonical(lab) or lab])
        for i, lab in enumerate(labels)
        if (canonical(lab) or lab) in src_index
    ]
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, want in target.items():
        s = mapping.get(name)
        if s is None:
            report.new.append(name)
            continue
        got = source[s]
        if name in heads:
            if (
                not shared
                or source_labels is None
                or got.ndim != want.ndim
                or got.shape[0] != len(source_labels)
                or tuple(got.shape[1:]) != tuple(want.shape[1:])
            ):
                # A head for other classes (ImageNet's) or for unknown labels starts fresh.
                report.new.append(name)
                continue
            value = want.clone()
            rows_t = torch.tensor([t for t, _ in shared])
            rows_s = torch.tensor([s_ for _, s_ in shared])
            value[rows_t] = got[rows_s].to(want.dtype)
            new_state[name] = value
            used.add(s)
            identical = len(shared) == len(labels) == got.shape[0] and all(t == s_ for t, s_ in shared)
            if identical:
                report.loaded.append(name)
            else:
                report.adapted.append(name)
                report.details[name] = f"rows of {len(shared)} shared label(s)"
            continue
        if tuple(got.shape) == tuple(want.shape):
            new_state[name] = got.to(want.dtype)
            report.loaded.append(name)
            used.add(s)
        elif _is_stem_pair(got, want):
            new_state[name] = adapt_input_conv(got, int(want.shape[1])).to(want.dtype)
            report.adapted.append(name)
            report.details[name] = f"input channels {got.shape[1]} -> {want.shape[1]}"
            used.add(s)
        else:
            report.new.append(name)
    report.unused = sorted(set(source) - used)
    report.shared_labels = [labels[t] for t, _ in shared] if shared else []
    if new_state:
        model.load_state_dict(new_state, strict=False)
    return report


# -- weight sources ---------------------------------------------------------------------------
@dataclass
class LoadedWeights:
    """A source's state dict with what is known about it."""

    state: dict[str, torch.Tensor]
    source: str
    labels: tuple[str, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: A ready cxrzoo model when the source is a whole chest X-ray classifier (``xrv:``), which
    #: ``cxrzoo import`` saves as a store entry; None for a backbone checkpoint.
    model: Any = None


#: Extra source schemes (``xrv:``), registered by import plugins: scheme -> loader(rest, file).
_SCHEMES: dict[str, Callable[[str, str | None], LoadedWeights]] = {}


def register_source(scheme: str, loader: Callable[[str, str | None], LoadedWeights]) -> None:
    """Let ``scheme:NAME`` be used as a weight source (``--init``, a config's weight source)."""
    _SCHEMES[scheme] = loader


def downloads_dir() -> Path:
    from cxrzoo.store import home

    return home() / "downloads"


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, *, progress: bool = True) -> Path:
    """The cached local copy of ``url`` (downloaded once, with a progress bar, atomically).

    Offline, or when the address cannot be reached, one line names the address and ``--file``.
    """
    from urllib.error import URLError

    name = os.path.basename(url.split("?", 1)[0]) or "download"
    target = downloads_dir() / hashlib.sha256(url.encode()).hexdigest()[:12] / name
    if target.is_file():
        return target
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("CXRZOO_OFFLINE") == "1":
        raise DataError(f"Offline: cannot download {url}; fetch it elsewhere and pass it with --file PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.part-{os.getpid()}"
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=progress)
        os.replace(tmp, target)
    except (URLError, OSError, RuntimeError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"Cannot download {url} ({str(reason).splitlines()[0][:120]}); fetch it elsewhere and pass it "
            f"with --file PATH"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _torchvision_source(name: str, file: str | None) -> LoadedWeights:
    import torchvision

    arch, _, tag = name.partition(".")
    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise WeightSourceError(
            f"torchvision has no model {arch!r}; see torchvision.models.list_models()"
        ) from None
    weights = enum[tag] if tag else enum.DEFAULT
    url = weights.url
    path = Path(file) if file else fetch(url)
    state = read_checkpoint(path)
    if arch.startswith("densenet"):
        # torchvision's DenseNet files predate its module names: "denselayer1.norm.1.weight"
        # is "denselayer1.norm1.weight" (torchvision renames them the same way when it loads).
        state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    return LoadedWeights(
        state=state,
        source=f"torchvision:{name}",
        provenance={
            "source": f"torchvision:{arch}.{weights.name}",
            "address": url,
            "sha256": sha256_of(path),
            "licence": "BSD-3-Clause (torchvision); see the weights' own terms",
            "citation": "torchvision, https://pytorch.org/vision/",
        },
    )


def _timm_source(name: str, file: str | None) -> LoadedWeights:
    import timm

    if file is None:
        try:
            cfg = timm.models.get_pretrained_cfg(name)  # "resnet50" is its default tag
        except Exception:
            cfg = None
        if cfg is None:
            raise WeightSourceError(f"timm has no pretrained weights {name!r}; see timm.list_pretrained()")
        if cfg.hf_hub_id:
            from cxrzoo import hub

            path = Path(hub.download_file(cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors"))
            address = f"https://huggingface.co/{cfg.hf_hub_id}"
        elif cfg.url:
            address = cfg.url
            path = fetch(cfg.url)
        else:
            raise WeightSourceError(f"timm names no download address for {name!r}; pass the file with --file")
    else:
        path, address = Path(file), None
    return LoadedWeights(
        state=read_checkpoint(path),
        source=f"timm:{name}",
        provenance={
            "source": f"timm:{name}",
            "address": address,
            "sha256": sha256_of(path),
            "licence": "see the model's timm / Hugging Face card",
            "citation": "Wightman, PyTorch Image Models, https://github.com/huggingface/pytorch-image-models",
        },
    )


def _hub_source(spec: str, file: str | None) -> LoadedWeights:
    from cxrzoo import hub

    if file is not None:
        return LoadedWeights(
            state=read_checkpoint(file), source=f"hf-hub:{spec}", provenance={"sha256": sha256_of(file)}
        )
    folder = hub.resolve_model(f"hf-hub:{spec}")
    return _store_source(str(folder))


def _store_source(name: str) -> LoadedWeights:
    from cxrzoo import store

    folder = store.resolve(name)
    doc = store.read_config(folder)
    weights = folder / doc["weights"].get("file", store.WEIGHTS_NAME)
    store.verify_weights(weights, doc["weights"].get("sha256"), str(weights))
    labels = doc.get("config", {}).get("labels")
    return LoadedWeights(
        state=read_checkpoint(weights),
        source=f"{name} ({doc['architecture']})",
        labels=tuple(labels) if isinstance(labels, list) else None,
        provenance={"source": name, "architecture": doc["architecture"], "sha256": doc["weights"]["sha256"]},
    )


def resolve_source(spec: str, *, file: str | None = None) -> LoadedWeights:
    """The state dict a weight source spec names.

    ``timm:NAME`` / ``torchvision:NAME`` (ImageNet checkpoints; ``file`` a local copy),
    ``hf-hub:ORG/REPO[@REV]`` (a cxrzoo model repo, pulled into the store), a registered
    scheme such as ``xrv:NAME``, a checkpoint file (safetensors, or a pickle under the
    allow-list), a store name, or a folder in ``$CXRZOO_HOME/weights`` written by
    ``cxrzoo import``.
    """
    scheme, sep, rest = spec.partition(":")
    if sep and len(scheme) > 1:
        if scheme == "timm":
            return _timm_source(rest, file)
        if scheme == "torchvision":
            return _torchvision_source(rest, file)
        if scheme in ("hf-hub", "hf"):
            return _hub_source(rest.removeprefix("//"), file)
        _load_scheme_plugins()
        if scheme in _SCHEMES:
            return _SCHEMES[scheme](rest, file)
        raise WeightSourceError(
            f"Unknown weight source scheme {scheme!r} in {spec!r}; use a store name, a checkpoint "
            f"file, timm:, torchvision:, hf-hub: or one of {sorted(_SCHEMES)}"
        )
    path = Path(spec).expanduser()
    if path.is_file():
        return LoadedWeights(
            state=read_checkpoint(path), source=str(path), provenance={"sha256": sha256_of(path)}
        )
    imported = imported_weights_path(spec)
    if imported is not None:
        return LoadedWeights(state=read_checkpoint(imported), source=f"{spec} (imported weights)")
    return _store_source(spec)


def weights_dir() -> Path:
    """Where ``cxrzoo import timm:… / torchvision:…`` keeps converted ImageNet checkpoints."""
    from cxrzoo.store import home

    return home() / "weights"


def imported_weights_path(name: str) -> Path | None:
    from cxrzoo.fsio import InvalidNameError, check_name

    try:
        check_name(name)
    except InvalidNameError:
        return None
    path = weights_dir() / name / "model.safetensors"
    return path if path.is_file() else None


def _load_scheme_plugins() -> None:
    """Import the modules that register weight source schemes (entry points of group
    ``cxrzoo.weights``: scheme = "module:function")."""
    import importlib.metadata as md

    from cxrzoo import plugins

    for ep in md.entry_points(group="cxrzoo.weights"):
        # The allow and block lists of plugins (CXRZOO_PLUGINS, CXRZOO_BLOCK_PLUGINS) apply.
        if ep.name not in _SCHEMES and plugins._wanted(ep, plugins._dist_name(ep)):
            try:
                _SCHEMES[ep.name] = ep.load()
            except Exception as exc:
                raise WeightSourceError(f"Weight source plugin {ep.name!r} failed to load: {exc}") from None


def apply_init(model: nn.Module, spec: str, *, file: str | None = None) -> InitReport:
    """Initialise ``model`` from the source ``spec``; an init that loads nothing is an error."""
    loaded = resolve_source(spec, file=file)
    report = init_from(model, loaded.state, source_name=loaded.source, source_labels=loaded.labels)
    if not report.initialised:
        raise WeightSourceError(
            f"--init {spec}: no tensor of the source matches {type(model).__name__} by name and shape "
            f"({len(loaded.state)} source tensors, {len(report.new)} model tensors); refusing to train from "
            f"scratch silently"
        )
    return report
