"""Sensitivity of training to the learning rate: train at many rates, find the bottom of the U,
by a grid, random search or Bayesian search (Optuna's TPE, shared across processes through
Optuna's storage)."""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from ..checks import real_number

__all__ = ["sensitivity", "SensitivityResult", "log_grid", "Pruned"]


def log_grid(low: float, high: float, per_decade: int = 1) -> np.ndarray:
    """Rates from ``low`` to ``high`` (both included), ``per_decade`` points per factor of ten."""
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"need 0 < low < high, got {low} and {high}")
    if per_decade < 1:
        raise ValueError(f"per_decade must be >= 1, got {per_decade}")
    decades = math.log10(high / low)
    return np.logspace(math.log10(low), math.log10(high), round(decades * per_decade) + 1)


@dataclass
class SensitivityResult:
    """One row per training, sorted by rate: the final loss, the best loss (the lowest
    average over a tenth of the history, so that no single lucky mini-batch wins), the metric
    if the training function reported one, the history, the error of a rate whose training
    raised (its losses are NaN then), the other hyperparameters of the row (``space``), and
    the step at which a pruned training was stopped (its losses are NaN too; its history is
    what it reported)."""

    lrs: np.ndarray
    final: np.ndarray
    best: np.ndarray
    metric: Optional[np.ndarray]
    histories: list[Optional[list[float]]]
    errors: list[Optional[str]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    pruned: list[Optional[int]] = field(default_factory=list)

    @property
    def best_index(self) -> int:
        """The row with the lowest final loss (non-finite losses, failed and pruned rows count
        as infinitely bad)."""
        final = np.where(np.isfinite(self.final), self.final, np.inf)
        if not np.isfinite(final).any():
            raise ValueError("every rate diverged, failed or was pruned: no best rate")
        return int(np.argmin(final))

    @property
    def best_lr(self) -> float:
        """The rate of :attr:`best_index`."""
        return float(self.lrs[self.best_index])

    @property
    def best_params(self) -> dict[str, Any]:
        """The best row's hyperparameters: ``lr`` and those of ``space``."""
        i = self.best_index
        return {"lr": self.best_lr, **(self.params[i] if self.params else {})}

    def table(self) -> str:
        """A text table of the results, the best row marked, failures with their error,
        pruned trainings with the step they stopped at."""
        has_metric = self.metric is not None
        names = sorted({name for row in self.params for name in row})
        head = f"{'lr':>10}" + "".join(f"  {n:>12}" for n in names)
        head += f"  {'final loss':>11}  {'best loss':>10}" + (
            f"  {'metric':>8}" if has_metric else ""
        )
        lines = [head, "-" * len(head)]
        best = self.best_index if np.isfinite(self.final).any() else -1
        errors = self.errors or [None] * len(self.lrs)
        pruned = self.pruned or [None] * len(self.lrs)
        for i, lr in enumerate(self.lrs):
            row = f"{lr:>10.3g}"
            for name in names:
                value = self.params[i].get(name, "")
                row += f"  {value:>12.4g}" if isinstance(value, float) else f"  {value!s:>12}"
            if errors[i] is not None:
                lines.append(f"{row}  failed: {errors[i]}")
                continue
            if pruned[i] is not None:
                history = self.histories[i] or [math.nan]
                lines.append(f"{row}  pruned at step {pruned[i]} (loss {history[-1]:.4g})")
                continue
            row += f"  {self.final[i]:>11.4g}  {self.best[i]:>10.4g}"
            if has_metric:
                assert self.metric is not None
                row += f"  {self.metric[i]:>8.4f}"
            lines.append(row + ("  <- best" if i == best else ""))
        return "\n".join(lines)

    def plot(self, path: Union[str, os.PathLike[str], None] = None, ax: Any = None) -> Any:
        """The U-shaped curve: final and best loss against rate, both axes logarithmic when
        the losses span more than a decade; diverged or failed rates marked along the top."""
        from ..plot import figure_and_axes, finish

        fig, ax = figure_and_axes(ax)
        finite = np.isfinite(self.final)
        pruned = np.array([p is not None for p in self.pruned] or [False] * len(self.lrs))
        ax.plot(self.lrs[finite], self.final[finite], "o-", color="C0", label="final loss")
        ok = np.isfinite(self.best)
        ax.plot(self.lrs[ok], self.best[ok], "s--", color="C1", alpha=0.7, label="best loss")
        shown = np.r_[self.final[finite], self.best[ok]]
        log_y = len(shown) > 0 and shown.min() > 0 and shown.max() / shown.min() > 10
        lost = ~finite & ~pruned
        if lost.any():
            top = shown.max() if len(shown) else 1.0
            ax.plot(self.lrs[lost], np.full(lost.sum(), top), "x", color="C3",
                    markersize=9, label="diverged or failed")  # fmt: skip
        if pruned.any():
            last = [(h or [math.nan])[-1] for h, p in zip(self.histories, pruned) if p]
            ax.plot(self.lrs[pruned], last, "v", color="C4", linestyle="none",
                    label="pruned (last reported loss)")  # fmt: skip
        if finite.any():
            ax.axvline(self.best_lr, color="C2", linestyle=":", label=f"best lr {self.best_lr:.2g}")
        finish(ax, "sensitivity to the learning rate", "learning rate", "loss", log_x=True,
               log_y=log_y)  # fmt: skip
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _best_of(history: Sequence[float], final: float) -> float:
    """The lowest mean over a tenth of the history (at least one value): a smoothed best."""
    y = np.asarray(history, dtype=float)
    if len(y) == 0:
        return final
    window = max(1, len(y) // 10)
    means = np.convolve(y, np.ones(window) / window, mode="valid")
    means = means[np.isfinite(means)]
    return float(means.min()) if len(means) else math.nan


@dataclass
class Row:
    """One training: its rate and other hyperparameters, and how it went."""

    lr: float
    params: dict[str, Any]
    final: float
    best: float
    metric: Optional[float] = None
    history: Optional[list[float]] = None
    error: Optional[str] = None
    pruned: Optional[int] = None


def outcome_row(lr: float, params: dict[str, Any], outcome: Any, reported: list[float]) -> Row:
    """train_fn may return a loss, or a dict with ``loss`` (final), optionally ``best``,
    ``metric`` and ``history`` (the loss curve); without a history, the values it passed to
    ``report`` are the history."""
    if isinstance(outcome, dict):
        final = real_number(outcome["loss"], f"train_fn({lr})['loss']")
        history = outcome.get("history")
        history = list(reported) if history is None and reported else history
        best = outcome.get("best")
        if best is None:
            best = _best_of(history, final) if history is not None else final
        metric = outcome.get("metric")
        best = real_number(best, f"train_fn({lr})['best']")
        metric = None if metric is None else real_number(metric, f"train_fn({lr})['metric']")
        history = None if history is None else [float(v) for v in history]
        return Row(lr, params, final, best, metric, history)
    final = real_number(outcome, f"train_fn({lr})")
    if reported:
        return Row(lr, params, final, _best_of(reported, final), None, list(reported))
    return Row(lr, params, final, final)


def failed_row(lr: float, params: dict[str, Any], err: BaseException, reported: list[float]) -> Row:
    return Row(lr, params, math.nan, math.nan, history=list(reported) or None,
               error=f"{type(err).__name__}: {err}")  # fmt: skip


def takes_report(train_fn: Callable[..., Any]) -> bool:
    """Whether ``train_fn`` has a ``report`` parameter (it then gets the per-epoch reporter)."""
    try:
        return "report" in inspect.signature(train_fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


class Reporter:
    """The ``report(loss, step=None)`` a training function gets: records each reported loss
    (its step defaults to the number reported before); a search with a pruner may stop the
    training there by raising :class:`Pruned`."""

    def __init__(self, should_prune: Optional[Callable[[float, int], bool]] = None) -> None:
        self.values: list[float] = []
        self._should_prune = should_prune

    def __call__(self, loss: float, step: Optional[int] = None) -> None:
        value = real_number(loss, "report(loss)")
        at = len(self.values) if step is None else int(step)
        self.values.append(value)
        if self._should_prune is not None and self._should_prune(value, at):
            raise Pruned(at)


class Pruned(Exception):
    """Raised by ``report`` when the search's pruner stops a training that is doing worse than
    the others did at the same step; let it propagate out of ``train_fn``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"pruned at step {step}")
        self.step = step


def _train_one(
    train_fn: Callable[..., Any], lr: float, params: dict[str, Any], report: bool
) -> Row:
    """Trains at ``lr`` (with ``params``). An exception from ``train_fn`` is that rate's result
    (training failed there: out of memory, a NaN check, ...); a returned value that is not a
    loss is the caller's error and raises, naming ``train_fn``. Module level: a worker
    process runs it."""
    reporter = Reporter()
    try:
        outcome = train_fn(lr, **params, **({"report": reporter} if report else {}))
    except Exception as err:
        return failed_row(lr, params, err, reporter.values)
    return outcome_row(lr, params, outcome, reporter.values)


# A space's entry: (low, high) floats or ints, (low, high, "log"), or a list of choices.
Space = Mapping[str, Union[tuple[Any, ...], list[Any]]]


def check_space(space: Optional[Space]) -> dict[str, Union[tuple[Any, ...], list[Any]]]:
    """Checks ``space``'s entries by name: a range ``(low, high)`` of floats or of ints, with
    ``"log"`` as a third item for a log-uniform one, or a non-empty list of choices."""
    if space is None:
        return {}
    if not isinstance(space, Mapping):
        raise TypeError(
            f"space must be a dict of name: range or choices, got {type(space).__name__}"
        )
    checked: dict[str, Union[tuple[Any, ...], list[Any]]] = {}
    for name, entry in space.items():
        where = f"space[{name!r}]"
        if not isinstance(name, str) or not name.isidentifier() or name in ("lr", "report"):
            raise ValueError(f"{where}: names are keyword arguments of train_fn, not lr or report")
        if isinstance(entry, list):
            if not entry:
                raise ValueError(f"{where} is an empty list of choices")
            checked[name] = list(entry)
            continue
        if not isinstance(entry, tuple) or len(entry) not in (2, 3):
            raise ValueError(
                f"{where} must be (low, high), (low, high, 'log') or a list of choices, "
                f"got {entry!r}"
            )
        low, high = entry[0], entry[1]
        log = len(entry) == 3
        if log and entry[2] != "log":
            raise ValueError(f"{where}: the third item may only be 'log', got {entry[2]!r}")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers or not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"{where} needs finite low < high, got {entry!r}")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0, got {low}")
        checked[name] = entry
    return checked


def _sample(space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One draw from ``space`` (random search): uniform, log-uniform, or a choice."""
    drawn: dict[str, Any] = {}
    for name, entry in space.items():
        if isinstance(entry, list):
            drawn[name] = entry[int(rng.integers(len(entry)))]
            continue
        low, high = entry[0], entry[1]
        integer = isinstance(low, int) and isinstance(high, int)
        if len(entry) == 3:
            value = math.exp(rng.uniform(math.log(low), math.log(high + integer)))
        else:
            value = rng.uniform(low, high + integer)
        drawn[name] = min(int(value), high) if integer else float(value)
    return drawn


def sensitivity(
    train_fn: Callable[..., Any],
    lrs: Optional[Sequence[float]] = None,
    *,
    low: float = 1e-6,
    high: float = 1.0,
    per_decade: int = 1,
    strategy: str = "grid",
    num: int = 8,
    refine: int = 0,
    refine_points: int = 5,
    seed: Optional[int] = 0,
    processes: Optional[int] = None,
    progress: bool = False,
    space: Optional[Space] = None,
    pruner: Any = None,
    storage: Any = None,
    study_name: Optional[str] = None,
) -> SensitivityResult:
    """Trains with each rate and records how it went.

    ``train_fn(lr)`` trains a fresh model at rate ``lr`` and returns its final loss, or a dict
    with ``loss`` and optionally ``best``, ``metric`` (e.g. test accuracy) and ``history``.
    A ``train_fn`` with a ``report`` parameter gets ``report(loss, step=None)`` to call after
    each epoch: the reported losses are the row's history (unless it returns one), and under
    ``pruner`` a training that does worse than the others at the same step is stopped there
    (``report`` raises :class:`Pruned`; let it propagate).

    Rates: ``lrs`` if given; else ``strategy="grid"``, a log grid from ``low`` to ``high`` with
    ``per_decade`` points per decade; ``"random"``, ``num`` rates drawn log-uniformly (seeded);
    or ``"tpe"``, ``num`` trainings chosen by Optuna's TPE sampler (Bayesian optimization of
    the final loss over a log-uniform rate; the first 5 are random, then each is drawn where
    the good ones were), which needs the ``search`` extra. A rate whose training raises is
    recorded with its error (:meth:`SensitivityResult.table` shows it; its losses are NaN) and
    the others are kept. ``refine=k`` then zooms ``k`` times (grid and random): each round
    tries ``refine_points`` rates spread over the interval between the best rate's neighbours,
    coarse to fine. ``processes=n`` trains in ``n`` worker processes (grid and random;
    ``train_fn`` must be picklable: a module-level function). ``progress`` shows a progress
    bar.

    ``space`` (random and tpe) names other hyperparameters to search with the rate, passed to
    ``train_fn`` as keyword arguments: ``{"momentum": (0.8, 0.99), "weight_decay": (1e-6,
    1e-2, "log"), "warmup": (0, 500), "schedule": ["cosine", "constant"]}`` (a float or int
    range, log-uniform with ``"log"``, or a list of choices).

    tpe only: ``pruner`` is ``"median"`` (stop a training whose reported loss is worse than
    the median of earlier trainings at that step, after 5 trainings), ``"hyperband"``, or any
    Optuna pruner. ``storage`` is an Optuna storage or database URL (``"sqlite:///lr.db"``,
    PostgreSQL, ...) and ``study_name`` the study's name there: every process, on one machine
    or several, that runs the same call shares one study, and a call interrupted midway
    resumes where it stopped. ``num`` is then the size of the whole study: each call trains
    until the study holds ``num`` finished trainings (one more per other process running at
    the end, at most), and returns all of them. ``seed`` seeds the sampler (a shared study is
    not reproducible: processes interleave).
    """
    checked_space = check_space(space)
    if strategy not in ("grid", "random", "tpe"):
        raise ValueError(f"strategy must be 'grid', 'random' or 'tpe', got {strategy!r}")
    if strategy != "tpe":
        for name, value in (("pruner", pruner), ("storage", storage), ("study_name", study_name)):
            if value is not None:
                raise ValueError(f"{name} is for strategy='tpe' (Optuna's search)")
    if checked_space and (lrs is not None or strategy == "grid"):
        raise ValueError("space needs strategy='random' or 'tpe' (a grid over it would explode)")
    if strategy == "tpe":
        if lrs is not None:
            raise ValueError("lrs and strategy='tpe' exclude each other: the sampler picks rates")
        if refine or (processes is not None and processes > 1):
            raise ValueError(
                "strategy='tpe' takes no refine or processes: run the same call in several "
                "processes with a shared storage and study_name instead"
            )
        from .search import tpe_rows

        _check_range(low, high)
        searched = tpe_rows(
            train_fn, low=low, high=high, num=num, space=checked_space, seed=seed,
            pruner=pruner, storage=storage, study_name=study_name, progress=progress,
            report=takes_report(train_fn),
        )  # fmt: skip
        return _result(searched)
    if lrs is not None:
        rates = [float(x) for x in lrs]
        if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
            raise ValueError("lrs must be a non-empty list of finite rates > 0")
        drawn: list[dict[str, Any]] = [{} for _ in rates]
    elif strategy == "grid":
        rates = log_grid(low, high, per_decade).tolist()
        drawn = [{} for _ in rates]
    else:
        _check_range(low, high)
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be an integer >= 1, got {num!r}")
        rng = np.random.default_rng(seed)
        rates = list(10 ** rng.uniform(math.log10(low), math.log10(high), num))
        # Trained in the order drawn (any prefix is a random search too); rows come sorted.
        drawn = [_sample(checked_space, rng) for _ in rates]
    if refine < 0 or refine_points < 2:
        raise ValueError("refine must be >= 0 and refine_points >= 2")
    if refine and checked_space:
        raise ValueError("refine zooms on the rate alone: it takes no space")
    report = takes_report(train_fn)
    rows: list[Row] = []

    def run(batch: list[float], params: list[dict[str, Any]]) -> None:
        # A refined grid may land on a rate already tried (up to rounding): do not redo it.
        todo = [
            (r, p) for r, p in zip(batch, params)
            if checked_space or not any(math.isclose(r, row.lr, rel_tol=1e-9) for row in rows)
        ]  # fmt: skip
        bar = _progress(len(todo)) if progress else None
        try:
            if processes and processes > 1:
                with ProcessPoolExecutor(processes) as pool:
                    futures = [(r, p, pool.submit(_train_one, train_fn, r, p, report))
                               for r, p in todo]  # fmt: skip
                    for r, p, future in futures:
                        error = future.exception()
                        rows.append(failed_row(r, p, error, []) if error is not None
                                    else future.result())  # fmt: skip
                        if bar is not None:
                            bar.update(1)
            else:
                for r, p in todo:
                    rows.append(_train_one(train_fn, r, p, report))
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    run(rates, drawn)
    for _ in range(refine):
        tried = sorted(rows, key=lambda row: row.lr)
        finals = [row.final if math.isfinite(row.final) else math.inf for row in tried]
        i = int(np.argmin(finals))
        lo = tried[i - 1].lr if i > 0 else tried[i].lr / 10
        hi = tried[i + 1].lr if i + 1 < len(tried) else tried[i].lr * 10
        zoom = np.logspace(math.log10(lo), math.log10(hi), refine_points + 2)[1:-1].tolist()
        run(zoom, [{} for _ in zoom])
    return _result(rows)


def _check_range(low: float, high: float) -> None:
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"need 0 < low < high, got {low} and {high}")


def _result(rows: list[Row]) -> SensitivityResult:
    """The rows as a result, sorted by rate (stable: equal rates keep their order)."""
    ordered = sorted(rows, key=lambda row: row.lr)
    metrics = [row.metric for row in ordered]
    return SensitivityResult(
        lrs=np.array([row.lr for row in ordered]),
        final=np.array([row.final for row in ordered]),
        best=np.array([row.best for row in ordered]),
        metric=None
        if all(m is None for m in metrics)
        else np.array([math.nan if m is None else m for m in metrics]),
        histories=[row.history for row in ordered],
        errors=[row.error for row in ordered],
        params=[row.params for row in ordered],
        pruned=[row.pruned for row in ordered],
    )


def _progress(total: int) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc="sensitivity", leave=False)
