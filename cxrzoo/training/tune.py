"""Hyper-parameter search over a training recipe, scored on patients the model has not seen.

    from cxrzoo.training.tune import tune_model
    result = tune_model("chest_xray_attention", data="~/nih", out="best.json", trials=20, folds=3)

Every trial is one recipe, scored by patient-grouped K-fold cross-validation of the training
patients only (:func:`cxrzoo.training.run.crossval_run`: the train and validation splits pooled;
the test split's images are never decoded). Optuna's TPE sampler proposes the recipes and its
median pruner stops a trial after a fold whose running mean falls below the median of the
completed trials at that fold. The study lives in a SQLite file under
``$CXRZOO_HOME/tune/<study>.db``, named after the model, the data and the search: a run that is
killed, or asked for more trials later, continues it and keeps every finished trial.

The best recipe is written as a recipe file (``cxrzoo train --recipe FILE`` reads it) and a
report folder beside it holds every trial's fold mean and spread, the parameters'
importances (a plot too) and a summary. This is the only module that imports optuna.

The search space (``--space FILE``) is JSON, one entry per parameter, merged into the default
space (:func:`default_space`) unless it holds ``"replace": true``::

    {
      "lr": {"low": 1e-4, "high": 1e-2, "log": true},     # a float range (log scale)
      "epochs": {"low": 10, "high": 40, "step": 10},      # an int range (the field is an int)
      "augment": ["augment_light", "augment_strong"],     # a choice
      "augment_strength": {"low": 0.5, "high": 1.5,
                           "when": {"augment": ["augment_strong"]}},  # only in those trials
      "image_size": 64,                                   # a fixed value
      "flip_tta": null                                    # not searched (the recipe's value)
    }

A parameter is any recipe field (``cxrzoo.training.recipes.Recipe``), any model config field
(``flip_tta``, ``image_size``, …) or ``augment_strength`` (the ranges of the augmentation preset
scaled by it: :func:`cxrzoo.transforms.augment.at_strength`). A range may say ``"type":
"float"`` or ``"int"`` (default: the field's type) and ``"step"``; a choice may be written
``{"choices": [...]}`` to add a ``"when"``, which names earlier parameters (or fixed values)
and the values for which this one is searched. ``--set KEY=VALUE`` fixes a parameter and takes
it out of the search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrzoo.errors import DataError, UserError

if TYPE_CHECKING:
    import optuna

    from cxrzoo.data.arrays import ArrayData
    from cxrzoo.training.recipes import Recipe
    from cxrzoo.training.spec import RunSpec

Echo = Callable[[str], None]

#: The pseudo-parameter that scales the augmentation preset's ranges.
STRENGTH = "augment_strength"
#: What a report folder holds (the output rules of :mod:`cxrzoo.outputs`).
REPORT_KIND = "tune report"
REPORT_FILES = ("summary.md", "trials.csv", "trials.json", "importance.json", "importance.png", "history.png")
AUGMENT_PRESETS = ("augment_light", "augment_report", "augment_strong")


class SpaceError(UserError):
    """A search space that cannot be searched."""


# -- the search space ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched parameter: a float or int range, or a choice."""

    name: str
    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    #: Searched only when each named parameter (or fixed value) is one of these values.
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def applies(self, values: dict[str, Any]) -> bool:
        return all(values.get(key) in allowed for key, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            doc: dict[str, Any] = {"choices": list(self.choices)}
        else:
            doc = {"type": self.kind, "low": self.low, "high": self.high}
            if self.log:
                doc["log"] = True
            if self.step is not None:
                doc["step"] = self.step
        if self.when:
            doc["when"] = {k: list(v) for k, v in self.when.items()}
        return doc

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        scale = " (log)" if self.log else ""
        step = f" step {self.step:g}" if self.step is not None else ""
        return f"{self.kind} {self.low:g} … {self.high:g}{scale}{step}"


def default_space(base: Recipe) -> dict[str, Any]:
    """The default search around ``base`` (the ``--recipe``): learning rate and weight decay (log
    scale), augmentation preset and strength, epochs and schedule, loss weighting, flip TTA."""
    epochs_low = max(1, math.ceil(base.epochs / 3))
    return {
        "lr": {"low": base.lr / 10, "high": min(base.lr * 10, 1.0), "log": True},
        "weight_decay": {"low": 1e-5, "high": 0.2, "log": True},
        "augment": [None, *AUGMENT_PRESETS],
        STRENGTH: {"low": 0.5, "high": 1.5, "when": {"augment": list(AUGMENT_PRESETS)}},
        "epochs": (
            {"low": epochs_low, "high": base.epochs} if base.epochs > epochs_low else {"value": base.epochs}
        ),
        "schedule": ["onecycle", "cosine"],
        "loss": ["weighted_bce", "bce"],
        "max_pos_weight": {"low": 2.0, "high": 50.0, "log": True, "when": {"loss": ["weighted_bce"]}},
        "flip_tta": [False, True],
    }


def read_space(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON of a ``--space`` file (see the module docstring); one line naming it if unreadable."""
    where = f"--space {path}"
    try:
        doc = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SpaceError(f"{where}: expected a JSON object of parameter -> range, list of choices or value")
    return doc


def _field_types(config_class: type) -> tuple[dict[str, Any], dict[str, Any]]:
    from cxrzoo.training.recipes import Recipe

    recipe = {
        k: v
        for k, v in typing.get_type_hints(Recipe).items()
        if k in {f.name for f in dataclasses.fields(Recipe)}
    }
    recipe.pop("name", None)
    config = {
        k: v
        for k, v in typing.get_type_hints(config_class).items()
        if k in {f.name for f in dataclasses.fields(config_class)}
    }
    return recipe, config


def build_space(
    doc: dict[str, Any],
    *,
    config_class: type,
    fixed: dict[str, Any],
    where: str = "--space",
) -> tuple[list[Param], dict[str, Any]]:
    """Parse a space (the default merged with ``--space``'s entries) into the searched
    parameters, in order, and the fixed values it sets; ``fixed`` (``--set``) entries are left
    out of the search. Every range's ends and every choice are checked against the recipe and
    the model config before any trial runs."""
    recipe_types, config_types = _field_types(config_class)
    known = {**recipe_types, **config_types, STRENGTH: float}
    params: list[Param] = []
    fixed_values: dict[str, Any] = {}
    later = [k for k in doc if k != "replace"]
    for name, spec in doc.items():
        if name == "replace":
            continue
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise SpaceError(
                f"{where}: {name!r} is neither a recipe option, a model config option nor {STRENGTH!r}.{hint}"
            )
        if name in fixed or spec is None:
            continue
        param = _param(name, spec, known[name], where)
        if isinstance(param, Param):
            for key in param.when:
                # A condition reads a value known when the parameter is drawn: an earlier
                # parameter, or a recipe or config value (fixed, or the base recipe's).
                if (
                    key == name
                    or key not in known
                    or later.index(name) < (later.index(key) if key in later else -1)
                ):
                    raise SpaceError(
                        f"{where}: {name}: 'when' names {key!r}, which is neither a recipe or config "
                        f"option nor a parameter listed before {name}"
                    )
            params.append(param)
        else:
            fixed_values[name] = param
    # Each range's ends and each choice must make a valid recipe and config, now.
    for param in params:
        values = param.choices if param.kind == "choice" else (param.low, param.high)
        for value in values:
            try:
                _check_value(param.name, value, config_class)
            except UserError as exc:
                raise SpaceError(f"{where}: {param.name}: {exc}") from None
    for name, value in fixed_values.items():
        try:
            _check_value(name, value, config_class)
        except UserError as exc:
            raise SpaceError(f"{where}: {name}: {exc}") from None
    return params, fixed_values


def _check_value(name: str, value: Any, config_class: type) -> None:
    from cxrzoo.training.recipes import Recipe

    if name == STRENGTH:
        from cxrzoo.transforms.augment import at_strength

        at_strength("augment_strong", float(value))
        return
    if name in {f.name for f in dataclasses.fields(config_class)}:
        config_class().replace(**{name: value})
        return
    recipe = Recipe().replace(**{name: value})
    if name == "augment" and recipe.augment is not None:
        from cxrzoo.transforms.base import build_transform

        build_transform(recipe.augment, image_size=32)


def _param(name: str, spec: Any, tp: Any, where: str) -> Param | Any:
    """A :class:`Param`, or the fixed value a non-searched entry gives."""
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        return spec
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "value", "when"}
    if unknown:
        raise SpaceError(
            f"{where}: {name}: unknown key(s) {sorted(unknown)}; a range has low, high, log, step, type, "
            f"when; a choice has choices, when; a fixed value is value"
        )
    when = spec.get("when") or {}
    if not isinstance(when, dict) or not all(isinstance(v, list) and v for v in when.values()):
        raise SpaceError(f"{where}: {name}: 'when' must map parameter names to non-empty lists of values")
    when_t = {str(k): tuple(v) for k, v in when.items()}
    if "value" in spec:
        return spec["value"]
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: {name}: 'choices' must be a non-empty list")
        if len(choices) == 1 and not when_t:
            return choices[0]
        return Param(name, "choice", choices=tuple(choices), when=when_t)
    if "low" not in spec or "high" not in spec:
        raise SpaceError(
            f'{where}: {name}: expected a list of choices, {{"low": …, "high": …}} or a fixed value'
        )
    low, high = spec["low"], spec["high"]
    if any(
        isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in (low, high)
    ):
        raise SpaceError(f"{where}: {name}: low and high must be numbers, got {low!r} and {high!r}")
    kind = spec.get("type") or ("int" if tp is int else "float")
    if kind not in ("int", "float"):
        raise SpaceError(f"{where}: {name}: type {kind!r}: expected int or float")
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if low > high:
        raise SpaceError(f"{where}: {name}: low {low!r} is above high {high!r}")
    if log and low <= 0:
        raise SpaceError(f"{where}: {name}: a log range needs low > 0, got {low!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise SpaceError(f"{where}: {name}: step must be a positive number, got {step!r}")
    if step is not None and log:
        raise SpaceError(f"{where}: {name}: a range cannot have both step and log")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise SpaceError(f"{where}: {name}: an int range needs whole low and high, got {low!r} and {high!r}")
    if low == high and not when_t:
        return int(low) if kind == "int" else float(low)
    return Param(name, kind, low=low, high=high, log=log, step=step, when=when_t)


def split_params(
    values: dict[str, Any], base: Recipe, config_class: type
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's values as recipe overrides and model config overrides (``augment_strength``
    folded into the augmentation spec)."""
    from cxrzoo.transforms.augment import at_strength

    config_fields = {f.name for f in dataclasses.fields(config_class)}
    recipe, config = {}, {}
    for key, value in values.items():
        if key == STRENGTH:
            continue
        (config if key in config_fields else recipe)[key] = value
    strength = values.get(STRENGTH)
    augment = recipe.get("augment", base.augment)
    # A strength scales a preset given by name; a spelled-out augmentation keeps its ranges.
    if strength is not None and isinstance(augment, str) and "(" not in augment:
        recipe["augment"] = at_strength(augment, float(strength))
    return recipe, config


# -- the search ----------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """What a search found: the best trial, every trial, where the study and outputs are."""

    study_name: str
    storage: Path
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    counts: dict[str, int]
    out: Path
    report: Path
    importances: dict[str, float] | None
    recipe_file: dict[str, Any]


def study_path(name: str) -> Path:
    from cxrzoo import store
    from cxrzoo.fsio import check_name, safe_join

    return safe_join(store.home() / "tune", check_name(name, what="study name") + ".db")


def study_name_for(model: str, run: RunSpec, key: dict[str, Any]) -> str:
    """A study's name: the model, the data set's name and a digest of everything that makes two
    searches comparable (data, search space, fixed settings, base recipe, folds, seed)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    data = "".join(c if c.isalnum() or c in "._-" else "-" for c in run.data.name)[:40]
    return f"{model}-{data}-{digest}"


def default_report(out: Path) -> Path:
    return out.with_suffix(".report") if out.suffix == ".json" else Path(f"{out}.report")


def tune_model(
    model_name: str,
    *,
    out: str | os.PathLike[str],
    trials: int = 20,
    folds: int = 3,
    budget: float | None = None,
    space: dict[str, Any] | str | os.PathLike[str] | None = None,
    jobs: int = 1,
    report: str | os.PathLike[str] | None = None,
    study: str | None = None,
    overwrite: bool = False,
    echo: Echo = print,
    progress: bool = True,
    recipe: str | Recipe = "default",
    recipe_overrides: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
    **options: Any,
) -> TuneResult:
    """Search ``model_name``'s recipe (see the module docstring) until the study holds ``trials``
    finished trials or ``budget`` minutes pass; write the best recipe to ``out`` and the report.

    ``recipe`` is the base recipe (every field not searched keeps its value); ``recipe_overrides``
    and ``config_overrides`` (``--set``, ``--image-size``) are fixed and leave the search.
    ``options`` are :func:`~cxrzoo.training.spec.resolve_run`'s data and device options
    (``data``, ``dataset``, ``dataset_options``, ``fraction``, ``seed``, ``device``).
    """
    import optuna

    from cxrzoo.fsio import entry_lock
    from cxrzoo.outputs import check_file, check_folder
    from cxrzoo.training.recipes import is_recipe_doc
    from cxrzoo.training.spec import resolve_run

    out = Path(out)
    if out.suffix != ".json":
        raise UserError(f"--out {out}: expected a path ending in .json (the recipe file)")
    report_dir = Path(report) if report is not None else default_report(out)
    if report_dir.resolve() == out.resolve():
        raise UserError(f"--report {report_dir}: must differ from --out")
    if trials < 1:
        raise UserError(f"--trials {trials}: expected at least 1")
    if folds < 2:
        raise UserError(f"--folds {folds}: expected at least 2")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: expected at least 1")
    if budget is not None and not (budget > 0 and math.isfinite(budget)):
        raise UserError(f"--budget {budget}: expected a positive number of minutes")
    check_file(out, option="--out", kind="cxrzoo recipe file", is_own=is_recipe_doc, overwrite=overwrite)
    check_folder(report_dir, option="--report", kind=REPORT_KIND, names=REPORT_FILES, overwrite=overwrite)

    fixed_recipe = dict(recipe_overrides or {})
    fixed_config = dict(config_overrides or {})
    base_run = resolve_run(
        model_name,
        recipe=recipe,
        recipe_overrides=fixed_recipe,
        config_overrides=fixed_config,
        save=False,
        progress=False,
        **options,
    )
    if not base_run.model_class.trains_itself:
        raise UserError(
            f"{model_name} is not trained by gradient descent itself; tune the models it is built from"
        )
    config_class = base_run.model_class.config_class
    space_doc: dict[str, Any]
    where = "--space"
    if space is None:
        space_doc = default_space(base_run.recipe)
    else:
        user = read_space(space) if not isinstance(space, dict) else dict(space)
        if not isinstance(space, dict):
            where = f"--space {space}"
        space_doc = {} if user.get("replace") is True else default_space(base_run.recipe)
        space_doc.update({k: v for k, v in user.items() if k != "replace"})
    # What --set and --image-size fixed (a default the run resolves, such as the phantoms'
    # image size, may still be searched).
    fixed = {**fixed_recipe, **fixed_config}
    params, space_fixed = build_space(space_doc, config_class=config_class, fixed=fixed, where=where)
    if not params:
        raise SpaceError(f"{where}: nothing left to search (every parameter is fixed by the space or --set)")
    space_recipe, space_config = split_params(space_fixed, base_run.recipe, config_class)
    fixed_recipe.update(space_recipe)
    fixed_config.update(space_config)
    base_run = resolve_run(
        model_name,
        recipe=recipe,
        recipe_overrides=fixed_recipe,
        config_overrides=fixed_config,
        save=False,
        progress=False,
        **options,
    )
    context = {**base_run.recipe.to_dict(), **base_run.config.to_dict()}
    space_summary = {p.name: p.to_dict() for p in params}
    key = {
        "model": model_name,
        "data": base_run.data.to_dict(),
        "space": space_summary,
        "recipe": base_run.recipe.to_dict(),
        "config": {k: _jsonable(getattr(base_run.config, k)) for k in base_run.config_overrides},
        "folds": folds,
        "seed": base_run.seed,
    }
    name = study or study_name_for(model_name, base_run, key)
    storage_path = study_path(name)
    storage_path.parent.mkdir(parents=True, exist_ok=True)

    for note in base_run.notes:
        echo(note)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with entry_lock(storage_path, what=f"Study {name!r}"):
        storage = optuna.storages.RDBStorage(f"sqlite:///{storage_path}")
        study_obj = _open_study(storage, name, trials=trials, seed=base_run.seed)
        _requeue_interrupted(study_obj, echo)
        done = _finished(study_obj)
        remaining = max(0, trials - done)
        echo(
            f"Study {name} ({storage_path}): {done} finished trial(s) kept, {remaining} to run; "
            f"{folds}-fold patient-grouped cross-validation of the training patients"
        )
        search = _Search(
            model_name=model_name,
            base_run=base_run,
            params=params,
            context=context,
            fixed_recipe=fixed_recipe,
            fixed_config=fixed_config,
            folds=folds,
            options=options,
            recipe=recipe,
            echo=echo,
        )
        if remaining:
            search.run(
                study_obj,
                remaining,
                timeout=None if budget is None else budget * 60,
                jobs=jobs,
                progress=progress,
            )
        rows = [trial_row(t) for t in study_obj.get_trials(deepcopy=False)]
        complete = [t for t in study_obj.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not complete:
            raise DataError(
                f"Study {name}: no trial completed ({len(rows)} tried, {_counts(rows)}); nothing to write. "
                f"Run again (finished trials are kept), or give more --trials or --budget"
            )
        best_trial = study_obj.best_trial
        importances = _importances(study_obj, seed=base_run.seed)
    best_row = trial_row(best_trial)
    recipe_over, config_over = split_params(best_trial.params, base_run.recipe, config_class)
    best_run = resolve_run(
        model_name,
        recipe=recipe,
        recipe_overrides={**fixed_recipe, **recipe_over},
        config_overrides={**fixed_config, **config_over},
        save=False,
        progress=False,
        **options,
    )
    counts = _counts(rows)
    search_doc = {
        "study": name,
        "storage": str(storage_path),
        "model": model_name,
        "metric": f"macro AUROC, {folds}-fold patient-grouped cross-validation of the training patients "
        f"(train_val; the test list is not used)",
        "folds": folds,
        "seed": base_run.seed,
        "trials": counts,
        "best": {
            "trial": best_trial.number,
            "macro_auroc_mean": best_row["mean"],
            "macro_auroc_sd": best_row["sd"],
            "fold_auroc": best_row["folds"],
            "params": _jsonable(best_trial.params),
        },
        "base_recipe": recipe if isinstance(recipe, str) else recipe.name,
        "fixed": _jsonable(
            {
                **{k: getattr(best_run.recipe, k) for k in fixed_recipe},
                **{k: getattr(best_run.config, k) for k in {**fixed_config, **base_run.config_overrides}},
            }
        ),
        "space": space_summary,
        "data": base_run.data.to_dict(),
        "importances": importances,
        "optuna": optuna.__version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    file_doc = _recipe_file(best_run, out, model_name, search_doc)
    _write_outputs(out, report_dir, file_doc, rows, importances, search_doc)
    echo(
        f"Best trial {best_trial.number}: macro AUROC {_pm(best_row['mean'], best_row['sd'])} over "
        f"{folds} folds ({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed)"
    )
    echo(f"Wrote {out} (train with: cxrzoo train {model_name} --recipe {out}) and {report_dir}/")
    return TuneResult(name, storage_path, best_row, rows, counts, out, report_dir, importances, file_doc)


def _open_study(storage: Any, name: str, *, trials: int, seed: int) -> optuna.Study:
    import optuna

    existing = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    # A resumed search must not redraw the random start of the run before it: the sampler's seed
    # moves on with the number of trials already in the study.
    sampler = optuna.samplers.TPESampler(
        n_startup_trials=min(10, max(2, trials // 3)), seed=seed + len(existing.trials)
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def _requeue_interrupted(study: optuna.Study, echo: Echo) -> None:
    """Trials left running by a killed search (this process holds the study's lock, so no one
    else runs them) are marked failed and their parameters queued to run again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, skip_if_exists=False)
        echo(f"Trial {trial.number} was interrupted (a killed run); it runs again")


def _finished(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


class _Search:
    """The objective: one trial = one recipe, cross-validated; pruned between folds."""

    def __init__(
        self,
        *,
        model_name: str,
        base_run: RunSpec,
        params: list[Param],
        context: dict[str, Any],
        fixed_recipe: dict[str, Any],
        fixed_config: dict[str, Any],
        folds: int,
        options: dict[str, Any],
        recipe: str | Recipe,
        echo: Echo,
    ) -> None:
        self.model_name, self.base_run, self.params = model_name, base_run, params
        self.context, self.folds, self.options, self.recipe = context, folds, options, recipe
        self.fixed_recipe, self.fixed_config = fixed_recipe, fixed_config
        self.echo = echo
        self._arrays: dict[Any, ArrayData] = {}
        self._lock = threading.Lock()

    def values(self, trial: optuna.Trial) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for param in self.params:
            if param.applies({**self.context, **chosen}):
                chosen[param.name] = param.suggest(trial)
        return chosen

    def arrays(self, run: RunSpec) -> ArrayData:
        from cxrzoo.training.run import crossval_arrays

        key = (run.config.image_size, tuple(run.config.preprocessing), run.config.in_chans)
        with self._lock:  # one decoding per preprocessing, shared by the trials (and threads)
            if key not in self._arrays:
                self._arrays[key] = crossval_arrays(run, echo=self.echo)
            return self._arrays[key]

    def objective(self, trial: optuna.Trial) -> float:
        import optuna

        from cxrzoo.training.run import crossval_run, fold_summary
        from cxrzoo.training.spec import resolve_run

        values = self.values(trial)
        recipe_over, config_over = split_params(
            values, self.base_run.recipe, self.base_run.model_class.config_class
        )
        run = resolve_run(
            self.model_name,
            recipe=self.recipe,
            recipe_overrides={**self.fixed_recipe, **recipe_over},
            config_overrides={**self.fixed_config, **config_over},
            save=False,
            progress=False,
            **self.options,
        )
        trial.set_user_attr("recipe", run.recipe.to_dict())
        t0 = time.perf_counter()

        def on_fold(k: int, result: dict[str, Any], so_far: list[dict[str, Any]]) -> None:
            scores = [f["macro_auroc"] for f in so_far]
            trial.set_user_attr("folds", scores)
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
            mean, _ = fold_summary(so_far)
            self.echo(
                f"  trial {trial.number} fold {k + 1}/{self.folds}: macro AUROC {_fmt(result['macro_auroc'])}"
            )
            if mean is None:
                return
            trial.report(mean, step=k)
            if k + 1 < self.folds and trial.should_prune():
                raise optuna.TrialPruned(f"fold {k + 1} running mean {mean:.4f} below the median")

        result = crossval_run(run, folds=self.folds, arrays=self.arrays(run), on_fold=on_fold, echo=_quiet)
        mean, sd = result["macro_auroc_mean"], result["macro_auroc_std"]
        trial.set_user_attr("sd", sd)
        return float("nan") if mean is None else mean

    def run(self, study: optuna.Study, n: int, *, timeout: float | None, jobs: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n,
            desc=f"tune {self.model_name}",
            unit="trial",
            dynamic_ncols=True,
            disable=not progress or None,
        )
        outer = self.echo

        def echo(message: str) -> None:
            if progress and not bar.disable:
                bar.write(message)
            else:
                outer(message)

        self.echo = echo

        def done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            row = trial_row(trial)
            state = row["state"].lower()
            echo(
                f"Trial {trial.number} {state}: macro AUROC {_pm(row['mean'], row['sd'])} "
                f"({len(row['folds'])}/{self.folds} folds, {row['seconds']}s) {_short(trial.params)}"
            )
            bar.update(1)
            try:
                bar.set_postfix(best=f"{study.best_value:.4f}")
            except ValueError:
                pass

        try:
            study.optimize(
                self.objective, n_trials=n, timeout=timeout, n_jobs=jobs, callbacks=[done], catch=()
            )
        finally:
            bar.close()
            self.echo = outer


def _quiet(_message: str) -> None:
    pass


# -- results --------------------------------------------------------------------------------------
def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as the report lists it: number, state, fold scores, their mean and spread."""
    folds = list(trial.user_attrs.get("folds", []))
    scores = [s for s in folds if s is not None]
    mean = float(sum(scores) / len(scores)) if scores else None
    sd = None
    if len(scores) > 1:
        sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    seconds = trial.user_attrs.get("seconds")
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
    return {
        "trial": trial.number,
        "state": trial.state.name,
        "folds": folds,
        "mean": mean,
        "sd": sd,
        "value": trial.value if trial.state.name == "COMPLETE" else None,
        "seconds": seconds,
        "params": _jsonable(trial.params),
        "interrupted": bool(trial.user_attrs.get("interrupted", False)),
    }


def _counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    states = [r["state"] for r in rows]
    return {
        "tried": sum(s in ("COMPLETE", "PRUNED", "FAIL") for s in states),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
    }


def _importances(study: optuna.Study, *, seed: int) -> dict[str, float] | None:
    """fANOVA importance of each parameter over the completed trials; None when there are too
    few (two) or they do not differ."""
    import optuna

    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    return {k: round(float(v), 4) for k, v in found.items()} or None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    return value


def _recipe_file(run: RunSpec, out: Path, model: str, search: dict[str, Any]) -> dict[str, Any]:
    from cxrzoo.training.recipes import RecipeFile

    recipe = run.recipe.replace()
    recipe = dataclasses.replace(recipe, name=out.stem)
    config = {k: _jsonable(getattr(run.config, k)) for k in sorted(run.config_overrides)}
    return RecipeFile(recipe, config, model).to_dict(search)


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "undefined"
    return f"{mean:.4f}" + ("" if sd is None else f" ± {sd:.4f}")


def _short(params: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else json.dumps(v)

    return " ".join(f"{k}={show(v)}" for k, v in params.items())


def _write_outputs(
    out: Path,
    report_dir: Path,
    file_doc: dict[str, Any],
    rows: list[dict[str, Any]],
    importances: dict[str, float] | None,
    search: dict[str, Any],
) -> None:
    from cxrzoo.outputs import result_folder, write_text

    with result_folder(report_dir, kind=REPORT_KIND) as tmp:
        (tmp / "trials.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        (tmp / "trials.csv").write_text(_trials_csv(rows), encoding="utf-8")
        (tmp / "importance.json").write_text(
            json.dumps({"importances": importances, "method": "fANOVA over completed trials"}, indent=1)
            + "\n",
            encoding="utf-8",
        )
        _plot_importances(importances, tmp / "importance.png")
        _plot_history(rows, tmp / "history.png")
        (tmp / "summary.md").write_text(_summary(file_doc, rows, importances, search, out), encoding="utf-8")
    write_text(out, json.dumps(file_doc, indent=2) + "\n")


def _trials_csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    names = sorted({k for r in rows for k in r["params"]})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "state", "folds_done", "mean", "sd", "seconds", *names, "fold_auroc"])
    for r in rows:
        writer.writerow(
            [
                r["trial"],
                r["state"],
                len(r["folds"]),
                "" if r["mean"] is None else f"{r['mean']:.6f}",
                "" if r["sd"] is None else f"{r['sd']:.6f}",
                "" if r["seconds"] is None else r["seconds"],
                *(json.dumps(r["params"][n]) if n in r["params"] else "" for n in names),
                " ".join(_fmt(s) for s in r["folds"]),
            ]
        )
    return buf.getvalue()


def _plot_importances(importances: dict[str, float] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.4 * max(3, len(importances or {})) + 1))
    if importances:
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="#4c72b0")
        ax.set_xlabel("importance (fANOVA, share of the variance of the fold mean)")
    else:
        ax.text(0.5, 0.5, "needs at least two completed trials that differ", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Parameter importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_history(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    colours = {"COMPLETE": "#4c72b0", "PRUNED": "#dd8452", "FAIL": "#c44e52"}
    for state, colour in colours.items():
        pts = [r for r in rows if r["state"] == state and r["mean"] is not None]
        if pts:
            ax.errorbar(
                [r["trial"] for r in pts],
                [r["mean"] for r in pts],
                yerr=[r["sd"] or 0 for r in pts],
                fmt="o",
                color=colour,
                label=state.lower(),
                capsize=3,
            )
    best, xs, ys = -math.inf, [], []
    for r in rows:
        if r["state"] == "COMPLETE" and r["mean"] is not None:
            best = max(best, r["mean"])
            xs.append(r["trial"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="grey", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("fold mean macro AUROC (± sd)")
    if any(r["mean"] is not None for r in rows):
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _summary(
    file_doc: dict[str, Any],
    rows: list[dict[str, Any]],
    importances: dict[str, float] | None,
    search: dict[str, Any],
    out: Path,
) -> str:
    counts, best = search["trials"], search["best"]
    lines = [
        f"# Recipe search: {search['model']}",
        "",
        f"- Study `{search['study']}` in `{search['storage']}`",
        f"- Data: {search['data'].get('dataset')}{' ' + str(search['data']['data']) if search['data'].get('data') else ''}"
        f" (fraction {search['data'].get('fraction')}, seed {search['seed']})",
        f"- Score: {search['metric']}",
        f"- Trials tried: {counts['tried']} ({counts['complete']} complete, {counts['pruned']} pruned after a "
        f"fold below the median, {counts['failed']} failed)",
        f"- Best: trial {best['trial']}, macro AUROC {_pm(best['macro_auroc_mean'], best['macro_auroc_sd'])} "
        f"(folds: {', '.join(_fmt(s) for s in best['fold_auroc'])})",
        f"- Recipe file: `{out}` (`cxrzoo train {search['model']} --recipe {out}`)",
        "",
        "The best of many trials is an optimistic estimate of what its recipe scores on new patients: "
        "compare it with the other trials' spread, and confirm it on data the search never saw.",
        "",
        "## Best recipe",
        "",
        "```json",
        json.dumps({"recipe": _changed(file_doc["recipe"]), "config": file_doc["config"]}, indent=2),
        "```",
        "",
        "## Search space",
        "",
        "| parameter | searched over |",
        "|---|---|",
    ]
    for name, spec in search["space"].items():
        when = spec.get("when")
        cond = f" (when {', '.join(f'{k} in {v}' for k, v in when.items())})" if when else ""
        lines.append(f"| {name} | {_space_line(spec)}{cond} |")
    if search["fixed"]:
        lines += ["", "Fixed: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in search["fixed"].items())]
    lines += ["", "## Parameter importance (fANOVA)", ""]
    if importances:
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()]
        lines += ["", "![importance](importance.png)"]
    else:
        lines.append("Not available: it needs at least two completed trials that differ.")
    names = sorted({k for r in rows for k in r["params"]})
    lines += [
        "",
        "## Trials",
        "",
        "| trial | state | folds | mean ± sd | seconds | " + " | ".join(names) + " |",
        "|---" * (5 + len(names)) + "|",
    ]
    for r in rows:
        cells = [
            str(r["trial"]),
            r["state"].lower() + (" (interrupted)" if r["interrupted"] else ""),
            " ".join(_fmt(s) for s in r["folds"]),
            _pm(r["mean"], r["sd"]),
            "" if r["seconds"] is None else f"{r['seconds']:g}",
            *(_cell(r["params"].get(n, "")) for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![trials](history.png)", ""]
    return "\n".join(lines)


def _changed(recipe: dict[str, Any]) -> dict[str, Any]:
    from cxrzoo.training.recipes import Recipe

    default = Recipe().to_dict()
    return {k: v for k, v in recipe.items() if k == "name" or default.get(k) != v}


def _space_line(spec: dict[str, Any]) -> str:
    if "choices" in spec:
        return ", ".join(json.dumps(c) for c in spec["choices"])
    text = f"{spec['type']} {spec['low']:g} … {spec['high']:g}"
    if spec.get("log"):
        text += " (log)"
    if spec.get("step") is not None:
        text += f" step {spec['step']:g}"
    return text


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value == "" else json.dumps(value).replace("|", "\\|")


__all__ = [
    "REPORT_FILES",
    "STRENGTH",
    "Param",
    "SpaceError",
    "TuneResult",
    "build_space",
    "default_space",
    "read_space",
    "split_params",
    "study_path",
    "tune_model",
]
