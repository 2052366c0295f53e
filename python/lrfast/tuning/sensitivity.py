"""Sensitivity of training to the learning rate: train at many rates, find the bottom of the U,
and read a loss history for the usual symptoms of a bad rate."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np

from ..checks import real_number

__all__ = ["sensitivity", "SensitivityResult", "diagnose", "Diagnosis", "log_grid"]


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
    """One row per rate tried, sorted by rate: the final and best loss (and metric, if the
    training function reported one)."""

    lrs: np.ndarray
    final: np.ndarray
    best: np.ndarray
    metric: Optional[np.ndarray]
    histories: list[Optional[list[float]]]

    @property
    def best_lr(self) -> float:
        """The rate with the lowest final loss (non-finite losses count as infinitely bad)."""
        final = np.where(np.isfinite(self.final), self.final, np.inf)
        if not np.isfinite(final).any():
            raise ValueError("every rate diverged: no best rate")
        return float(self.lrs[int(np.argmin(final))])

    def table(self) -> str:
        """A text table of the results, the best row marked."""
        has_metric = self.metric is not None
        head = f"{'lr':>10}  {'final loss':>11}  {'best loss':>10}" + (
            f"  {'metric':>8}" if has_metric else ""
        )
        lines = [head, "-" * len(head)]
        best = self.best_lr if np.isfinite(self.final).any() else math.nan
        for i, lr in enumerate(self.lrs):
            row = f"{lr:>10.3g}  {self.final[i]:>11.4g}  {self.best[i]:>10.4g}"
            if has_metric:
                assert self.metric is not None
                row += f"  {self.metric[i]:>8.4f}"
            lines.append(row + ("  <- best" if lr == best else ""))
        return "\n".join(lines)

    def plot(self, path: Union[str, os.PathLike[str], None] = None, ax: Any = None) -> Any:
        """The U-shaped curve: final (and best) loss against rate, log axis."""
        from ..plot import figure_and_axes

        fig, ax = figure_and_axes(ax)
        finite = np.isfinite(self.final)
        ax.plot(self.lrs[finite], self.final[finite], "o-", label="final loss")
        ax.plot(self.lrs, self.best, "s--", alpha=0.6, label="best loss")
        if (~finite).any():
            top = np.nanmax(np.where(np.isfinite(self.best), self.best, np.nan))
            ax.plot(self.lrs[~finite], np.full((~finite).sum(), top), "rx", label="diverged")
        ax.axvline(self.best_lr, color="C2", linestyle=":", label=f"best lr {self.best_lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize="small")
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _normalize(lr: float, outcome: Any) -> tuple[float, float, Optional[float], Any]:
    """train_fn may return a loss, or a dict with ``loss`` (final), optionally ``best``,
    ``metric`` and ``history`` (the loss curve)."""
    if isinstance(outcome, dict):
        final = real_number(outcome["loss"], f"train_fn({lr})['loss']")
        history = outcome.get("history")
        best = outcome.get("best")
        if best is None:
            best = np.nanmin(history) if history is not None and len(history) else final
        metric = outcome.get("metric")
        best = real_number(best, f"train_fn({lr})['best']")
        metric = None if metric is None else real_number(metric, f"train_fn({lr})['metric']")
        return final, best, metric, history
    final = real_number(outcome, f"train_fn({lr})")
    return final, final, None, None


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
    ``per_decade`` points per decade, or ``"random"``, ``num`` rates drawn log-uniformly (seeded).
    ``refine=k`` then zooms ``k`` times: each round tries ``refine_points`` rates spread over the
    interval between the best rate's neighbours, coarse to fine. ``processes=n`` trains in ``n``
    worker processes (``train_fn`` must be picklable: a module-level function). ``progress``
    shows a progress bar.
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

    results: dict[float, tuple[float, float, Optional[float], Any]] = {}

    def run(batch: list[float]) -> None:
        # A refined grid may land on a rate already tried (up to rounding): do not redo it.
        todo = [
            r for r in batch if not any(math.isclose(r, done, rel_tol=1e-9) for done in results)
        ]
        bar = _progress(len(todo)) if progress else None
        try:
            if processes and processes > 1:
                with ProcessPoolExecutor(processes) as pool:
                    for r, outcome in zip(todo, pool.map(train_fn, todo)):
                        results[r] = _normalize(r, outcome)
                        if bar is not None:
                            bar.update(1)
            else:
                for r in todo:
                    results[r] = _normalize(r, train_fn(r))
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
    )


def _progress(total: int) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc="sensitivity", leave=False)


# -- diagnosis --------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    """A verdict on a loss history, with the numbers behind it.

    ``verdict`` is one of ``"too_high"`` (``kind``: ``"nan"``, ``"diverging"`` or
    ``"oscillating"``), ``"too_low"``, ``"plateau"`` or ``"healthy"``; ``advice`` says what to
    try; ``numbers`` holds the measured quantities the rules used.
    """

    verdict: str
    kind: str
    advice: str
    numbers: dict[str, float]

    def __str__(self) -> str:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in self.numbers.items())
        label = self.verdict + (f" ({self.kind})" if self.kind else "")
        return f"{label}: {self.advice} [{shown}]"


def diagnose(losses: Sequence[float], *, window: Optional[int] = None) -> Diagnosis:
    """Reads a loss history (one value per step or epoch, at least 8) and says whether the rate
    looks too high, too low, plateaued, or healthy.

    The rules, on a moving average of ``window`` points (default: a tenth of the history):

    - too high: a NaN/Inf loss (``nan``); the smoothed loss ending above its start (``diverging``);
      or step-to-step changes that flip sign more than 60% of the time with an amplitude above 10%
      of the loss level (``oscillating``);
    - plateau: the loss fell by 20-95% of its start, then stalled: the last 40% of the run
      improved it by less than 1% of the total drop (a drop above 95% that stalls has converged);
    - too low: the loss falls steadily (fewer than 35% sign flips), is still more than a tenth
      of its start, and the last 40% of the run still brought at least 10% of the drop;
    - healthy otherwise (it fell by most of its start and settled).
    """
    y = np.asarray(losses, dtype=float)
    if y.ndim != 1 or len(y) < 8:
        raise ValueError(f"need a 1-d history of at least 8 losses, got shape {y.shape}")
    if not np.isfinite(y).all():
        first = int(np.argmax(~np.isfinite(y)))
        return Diagnosis(
            "too_high",
            "nan",
            "the loss became NaN/Inf: lower the rate (by 10x), or clip gradients",
            {"first_bad_step": float(first)},
        )
    n = len(y)
    w = window or max(2, n // 10)
    smooth = np.convolve(y, np.ones(w) / w, mode="valid")
    start, end = float(smooth[0]), float(smooth[-1])
    scale = max(abs(start), 1e-12)
    diffs = np.diff(y)
    nonzero = diffs[diffs != 0]
    flips = (
        float(np.mean(np.sign(nonzero[1:]) != np.sign(nonzero[:-1]))) if len(nonzero) > 2 else 0.0
    )
    residual = y[w - 1 :] - smooth
    amplitude = float(np.std(residual) / max(float(np.mean(np.abs(smooth))), 1e-12))
    drop = (start - end) / scale
    numbers = {
        "relative_drop": drop,
        "sign_flip_rate": flips,
        "relative_amplitude": amplitude,
    }
    if end > start * 1.05 + 1e-12 and float(smooth.max()) > start:
        numbers["growth"] = end / scale
        return Diagnosis("too_high", "diverging", "the loss grows: lower the rate", numbers)
    if flips > 0.6 and amplitude > 0.1:
        return Diagnosis(
            "too_high",
            "oscillating",
            "the loss jumps up and down: lower the rate (by 3-10x) or use a decay schedule",
            numbers,
        )
    m = len(smooth)
    tail_start = int(m * 0.6)
    tail_gain = float(smooth[tail_start] - end)
    total_gain = float(start - end)
    numbers["tail_share_of_drop"] = tail_gain / total_gain if total_gain > 0 else 0.0
    if 0.2 < drop < 0.95 and tail_gain < 0.01 * total_gain:
        return Diagnosis(
            "plateau",
            "",
            "progress stopped: reduce the rate on plateau (ReduceLROnPlateau) or decay it",
            numbers,
        )
    if drop < 0.9 and total_gain > 0 and tail_gain >= 0.1 * total_gain and flips < 0.35:
        return Diagnosis(
            "too_low",
            "",
            "slow, steady decline: raise the rate (try 3-10x, or run a range test)",
            numbers,
        )
    return Diagnosis("healthy", "", "the loss falls and settles: keep the rate", numbers)
