"""Bayesian search for the rate with Optuna (``sensitivity(strategy="tpe")``): TPE over a
log-uniform rate and the hyperparameters of ``space``, pruning from reported losses, and
Optuna's own storage for studies that several processes share or that resume.

Each training is an Optuna trial whose value is the final loss (``inf`` for a training that
diverged or failed, so the sampler learns to avoid it); the rest of its row (best loss, metric,
history, error, pruning step) is kept in the trial's user attributes, so any process can
rebuild the whole table from the storage.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

from ..extras import install_hint
from .sensitivity import Pruned, Reporter, Row, failed_row, outcome_row

# Random trainings before TPE models the good ones (Optuna's default is 10, tuned for many
# dimensions; one rate and a few more need fewer).
STARTUP_TRIALS = 5
# Tries at opening a database that other processes may be setting up at the same moment.
ATTEMPTS = 5


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ImportError(f"strategy='tpe' needs Optuna: {install_hint('search')}") from error
    return optuna


def _storage(optuna: Any, storage: Any) -> Any:
    """``storage`` as Optuna takes it. A database URL becomes an ``RDBStorage``, made again if
    another process was creating the same database's tables at that moment (Optuna's schema
    setup is not atomic: the loser of the race fails on a unique constraint); a SQLite one
    waits up to a minute for a lock, since processes sharing one file take turns writing."""
    if not isinstance(storage, str):
        return storage
    from sqlalchemy.exc import SQLAlchemyError

    engine = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    for attempt in range(ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=engine)
        except SQLAlchemyError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _pruner(optuna: Any, pruner: Any) -> Any:
    if pruner is None:
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    raise ValueError(
        f"pruner must be 'median', 'hyperband', None or an Optuna pruner, got {pruner!r}"
    )


def _suggest(trial: Any, name: str, entry: Any) -> Any:
    if isinstance(entry, list):
        return entry[trial.suggest_categorical(name, list(range(len(entry))))]
    low, high = entry[0], entry[1]
    log = len(entry) == 3
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(name, low, high, log=log)
    return trial.suggest_float(name, float(low), float(high), log=log)


def tpe_rows(
    train_fn: Callable[..., Any],
    *,
    low: float,
    high: float,
    num: int,
    space: dict[str, Any],
    seed: Optional[int],
    pruner: Any,
    storage: Any,
    study_name: Optional[str],
    progress: bool,
    report: bool,
) -> list[Row]:
    """Runs the study until it holds ``num`` finished trials; returns a row per finished
    trial (this process's and any other's)."""
    optuna = _optuna()
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    if storage is not None and study_name is None:
        raise ValueError("storage needs a study_name: it is how processes find the study")
    if pruner is not None and not report:
        raise ValueError("a pruner needs train_fn to take a report argument and call it each epoch")
    states = optuna.trial.TrialState
    finished = (states.COMPLETE, states.PRUNED, states.FAIL)
    study = optuna.create_study(
        storage=_storage(optuna, storage),
        study_name=study_name,
        load_if_exists=storage is not None,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS),
        pruner=_pruner(optuna, pruner),
    )
    labels = [name for name in space if isinstance(space[name], list)]

    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", low, high, log=True)
        params = {name: _suggest(trial, name, entry) for name, entry in space.items()}

        def should_prune(value: float, step: int) -> bool:
            trial.report(value, step)
            return bool(trial.should_prune())

        reporter = Reporter(should_prune if pruner is not None else None)
        try:
            outcome = train_fn(lr, **params, **({"report": reporter} if report else {}))
        except Pruned as stop:
            trial.set_user_attr("history", reporter.values)
            trial.set_user_attr("pruned", stop.step)
            raise optuna.TrialPruned(str(stop)) from None
        except Exception as err:
            row = failed_row(lr, params, err, reporter.values)
        else:
            row = outcome_row(lr, params, outcome, reporter.values)  # raises for a bad return
        for key in ("final", "best", "metric", "history", "error"):
            trial.set_user_attr(key, _json(getattr(row, key)))
        return row.final if math.isfinite(row.final) else math.inf

    done = len(study.get_trials(deepcopy=False, states=finished))
    bar = None
    if progress and num > done:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=num - done, desc="tpe search", leave=False)
    callbacks: list[Any] = [optuna.study.MaxTrialsCallback(num, states=finished)]
    if bar is not None:
        callbacks.append(lambda study, trial: bar.update(1))
    try:
        if num > done:
            study.optimize(objective, n_trials=num - done, callbacks=callbacks)
    finally:
        if bar is not None:
            bar.close()
    return [_row(trial, space, labels) for trial in study.get_trials(states=finished)]


def _json(value: Any) -> Any:
    """A value as Optuna's storages keep user attributes (JSON: NaN and inf as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) else value


def _row(trial: Any, space: dict[str, Any], labels: list[str]) -> Row:
    """A finished trial as a row, from its parameters and user attributes."""
    attrs = trial.user_attrs
    params = {name: trial.params[name] for name in space if name in trial.params}
    for name in labels:  # choices are suggested by index: any value, not only JSON ones
        if name in params:
            params[name] = space[name][params[name]]
    history = attrs.get("history")
    history = None if history is None else [float(_number(v)) for v in history]
    if "pruned" in attrs:
        return Row(trial.params["lr"], params, math.nan, math.nan, None, history,
                   pruned=int(attrs["pruned"]))  # fmt: skip
    if "final" not in attrs:  # the trial raised: a return value train_fn should not have given
        error = "the trial raised before it was recorded (see Optuna's log)"
        return Row(trial.params["lr"], params, math.nan, math.nan, error=error)
    metric = attrs.get("metric")
    return Row(
        trial.params["lr"], params, float(_number(attrs["final"])), float(_number(attrs["best"])),
        None if metric is None else float(_number(metric)), history, attrs.get("error"),
    )  # fmt: skip
