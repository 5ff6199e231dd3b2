"""Model cards: the README.md saved beside every trained model and pushed to the Hub with it.

A card is the architecture's hand-written source with ``{{ placeholder }}`` fields filled from
the model's config.json: metrics, calibrated thresholds, preprocessing, training recipe, data
and the weights' sha256. The source travels with the model's plugin as package data, named
when the plugin registers the model (``card="my_plugin:card.md"``) and read with
:mod:`importlib.resources`, so it is found in a wheel install as in a checkout.

Its YAML front matter is Hub metadata (license, tags, datasets and a ``model-index`` with the
AUROCs) written by huggingface_hub's own ``ModelCardData`` and ``EvalResult``, so the Hub
parses it exactly. Only ``huggingface_hub.repocard_data`` is imported here: a data-format
module with no network client in it (the network code stays in :mod:`cxrzoo.hub`), which keeps
cards free of cycles and cheap to render.

An architecture without a source (a third-party plugin that names none, or a plugin that is not
installed) gets :data:`GENERIC_CARD`. Every field is optional: an untrained model's card
renders too, saying what is not known yet.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping
from typing import Any

TAGS = ("cxrzoo", "chest-x-ray", "medical-imaging", "multi-label-classification")
TASK_TYPE = "image-classification"
TASK_NAME = "Multi-label classification of the 14 NIH ChestX-ray14 findings"

#: Dataset names in config.json -> (dataset id, readable name), for names no registered source
#: describes (every registered source says so itself: ``title`` and ``hub_id``, see
#: :func:`dataset_info`).
DATASETS: dict[str, tuple[str, str]] = {
    "nih14": ("nih-chest-xrays", "NIH ChestX-ray14"),
    "synthetic": ("cxrzoo-synthetic", "cxrzoo synthetic chest X-ray phantoms"),
}


def dataset_info(name: str) -> tuple[str, str, str | None]:
    """``(dataset id, readable name, Hub id or None)`` of a training/evaluation dataset name.

    A registered source gives its own ``title`` and ``hub_id``; several sources joined by ``+``
    (a combined table) are named together and each hosted one is listed.
    """
    from cxrzoo.plugins import datasets

    parts = [p for p in str(name).split("+") if p] or [str(name)]
    ids, titles, hubs = [], [], []
    for part in parts:
        fallback = DATASETS.get(part, (part, part))
        try:
            cls = datasets.get(part)
        except Exception:  # an unknown or unloadable name: what the config says
            cls = None
        title = (getattr(cls, "title", "") or fallback[1]) if cls is not None else fallback[1]
        hub = getattr(cls, "hub_id", None) if cls is not None else None
        ids.append(hub or fallback[0])
        titles.append(title)
        if hub:
            hubs.append(hub)
    return "+".join(ids), " + ".join(titles), ",".join(hubs) or None


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_MISSING = "–"

GENERIC_CARD = """\
# {{ name }}

A cxrzoo model of architecture `{{ architecture }}` for multi-label classification of the 14
findings of NIH ChestX-ray14 on frontal chest radiographs ({{ parameters }} parameters).

{{ summary }}

## Intended use

Research on chest X-ray classification only. This model is **not a medical device**: it is
not cleared or approved for clinical use and must not be used for diagnosis, triage or any
decision about a patient.

## Evaluation

{{ metrics_table }}

## Decision thresholds

{{ thresholds }}

## Preprocessing

{{ preprocessing }}

## Training

{{ training }}

## Data

{{ data }}

## Configuration

{{ config }}

## Limitations

- NIH ChestX-ray14 labels were mined from radiology reports by NLP and are noisy.
- Inputs are small (64 or 224 px); fine findings may be lost at that size.
- Performance drops under dataset shift (other hospitals, scanners, populations).
- Rare findings have few positive examples, so their metrics are uncertain.

## Weights

{{ weights }}

## Citation

