"""``xrv:NAME`` weight sources: a published torchxrayvision file as a cxrzoo model.

The file (downloaded from its release address and cached, or given with ``--file``) is read by
the core's safe reader (:func:`cxrzoo.weights.read_checkpoint`: a whole pickled
torchxrayvision module or a state dict, under the allow-list, never unpickled with code), and its
tensors are loaded into :class:`~cxrzoo_xrv.model.XrvDenseNet` / ``XrvResNet`` by the core loader.
Every tensor of the network must be found: a file of another architecture is refused.

Operating thresholds. torchxrayvision, when ``op_threshs`` is set, returns
``op_norm(sigmoid(logit))``: a piecewise-linear rescaling that maps each output's published
operating threshold to 0.5 (and returns 0.5 for an output whose threshold is NaN). cxrzoo keeps
the sigmoid itself as the probability and stores the published thresholds as the model's
decision thresholds: ``p >= threshold`` is exactly torchxrayvision's ``op_norm(p) >= 0.5``, so the
positive calls agree while probabilities stay comparable across models, calibration and
metrics. A named output without a published threshold gets 0.5 until the model is calibrated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cxrzoo.labels import canonical
from cxrzoo.weights import (
    LoadedWeights,
    WeightSourceError,
    fetch,
    init_from,
    read_checkpoint,
    sha256_of,
)
from cxrzoo_xrv import published
from cxrzoo_xrv.published import LICENCE, PublishedWeights

#: Tensors of a published file that are not the network's (torchxrayvision's thresholds buffer).
_NOT_NETWORK = ("op_threshs",)


def model_class(weights: PublishedWeights) -> type:
    from cxrzoo_xrv.model import XrvDenseNet, XrvResNet

    return XrvDenseNet if weights.architecture == "xrv_densenet" else XrvResNet


def build(weights: PublishedWeights, state: dict[str, torch.Tensor], *, where: str) -> Any:
    """The cxrzoo model of ``weights`` holding the tensors of ``state``; refuses a mismatch."""
    labels = tuple(canonical(weights.outputs[i]) or weights.outputs[i] for i in weights.named)
    thresholds = tuple(
        0.5 if weights.operating_thresholds[i] is None else float(weights.operating_thresholds[i])
        for i in weights.named
    )
    cls = model_class(weights)
    config = cls.config_class(labels=labels, thresholds=thresholds, image_size=weights.input_size)
    model = cls(config)
    model.architecture = weights.architecture
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in _NOT_NETWORK}
    report = init_from(model, state, source_name=weights.source, source_labels=weights.outputs)
    missing = [k for k in report.new if not k.endswith("num_batches_tracked")]
    reshaped = [k for k, why in report.details.items() if not why.startswith("rows of")]
    if missing or reshaped or report.unused:
        shown = (missing or reshaped or report.unused)[:3]
        raise WeightSourceError(
            f"{where} does not hold the network of {weights.source}: {len(missing)} tensor(s) not found, "
            f"{len(reshaped)} of another shape, {len(report.unused)} left over (e.g. {shown}); is it the "
            f"file published at {weights.url}?"
        )
    return model.eval()


def load(name: str, file: str | None = None) -> LoadedWeights:
    """The ``xrv:NAME`` source: the published file (or ``file``) as a ready cxrzoo model."""
    weights = published.get(name)
    path = Path(file).expanduser() if file else fetch(weights.url)
    state = read_checkpoint(path)
    model = build(weights, state, where=str(path))
    dropped = [i for i, n in enumerate(weights.outputs) if not n]
    model.metadata = {
        "origin": {
            "source": weights.source,
            "address": weights.url,
            "file": path.name,
            "sha256": sha256_of(path),
            "licence": LICENCE,
            "citation": weights.citation,
            "outputs": list(weights.outputs),
            "dropped_outputs": dropped,
            "operating_thresholds": list(weights.operating_thresholds),
            "thresholds": (
                "torchxrayvision's published operating thresholds (probability >= threshold is its "
                "op_norm output >= 0.5); 0.5 where none is published"
            ),
        },
        "training": {"dataset": weights.training_data, "published_by": "torchxrayvision"},
    }
    return LoadedWeights(
        state=model.state_dict(),
        source=weights.source,
        labels=tuple(model.labels),
        provenance=model.metadata["origin"],
        model=model,
    )
