"""The core's metrics, registered through the same hook as any plugin's.

Registered by import path (``cxrzoo.metrics.plugin:auroc``, resolved by this module's
``__getattr__``), so that listing them does not import scikit-learn.
"""

from __future__ import annotations

from typing import Any

from cxrzoo.hookspecs import Register, hookimpl

#: name -> one-line description, as in :data:`cxrzoo.metrics.core.BUILTIN_METRICS` (a test
#: keeps the two in step).
DESCRIPTIONS: dict[str, str] = {
    "auroc": "Area under the ROC curve",
    "average_precision": "Average precision",
    "f1": "F1 at the finding's threshold",
    "precision": "Positive predictive value",
    "recall": "Sensitivity (true-positive rate)",
    "specificity": "True-negative rate",
    "brier": "Brier score",
    "ece": "Expected calibration error, 10 equal-width bins",
}


def __getattr__(name: str) -> Any:
    if name in DESCRIPTIONS:
        from cxrzoo.metrics.core import BUILTIN_METRICS

        return next(m for m in BUILTIN_METRICS if m.name == name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_metrics(register: Register) -> None:
    for name, description in DESCRIPTIONS.items():
        register(name, f"{__name__}:{name}", description=description)
