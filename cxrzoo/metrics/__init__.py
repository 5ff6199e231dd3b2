"""Honest per-finding evaluation: metrics, threshold calibration, bootstrap CIs, patient folds.

Typical use, with thresholds chosen on the validation split and applied to the test split::

    from cxrzoo.metrics import calibrate_thresholds, evaluate_predictions, bootstrap_ci

    calibration = calibrate_thresholds(y_val, p_val, method="f1")
    report = evaluate_predictions(y_test, p_test, LABELS, thresholds=calibration.as_list())
    intervals = bootstrap_ci(y_test, p_test, LABELS, thresholds=calibration.as_list())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrzoo.metrics.bootstrap import VECTORISED_METRICS, bootstrap_ci, rank_metrics, resample_weights
    from cxrzoo.metrics.calibration import Calibration, calibrate_thresholds
    from cxrzoo.metrics.core import (
        BUILTIN_METRICS,
        DEFAULT_METRICS,
        STANDARD_METRICS,
        Metric,
        evaluate_predictions,
        get_metric,
        validate_predictions,
        validate_thresholds,
    )
    from cxrzoo.metrics.crossval import patient_kfold, rarest_positive

__all__ = [
    "BUILTIN_METRICS",
    "DEFAULT_METRICS",
    "STANDARD_METRICS",
    "VECTORISED_METRICS",
    "Calibration",
    "Metric",
    "bootstrap_ci",
    "calibrate_thresholds",
    "evaluate_predictions",
    "get_metric",
    "patient_kfold",
    "rank_metrics",
    "rarest_positive",
    "resample_weights",
    "validate_predictions",
    "validate_thresholds",
]

#: Where each public name lives; the modules import numpy and scikit-learn, so they are loaded
#: on first use and registering the metrics (which imports this package) stays cheap.
_MODULES = {
    "VECTORISED_METRICS": "bootstrap",
    "bootstrap_ci": "bootstrap",
    "rank_metrics": "bootstrap",
    "resample_weights": "bootstrap",
    "Calibration": "calibration",
    "calibrate_thresholds": "calibration",
    "patient_kfold": "crossval",
    "rarest_positive": "crossval",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        module = importlib.import_module(f"{__name__}.{_MODULES.get(name, 'core')}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
