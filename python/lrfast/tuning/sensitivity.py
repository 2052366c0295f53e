"""Sensitivity of training to the learning rate: train at many rates, find the bottom of the U."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from ..checks import real_number

__all__ = ["sensitivity", "SensitivityResult", "log_grid"]


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
    """One row per rate tried, sorted by rate: the final loss, the best loss (the lowest
    average over a tenth of the history, so that no single lucky mini-batch wins), the metric
    if the training function reported one, the history, and the error of a rate whose
    training raised (its losses are NaN then)."""

    lrs: np.ndarray
    final: np.ndarray
    best: np.ndarray
    metric: Optional[np.ndarray]
    histories: list[Optional[list[float]]]
    errors: list[Optional[str]] = field(default_factory=list)

    @property
    def best_lr(self) -> float:
        """The rate with the lowest final loss (non-finite losses and failed rates count as
        infinitely bad)."""
        final = np.where(np.isfinite(self.final), self.final, np.inf)
        if not np.isfinite(final).any():
            raise ValueError("every rate diverged or failed: no best rate")
        return float(self.lrs[int(np.argmin(final))])

    def table(self) -> str:
        """A text table of the results, the best row marked, failures with their error."""
        has_metric = self.metric is not None
        head = f"{'lr':>10}  {'final loss':>11}  {'best loss':>10}" + (
            f"  {'metric':>8}" if has_metric else ""
        )
        lines = [head, "-" * len(head)]
        best = self.best_lr if np.isfinite(self.final).any() else math.nan
        errors = self.errors or [None] * len(self.lrs)
        for i, lr in enumerate(self.lrs):
            if errors[i] is not None:
                lines.append(f"{lr:>10.3g}  failed: {errors[i]}")
                continue
            row = f"{lr:>10.3g}  {self.final[i]:>11.4g}  {self.best[i]:>10.4g}"
            if has_metric:
                assert self.metric is not None
                row += f"  {self.metric[i]:>8.4f}"
            lines.append(row + ("  <- best" if lr == best else ""))
        return "\n".join(lines)

    def plot(self, path: Union[str, os.PathLike[str], None] = None, ax: Any = None) -> Any:
        """The U-shaped curve: final and best loss against rate, both axes logarithmic when
        the losses span more than a decade; diverged or failed rates marked along the top."""
        from ..plot import figure_and_axes, finish

        fig, ax = figure_and_axes(ax)
        finite = np.isfinite(self.final)
        ax.plot(self.lrs[finite], self.final[finite], "o-", color="C0", label="final loss")
        ok = np.isfinite(self.best)
        ax.plot(self.lrs[ok], self.best[ok], "s--", color="C1", alpha=0.7, label="best loss")
        shown = np.r_[self.final[finite], self.best[ok]]
        log_y = len(shown) > 0 and shown.min() > 0 and shown.max() / shown.min() > 10
        if (~finite).any():
            top = shown.max() if len(shown) else 1.0
            ax.plot(self.lrs[~finite], np.full((~finite).sum(), top), "x", color="C3",
                    markersize=9, label="diverged or failed")  # fmt: skip
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


Row = tuple[float, float, Optional[float], Any, Optional[str]]


def _normalize(lr: float, outcome: Any) -> Row:
    """train_fn may return a loss, or a dict with ``loss`` (final), optionally ``best``,
    ``metric`` and ``history`` (the loss curve)."""
    if isinstance(outcome, dict):
        final = real_number(outcome["loss"], f"train_fn({lr})['loss']")
        history = outcome.get("history")
        best = outcome.get("best")
        if best is None:
            best = _best_of(history, final) if history is not None else final
        metric = outcome.get("metric")
        best = real_number(best, f"train_fn({lr})['best']")
        metric = None if metric is None else real_number(metric, f"train_fn({lr})['metric']")
        return final, best, metric, history, None
    final = real_number(outcome, f"train_fn({lr})")
    return final, final, None, None, None


def _failed(err: BaseException) -> Row:
    return math.nan, math.nan, None, None, f"{type(err).__name__}: {err}"


def _train_one(train_fn: Callable[[float], Any], lr: float) -> Row:
    """Trains at ``lr``. An exception from ``train_fn`` is that rate's result (training failed
    there: out of memory, a NaN check, ...); a returned value that is not a loss is the
    caller's error and raises, naming ``train_fn``."""
    try:
        outcome = train_fn(lr)
    except Exception as err:
        return _failed(err)
    return _normalize(lr, outcome)