```bibtex
@inproceedings{wang2017chestxray8,
  title     = {ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised
               Classification and Localization of Common Thorax Diseases},
  author    = {Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi
               and Summers, Ronald M.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {3462--3471},
  year      = {2017}
}
```
"""


def card_resource(architecture: str) -> str | None:
    """The card source a registered model names (``"package:resource"``), or None."""
    from cxrzoo.plugins import models

    if not architecture or architecture not in models:
        return None
    card = models.entry(architecture).metadata.get("card")
    return card if isinstance(card, str) else None


def card_source(architecture: str) -> str:
    """The hand-written card of ``architecture``, or :data:`GENERIC_CARD` when it has none.

    The source is the package-data file its plugin named when it registered the model; it is
    read without importing the model (nor torch).
    """
    resource = card_resource(architecture)
    if resource is None:
        return GENERIC_CARD
    package, _, name = resource.partition(":")
    try:
        return importlib.resources.files(package).joinpath(name).read_text(encoding="utf-8")
    except (OSError, ImportError, ValueError):  # a plugin installed without its data
        return GENERIC_CARD


def render_card(model: Any | None, config_doc: Mapping[str, Any]) -> str:
    """The model card (README.md) of a model, from its config.json document.

    ``model`` is only consulted for its name and architecture when the document lacks them;
    pass ``None`` to render a card from a config.json alone.
    """
    architecture = str(config_doc.get("architecture") or getattr(model, "architecture", "") or "model")
    metadata = getattr(model, "metadata", None) or {}
    name = str(metadata.get("name") or f"cxrzoo-{architecture}")
    # A model adds the sections only it knows (its members, its rare findings …) through
    # ZooModel.card_facts; without the model they read "not recorded".
    facts = model.card_facts() if model is not None and hasattr(model, "card_facts") else None
    if facts is None:
        facts = _config_facts(architecture, config_doc.get("config"))
    context = {**card_context(config_doc, name=name), **(facts or {})}
    body = fill(card_source(architecture), context, strict=facts is not None)
    training = config_doc.get("training") or {}
    dataset = training.get("dataset")
    hubs = dataset_info(dataset)[2] if dataset else None
    datasets = hubs.split(",") if hubs else None
    return build_model_card(
        body,
        model_name=name,
        tags=[*TAGS, architecture],
        datasets=datasets,
        eval_results=eval_results(config_doc),
        metrics=["roc_auc", "f1", "precision", "recall"] if config_doc.get("metrics") else None,
    )


def _config_facts(architecture: str, config: Any) -> dict[str, str] | None:
    """The card facts of a config.json's config, built with the model's config class (no
    torch); None when that is not possible (an unknown model, a config that does not fit)."""
    from cxrzoo import plugins

    if not isinstance(config, Mapping) or architecture not in plugins.models:
        return None
    try:
        cls = plugins.model_config_class(architecture)
        return cls.from_dict(cls.clear_weight_source(dict(config))).card_facts()
    except Exception:  # a card is still written without these sections
        return None


def build_model_card(
    body: str,
    *,
    model_name: str,
    tags: list[str],
    datasets: list[str] | None = None,
    eval_results: list[dict[str, Any]] | None = None,
    metrics: list[str] | None = None,
) -> str:
    """A README.md: Hub metadata (``ModelCardData`` with ``EvalResult``s) above ``body``.

    ``eval_results`` are ``EvalResult`` keyword arguments; they become the card's
    ``model-index``. The layout is the one huggingface_hub's ``ModelCard`` writes back, so the
    text is exactly what the Hub parses.
    """
    from huggingface_hub.repocard_data import EvalResult, ModelCardData

    results = [EvalResult(**r) for r in eval_results or []]
    data = ModelCardData(
        license="apache-2.0",
        library_name="cxrzoo",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=datasets,
        metrics=metrics,
        model_name=model_name if results else None,
        eval_results=results or None,
    )
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def fill(source: str, context: Mapping[str, str], *, strict: bool = True) -> str:
    """Replace every ``{{ key }}`` in ``source``; an unknown key is an error (``strict``) or
    reads "not recorded"."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context and not strict:
            return _MISSING
        if key not in context:
            raise KeyError(f"model card placeholder {{{{ {key} }}}} is unknown; known: {sorted(context)}")
        return context[key]

    return _PLACEHOLDER.sub(value, source)


