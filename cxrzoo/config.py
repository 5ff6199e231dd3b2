"""Frozen, JSON-serialisable model configurations.

A model's config holds everything needed to rebuild it and to feed it correctly: the
architecture arguments, the labels in output order, the input channels and size, the
preprocessing steps by name and the calibrated decision thresholds. It is saved as
``config.json`` beside the weights, so inference always repeats training's preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

from cxrzoo.errors import UserError
from cxrzoo.labels import LABELS, canonical, in_vocabulary

C = TypeVar("C", bound="ModelConfig")

#: Default preprocessing: crop the largest centred square, resize, then per-image
#: standardisation (zero mean, unit variance). ``center_crop`` keeps the anatomy's aspect
#: ratio on non-square radiographs (CheXpert, MIMIC-CXR, hospital DICOM) where ``resize``
#: alone would stretch them; NIH images are square, so it leaves them untouched
#: (``letterbox`` pads instead of cropping). Standardisation scored better on real NIH images
#: than CLAHE + fixed grey normalisation (the chest_xray_attention rows of
#: benchmarks/results/nih_sample_64_ablation.md);
#: ``--set preprocessing=clahe,resize,scale,normalize_grey`` restores the CLAHE pipeline.
#: Training at 128 px or more uses :data:`FULL_SIZE_PREPROCESSING` instead (see below).
DEFAULT_PREPROCESSING: tuple[str, ...] = ("center_crop", "resize", "scale", "standardize")

#: Training at this input size or larger adds CLAHE on the full-size radiograph, before it is
#: reduced: ``center_crop, clahe, resize, scale, standardize``. On real NIH radiographs of
#: 512 px trained at 128 px it raised the mean test AUROC of chest_xray_attention and
#: rare_disease over three seeds by 0.02-0.03
#: (benchmarks/results/nih_sample_512_128_clahe_full_size.md); on the 64 px thumbnails, where
#: its 8x8 tiles are 8 pixels wide, CLAHE lowered chest_xray_attention's
#: (benchmarks/results/nih_sample_64_ablation.md), so small inputs keep the plain default.
FULL_SIZE_CLAHE_MIN_INPUT = 128
FULL_SIZE_PREPROCESSING: tuple[str, ...] = ("center_crop", "clahe", "resize", "scale", "standardize")


def default_preprocessing(image_size: int) -> tuple[str, ...]:
    """The preprocessing ``cxrzoo train`` gives a model whose config leaves the default, by
    the input size it trains at (the choice is then recorded in its config.json)."""
    return FULL_SIZE_PREPROCESSING if image_size >= FULL_SIZE_CLAHE_MIN_INPUT else DEFAULT_PREPROCESSING


def weight_source(default: Any = False) -> Any:
    """A config field naming where a model's initial weights come from.

    Its value is ``False`` (random initialisation), ``True`` (the backbone library's own
    pretrained weights, downloaded) or a weight source spec that
    :func:`cxrzoo.weights.resolve_source` understands (a checkpoint file, a store name,
    ``timm:NAME``, ``torchvision:NAME``, ``hf-hub:ORG/REPO`` …). Saved weights replace the
    initial ones, so the store clears every such field when it rebuilds a saved model
    (:meth:`ModelConfig.clear_weight_source`) and nothing is downloaded on load.
    """
    return dataclasses.field(default=default, metadata={"weight_source": True})


class ConfigError(UserError, ValueError):
    """A config value or key that a model does not accept."""


class Range(NamedTuple):
    """Accepted values of a numeric field: ``low <= value <= high`` (``<`` where open)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok

    def describe(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"


def check_fields(obj: Any, bounds: dict[str, Range], *, what: str) -> None:
    """Every number of dataclass ``obj`` finite and inside its declared range."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{what} option {f.name}={v!r}: must be a finite number")
            rng = bounds.get(f.name)
            if rng is not None and not rng.contains(v):
                raise ConfigError(f"{what} option {f.name}={v!r}: expected a value in {rng.describe()}")


@dataclass(frozen=True)
class ModelConfig:
    """Fields every cxrzoo model shares; a model subclasses this to add its own.

    ``preprocessing`` names registered transforms, applied in order: decoding-time image steps
    (``clahe``, ``resize`` …) then tensor steps (``scale``, ``normalize_grey`` …). ``resize``
    uses ``image_size``. ``thresholds`` are per-label probabilities above which a finding is
    called positive; ``None`` until a model is calibrated on validation data.
    """

    labels: tuple[str, ...] = LABELS
    in_chans: int = 1
    image_size: int = 224
    preprocessing: tuple[str, ...] = DEFAULT_PREPROCESSING
    thresholds: tuple[float, ...] | None = None
    #: Test-time augmentation: average the probabilities of the image and its mirror image
    #: (validation, calibration, evaluation, predict and the ONNX graph alike).
    flip_tta: bool = False

    #: Accepted ranges of numeric fields; a subclass extends it with ``{**ModelConfig.bounds, …}``.
    bounds: ClassVar[dict[str, Range]] = {
        "image_size": Range(16, 4096),
        "thresholds": Range(0.0, 1.0),
    }

    def __post_init__(self) -> None:
        if not self.labels:
            raise ConfigError("labels: a model needs at least one label")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels contain duplicates: {list(self.labels)}")
        for name in self.labels:
            if not in_vocabulary(name):
                known = canonical(name)
                hint = (
                    f" (the vocabulary spells it {known!r})"
                    if known
                    else "; see cxrzoo.labels.vocabulary(), or register it with cxrzoo.labels.register_finding"
                )
                raise ConfigError(f"labels: {name!r} is not a finding cxrzoo knows{hint}")
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {self.in_chans}")
        if self.thresholds is not None and len(self.thresholds) != len(self.labels):
            raise ConfigError(f"thresholds has {len(self.thresholds)} values for {len(self.labels)} labels")
        check_fields(self, type(self).bounds, what="model config")

    def card_facts(self) -> dict[str, str]:
        """Markdown for placeholders only this model's card source uses (``{{ members }}``,
        ``{{ rare_labels }}`` …); a subclass adds its own."""
        return {}

    def for_data(self: C, label_prevalence: dict[str, float]) -> C:
        """The config to train with, given the training split's label prevalence.

        Models whose layers depend on the data (which findings are rare) override this.
        """
        return self

    @classmethod
    def weight_source_fields(cls) -> tuple[str, ...]:
        """Names of the fields declared with :func:`weight_source`."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("weight_source"))

    @classmethod
    def clear_weight_source(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (a config dict) with every weight source field back at its default: the
        config to rebuild a model whose weights are loaded next."""
        defaults = {f.name: f.default for f in fields(cls) if f.metadata.get("weight_source")}
        return {k: defaults.get(k, v) for k, v in values.items()}

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
        """Build from a dict, refusing keys this config does not have."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {unknown} for {cls.__name__}; accepted: {sorted(names)}"
            )
        hints = typing.get_type_hints(cls)
        values = {k: coerce(hints[k], v, key=k) for k, v in data.items()}
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``, each coerced to the field's type (strings welcome)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(
                f"Unknown config option(s) {unknown} for {type(self).__name__}; accepted: {sorted(names)}"
            )
        hints = typing.get_type_hints(type(self))
        values = {k: coerce(hints[k], v, key=k) for k, v in changes.items()}
        return dataclasses.replace(self, **values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: JSON where it parses (``false``, ``3``, ``[1, 2]``), else text.

    A comma-separated list without brackets (``clahe,resize``) becomes a list of strings.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "on"}:
        return True
    if lowered in {"false", "no", "off"}:
        return False
    if lowered in {"none", "null"}:
        return None
    if "," in text or "(" in text:
        # Transform steps: commas inside a step's parentheses do not split it.
        from cxrzoo.specs import looks_like_specs, split_specs

        if looks_like_specs(text):
            return split_specs(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def coerce(tp: Any, value: Any, *, key: str = "value") -> Any:
    """Convert ``value`` (from JSON or a command line) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if (
        isinstance(value, str)
        and tp is not str
        and not (origin in (typing.Union, types.UnionType) and str in args)
    ):
        value = parse_value(value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, key=key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, key=key) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce(a, v, key=key) for a, v in zip(args, value, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    return value