def sensitivity(
    train_fn: Callable[[float], Any],
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
) -> SensitivityResult:
    """Trains with each rate and records how it went.

    ``train_fn(lr)`` trains a fresh model at rate ``lr`` and returns its final loss, or a dict
    with ``loss`` and optionally ``best``, ``metric`` (e.g. test accuracy) and ``history``.

    Rates: ``lrs`` if given; else ``strategy="grid"``, a log grid from ``low`` to ``high`` with
    ``per_decade`` points per decade, or ``"random"``, ``num`` rates drawn log-uniformly
    (seeded). A rate whose training raises is recorded with its error
    (:meth:`SensitivityResult.table` shows it; its losses are NaN) and the others are kept.
    ``refine=k`` then zooms ``k`` times: each round tries ``refine_points`` rates spread over
    the interval between the best rate's neighbours, coarse to fine. ``processes=n`` trains in
    ``n`` worker processes (``train_fn`` must be picklable: a module-level function).
    ``progress`` shows a progress bar.
    """
    if lrs is not None:
        rates = [float(x) for x in lrs]
        if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
            raise ValueError("lrs must be a non-empty list of finite rates > 0")
    elif strategy == "grid":
        rates = log_grid(low, high, per_decade).tolist()
    elif strategy == "random":
        if not 0 < low < high:
            raise ValueError(f"need 0 < low < high, got {low} and {high}")
        rng = np.random.default_rng(seed)
        rates = sorted(10 ** rng.uniform(math.log10(low), math.log10(high), num))
    else:
        raise ValueError(f"strategy must be 'grid' or 'random', got {strategy!r}")
    if refine < 0 or refine_points < 2:
        raise ValueError("refine must be >= 0 and refine_points >= 2")

    results: dict[float, Row] = {}

    def run(batch: list[float]) -> None:
        # A refined grid may land on a rate already tried (up to rounding): do not redo it.
        todo = [
            r for r in batch if not any(math.isclose(r, done, rel_tol=1e-9) for done in results)
        ]
        bar = _progress(len(todo)) if progress else None
        try:
            if processes and processes > 1:
                with ProcessPoolExecutor(processes) as pool:
                    futures = [(r, pool.submit(train_fn, r)) for r in todo]
                    for r, future in futures:
                        error = future.exception()
                        results[r] = (
                            _failed(error) if error is not None else _normalize(r, future.result())
                        )
                        if bar is not None:
                            bar.update(1)
            else:
                for r in todo:
                    results[r] = _train_one(train_fn, r)
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    run(rates)
    for _ in range(refine):
        tried = sorted(results)
        finals = [results[r][0] if math.isfinite(results[r][0]) else math.inf for r in tried]
        i = int(np.argmin(finals))
        lo = tried[i - 1] if i > 0 else tried[i] / 10
        hi = tried[i + 1] if i + 1 < len(tried) else tried[i] * 10
        run(np.logspace(math.log10(lo), math.log10(hi), refine_points + 2)[1:-1].tolist())

    ordered = sorted(results)
    metrics = [results[r][2] for r in ordered]
    return SensitivityResult(
        lrs=np.array(ordered),
        final=np.array([results[r][0] for r in ordered]),
        best=np.array([results[r][1] for r in ordered]),
        metric=None
        if all(m is None for m in metrics)
        else np.array([math.nan if m is None else m for m in metrics]),
        histories=[results[r][3] for r in ordered],
        errors=[results[r][4] for r in ordered],
    )


def _progress(total: int) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc="sensitivity", leave=False)