def eval_results(config_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The AUROCs as ``EvalResult`` keyword arguments: macro first, then one per finding.

    The held-out evaluation when one is recorded (what the Hub should show), else the
    validation metrics under their split's name.
    """
    evaluation = config_doc.get("evaluation") or {}
    metrics = evaluation if evaluation.get("per_class") else (config_doc.get("metrics") or {})
    dataset_key = str(metrics.get("dataset") or (config_doc.get("training") or {}).get("dataset") or "")
    if not metrics or not dataset_key:
        return []
    dataset_type, dataset_name, _ = dataset_info(dataset_key)
    common = {
        "task_type": TASK_TYPE,
        "task_name": TASK_NAME,
        "dataset_type": dataset_type,
        "dataset_name": dataset_name,
        "dataset_split": metrics.get("split"),
        "metric_type": "roc_auc",
    }
    results = []
    macro = _number(metrics.get("macro_auroc"))
    if macro is not None:
        results.append(
            {**common, "metric_name": "Macro AUROC", "metric_config": "macro", "metric_value": macro}
        )
    for label, values in (metrics.get("per_class") or {}).items():
        auroc = _number((values or {}).get("auroc"))
        if auroc is not None:
            results.append(
                {**common, "metric_name": f"AUROC {label}", "metric_config": label, "metric_value": auroc}
            )
    return results


def card_context(config_doc: Mapping[str, Any], *, name: str) -> dict[str, str]:
    """Markdown for every placeholder a card source may use."""
    config = config_doc.get("config") or {}
    weights = config_doc.get("weights") or {}
    parameters = weights.get("parameters")
    return {
        "name": name,
        "architecture": str(config_doc.get("architecture") or ""),
        "parameters": f"{parameters:,}" if isinstance(parameters, int) else "an unrecorded number of",
        "summary": _summary(config_doc),
        "metrics_table": _metrics_table(config_doc),
        "thresholds": _thresholds(config_doc),
        "preprocessing": _preprocessing(config),
        "training": _training(config_doc),
        "data": _data(config_doc),
        "config": _config(config),
        "weights": _weights(config_doc),
        "origin": _origin(config_doc),
    }


# -- sections -------------------------------------------------------------------------------
def _number(value: Any, digits: int = 4) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        return None
    return round(float(value), digits)


def _fmt(value: Any, digits: int = 3) -> str:
    number = _number(value, digits)
    return _MISSING if number is None else f"{number:.{digits}f}"


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _summary(doc: Mapping[str, Any]) -> str:
    training = doc.get("training") or {}
    metrics = doc.get("metrics") or {}
    if not training:
        return (
            "**No training is recorded for this model**: unless it was assembled from trained "
            "parts, its weights are a random initialisation. Train it with `cxrzoo train` before "
            "relying on its outputs."
        )
    dataset = dataset_info(training["dataset"])[1] if training.get("dataset") else "unrecorded data"
    text = f"Trained on {dataset}"
    fraction = training.get("fraction")
    if isinstance(fraction, int | float) and fraction < 1:
        text += f" ({fraction:.0%} of the images)"
    if training.get("seed") is not None:
        text += f" with seed {training['seed']}"
    text += "."
    evaluation = doc.get("evaluation") or {}
    held_out = _number(evaluation.get("macro_auroc"))
    macro = _number(metrics.get("macro_auroc"))
    if held_out is not None:
        text += f" Held-out macro AUROC **{held_out:.3f}** on the {evaluation.get('split')} split."
    if macro is not None:
        which = "validation (selection)" if metrics.get("split") == "val" else str(metrics.get("split"))
        text += f" Macro AUROC {macro:.3f} on the {which} split."
    if training.get("dataset") == "synthetic":
        text += (
            " The synthetic phantoms only exercise the pipeline: these weights have never seen a "
            "real radiograph and say nothing about clinical performance."
        )
    return text


#: Metrics every table shows; any other metric that was computed gets a column of its own.
_TABLE_METRICS = ("auroc", "f1", "precision", "recall")
_NOT_COLUMNS = {"average_precision", "specificity", "brier", "ece"}


def _metric_rows(metrics: Mapping[str, Any]) -> list[str]:
    """A per-finding table of ``metrics`` (an evaluation's metrics.json layout)."""
    per_class = metrics.get("per_class") or {}
    ran = [m for m in metrics.get("metrics") or [] if m not in _TABLE_METRICS and m not in _NOT_COLUMNS]
    # Positive counts tell how much to trust a finding's numbers (rare findings have few).
    counts = any(isinstance((v or {}).get("positives"), int) for v in per_class.values())
    header = ["Finding", "AUROC", "F1", "Precision", "Recall", *ran, "Threshold"] + (
        ["Positives"] if counts else []
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for label, values in per_class.items():
        v = values or {}
        cells = [label, *(_fmt(v.get(m)) for m in (*_TABLE_METRICS, *ran)), _fmt(v.get("threshold"))]
        if counts:
            cells.append(str(v.get("positives", _MISSING)))
        lines.append("| " + " | ".join(cells) + " |")
    macro = metrics.get("macro") or {}
    cells = ["**Macro**", f"**{_fmt(metrics.get('macro_auroc'))}**"]
    cells += (
        [_fmt(macro.get(m)) for m in ("f1", "precision", "recall", *ran)] + [""] + ([""] if counts else [])
    )
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _dataset_name(key: Any) -> str:
    return dataset_info(str(key))[1] if key else "unrecorded data"


def _metrics_table(doc: Mapping[str, Any]) -> str:
    """Held-out evaluations (recorded by ``cxrzoo evaluate``), then the validation metrics,
    labelled as such: they chose the checkpoint and the thresholds, so they flatter the model."""
    metrics = doc.get("metrics") or {}
    evaluation = doc.get("evaluation") or {}
    lines: list[str] = []
    if evaluation.get("per_class"):
        lines += [
            f"**Held-out evaluation** on the **{evaluation.get('split', 'unrecorded')}** split of "
            f"{_dataset_name(evaluation.get('dataset'))} ({evaluation.get('n_images', _MISSING)} images, "
            f"{evaluation.get('evaluated', 'unrecorded date')}), images the model never trained or "
            "was selected on. F1, precision and recall at each finding's calibrated threshold.",
            "",
            *_metric_rows(evaluation),
        ]
        not_scorable = evaluation.get("not_scorable") or {}
        if not_scorable:
            lines += [
                "",
                "Not scorable on these data: " + "; ".join(f"{k} ({v})" for k, v in not_scorable.items()),
            ]
        lines.append("")
    if not metrics.get("per_class") and metrics.get("macro_auroc") is None:
        return "\n".join(lines) if lines else "No evaluation is recorded for this model."
    selection = metrics.get("split") == "val"
    lines += [
        ("**Validation (selection) metrics**" if selection else "**Metrics**")
        + f" on the **{metrics.get('split', 'unrecorded')}** split of {_dataset_name(metrics.get('dataset'))}"
        + (
            ": these images chose the checkpoint and the thresholds, so they overstate what to expect "
            "on new data" + ("." if evaluation else "; run `cxrzoo evaluate` for held-out figures.")
            if selection
            else "."
        ),
        "",
        *_metric_rows(metrics),
    ]
    return "\n".join(lines)


def _thresholds(doc: Mapping[str, Any]) -> str:
    config = doc.get("config") or {}
    labels = config.get("labels") or []
    thresholds = config.get("thresholds")
    if not thresholds:
        return (
            "Not calibrated: every finding is called positive at probability 0.5. Calibrate on "
            "validation data before reading the positive calls."
        )
    calibration = doc.get("calibration") or {}
    how = ""
    if calibration:
        how = (
            f" chosen to maximise {calibration.get('method', 'an unrecorded criterion')} on the "
            f"{calibration.get('split', 'unrecorded')} split"
        )
    promised = doc.get("guarantees") if isinstance(doc.get("guarantees"), dict) else None
    if promised:
        data = promised.get("data") or {}
        how = (
            f", chosen on {promised.get('images')} images ({promised.get('split')} of "
            f"{data.get('data') or data.get('dataset') or 'the calibration data'}) so that "
            f"{promised.get('statement')} where the table says so"
        )
    lines = [
        f"A finding is called positive when its probability reaches its threshold{how}. They are "
        "saved in config.json and used by `model.positives(...)`.",
        "",
    ]
    per = (promised or {}).get("per_finding") or {}
    if promised:
        lines += ["| Finding | Threshold | Guarantee |", "|---|---:|---|"]
        for label, t in zip(labels, thresholds, strict=False):
            g = per.get(label) or {}
            said = (
                f"{promised['target']} ≥ {promised['level']:g} ({g.get('cases')} cases)"
                if g.get("guaranteed")
                else f"none: {g.get('reason', 'not computed')}"
            )
            lines.append(f"| {label} | {_fmt(t)} | {said} |")
    else:
        lines += ["| Finding | Threshold |", "|---|---:|"]
        lines += [f"| {label} | {_fmt(t)} |" for label, t in zip(labels, thresholds, strict=False)]
    gate = doc.get("ood") if isinstance(doc.get("ood"), dict) else None
    if gate:
        lines += [
            "",
            f"**Out-of-distribution gate.** Images unlike the {gate.get('fit_images')} it was fitted on "
            f"are flagged (`ood_score` above {_fmt(gate.get('threshold'))}, `in_distribution` false in "
            f"`cxrzoo predict`), at a false-rejection rate of {_fmt(gate.get('false_rejection_rate'), 2)} "
            f"chosen on {gate.get('heldout_images')} held-out images. Do not read the calls of a flagged image.",
        ]
    return "\n".join(lines)


def _preprocessing(config: Mapping[str, Any]) -> str:
    steps = config.get("preprocessing") or []
    if not steps:
        return "None recorded."
    size = config.get("image_size")
    lines = [
        "Applied in this order at training and at inference (recorded in config.json, so "
        "`model.predict` repeats it):",
        "",
    ]
    for i, step in enumerate(steps, 1):
        description = f"to {size} x {size} px" if step == "resize" and size else _transform_description(step)
        lines.append(f"{i}. `{step}`" + (f": {description}" if description else ""))
    lines.append("")
    lines.append(
        f"Input: {config.get('in_chans', 1)} channel(s) of {size or '?'} x {size or '?'} px, decoded "
        "from 8-bit grey images."
    )
    return "\n".join(lines)


def _transform_description(name: str) -> str:
    try:
        from cxrzoo.plugins import transforms

        return transforms.entry(name).description.rstrip(".")
    except Exception:  # a card must render even when a transform's plugin is missing
        return ""


#: Training facts shown under Data rather than Training.
_DATA_KEYS = {
    "dataset",
    "data",
    "options",
    "fraction",
    "val_fraction",
    "seed",
    "split",
    "image_size",
    "recipe",
}


def _training(doc: Mapping[str, Any]) -> str:
    training = doc.get("training") or {}
    if not training:
        return "No training is recorded."
    recipe = dict(training.get("recipe") or {})
    lines = [f"Recipe {_code(recipe.pop('name', None) or 'unrecorded')}, seed {_code(training.get('seed'))}."]
    if recipe:
        lines += ["", "| Setting | Value |", "|---|---|"]
        lines += [f"| {key} | {_code(value)} |" for key, value in recipe.items()]
    run = {k: v for k, v in training.items() if k not in _DATA_KEYS}
    if run:
        lines += ["", "| Run | Value |", "|---|---|"]
        lines += [f"| {key} | {_code(value)} |" for key, value in run.items()]
    return "\n".join(lines)


def _data(doc: Mapping[str, Any]) -> str:
    training = doc.get("training") or {}
    if not training:
        return "No training data is recorded."
    dataset_key = str(training.get("dataset"))
    dataset = DATASETS.get(dataset_key, (None, training.get("dataset") or "unrecorded"))[1]
    lines = [
        f"- Dataset: {dataset} (`{dataset_key}`)",
        f"- Source: {_code(training.get('data', _MISSING))}",
    ]
    if training.get("options"):
        lines.append(f"- Dataset options: {_code(training['options'])}")
    if training.get("fraction") is not None:
        lines.append(f"- Fraction of the images used: {training['fraction']}")
    if training.get("val_fraction") is not None:
        lines.append(f"- Validation fraction: {training['val_fraction']}")
    if training.get("image_size") is not None:
        lines.append(f"- Image size: {training['image_size']} px")
    split = training.get("split") or {}
    if split:
        lines += ["", "| Split | Images | Patients |", "|---|---:|---:|"]
        for part, count in split.items():
            images, patients = (
                (count.get("images"), count.get("patients")) if isinstance(count, dict) else (count, None)
            )
            lines.append(f"| {part} | {_count(images)} | {_count(patients)} |")
    return "\n".join(lines)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _MISSING


def _config(config: Mapping[str, Any]) -> str:
    shown = {
        k: v
        for k, v in config.items()
        # Nested records (a composite's member configs …) belong to sections of their own.
        if k not in {"labels", "thresholds", "preprocessing"}
        and not (isinstance(v, list | tuple) and any(isinstance(x, dict) for x in v))
    }
    if not shown:
        return "Defaults."
    lines = ["| Option | Value |", "|---|---|"]
    lines += [f"| {key} | {_code(value)} |" for key, value in shown.items()]
    return "\n".join(lines)


def _origin(doc: Mapping[str, Any]) -> str:
    """Where imported weights came from (``origin`` in config.json, written by ``cxrzoo import``)."""
    origin = doc.get("origin") or {}
    if not isinstance(origin, Mapping) or not origin:
        return "Trained by cxrzoo (no imported weights)."
    rows = [
        ("Source", "source"),
        ("Published at", "address"),
        ("File", "file"),
        ("sha256 of the published file", "sha256"),
        ("Licence", "licence"),
        ("Citation", "citation"),
        ("Thresholds", "thresholds"),
    ]
    lines = [f"- {title}: {origin[key]}" for title, key in rows if origin.get(key)]
    dropped = origin.get("dropped_outputs")
    if dropped:
        lines.append(f"- Unnamed outputs dropped: indices {dropped} of {len(origin.get('outputs') or [])}")
    return "\n".join(lines)


def _weights(doc: Mapping[str, Any]) -> str:
    weights = doc.get("weights") or {}
    lines = [
        f"- File: `{weights.get('file', 'model.safetensors')}` (safetensors; nothing is pickled)",
        f"- sha256: `{weights.get('sha256', _MISSING)}`",
    ]
    if weights.get("parameters") is not None:
        lines.append(f"- Parameters: {weights['parameters']:,}")
    versions = doc.get("versions") or {}
    if versions:
        lines.append("- Saved with: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if doc.get("saved"):
        lines.append(f"- Saved: {doc['saved']}")
    lines.append("")
    lines.append(
        "cxrzoo checks the sha256 above against the weights every time it loads or pulls this "
        "model and refuses weights that differ."
    )
    return "\n".join(lines)
