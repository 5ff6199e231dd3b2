"""The core's metrics, registered through the same hook as any plugin's."""

from __future__ import annotations

from cxrzoo.hookspecs import Register, hookimpl
from cxrzoo.metrics.core import BUILTIN_METRICS


@hookimpl
def register_metrics(register: Register) -> None:
    for metric in BUILTIN_METRICS:
        register(metric.name, metric, description=metric.description)
