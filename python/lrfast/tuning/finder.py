"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks"; the "LR finder" of fastai and torch-lr-finder).

Train for a few hundred mini-batches while the rate grows from tiny to huge, record the loss, and
read the rate off the curve: where the loss falls fastest, before it blows up.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from ..checks import real_number

if TYPE_CHECKING:
    from ..optim import Optimizer

__all__ = ["lr_range_test", "RangeTestResult"]

Rates = Union[float, Sequence[float]]


@dataclass
class RangeTestResult:
    """What a range test saw, and what it suggests.

    ``lrs`` has one row per step taken (one column per parameter group when groups sweep their
    own ranges; the first column is the x axis). ``losses`` are the raw losses, ``smoothed`` the
    online bias-corrected exponential average the stop rule used, :attr:`centered` the zero-lag
    smoothing the suggestion rules read. ``stop_reason`` says why the sweep ended.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stop_reason: str
    burn_in: int
    min_lr_guard: float = 0.0
    beta: float = 0.98
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def centered(self) -> np.ndarray:
        """The losses smoothed forward and backward (zero lag), what the rules read.

        The online average the stop rule uses lags the loss by about ``1/(1 − beta)`` steps
        (50 at 0.98): on an exponential ramp of 100 steps that is most of a decade, and
        suggestions read from it land too high. Smoothing the recorded curve in both
        directions, over a window of a 25th of the sweep, removes the lag."""
        if "centered" not in self._cache:
            finite = np.isfinite(self.losses)
            y = np.where(finite, self.losses, np.nan)
            n = int(np.argmin(finite)) if not finite.all() else len(y)
            # A window of a 25th of the sweep each way: enough to tame mini-batch noise, short
            # enough to keep a loss that falls by 10x in a few dozen steps.
            beta = 1 - 1 / max(2.0, n / 25)
            forward = _ema(y[:n], beta)
            both = _ema(forward[::-1], beta)[::-1]
            self._cache["centered"] = np.r_[both, np.full(len(y) - n, np.nan)]
        centered: np.ndarray = self._cache["centered"]
        return centered

    # -- the rules ---------------------------------------------------------------------------
    @property
    def rates(self) -> np.ndarray:
        """The first group's rates: the x axis."""
        rates: np.ndarray = self.lrs if self.lrs.ndim == 1 else self.lrs[:, 0]
        return rates

    def _usable(self) -> np.ndarray:
        """Indices a suggestion may use: after burn-in, at or above the guard, finite loss."""
        idx = np.arange(len(self.smoothed))
        ok = (idx >= self.burn_in) & (self.rates >= self.min_lr_guard) & np.isfinite(self.centered)
        usable: np.ndarray = idx[ok]
        if len(usable) < 5:
            raise ValueError(
                f"too few points for a suggestion: {len(usable)} usable of {len(self.smoothed)} "
                f"recorded (burn-in {self.burn_in}, stop: {self.stop_reason}); "
                "use more num_steps, a lower start_lr or a larger diverge_threshold"
            )
        return usable

    def _index_of_min(self) -> int:
        usable = self._usable()
        return int(usable[np.argmin(self.centered[usable])])

    def steepest_index(self) -> int:
        """Where the smoothed loss falls fastest against log(rate), before its minimum."""
        usable = self._usable()
        end = self._index_of_min()
        window = usable[usable <= end]
        if len(window) < 3:
            window = usable[: max(3, len(window))]
        x = np.log(self.rates[window])
        slope = np.gradient(self.centered[window], x)
        return int(window[np.argmin(slope)])

    def valley_index(self) -> int:
        """fastai's valley rule: the longest stretch of decreasing loss; two thirds down it."""
        usable = self._usable()
        y = self.centered[usable]
        n = len(y)
        longest = np.ones(n, dtype=int)
        start = end = 0
        for i in range(1, n):
            earlier = np.nonzero(y[:i] > y[i])[0]
            if len(earlier):
                longest[i] = longest[earlier].max() + 1
            if longest[i] > longest[end]:
                end = i
                start = end - longest[end] + 1
        third = (end - start) / 3
        return int(usable[min(n - 1, start + int(third) + int(third / 2))])

    @property
    def suggestions(self) -> dict[str, float]:
        """The rate each rule suggests: ``steepest``, ``valley`` and ``min/10``."""
        if "suggestions" not in self._cache:
            self._cache["suggestions"] = {
                "steepest": float(self.rates[self.steepest_index()]),
                "valley": float(self.rates[self.valley_index()]),
                "min/10": float(self.rates[self._index_of_min()] / 10),
            }
        return dict(self._cache["suggestions"])

    @property
    def suggestion(self) -> float:
        """The suggested rate: the geometric median of the three rules (robust to one outlier)."""
        return float(10 ** np.median(np.log10(list(self.suggestions.values()))))

    @property
    def agreement_decades(self) -> float:
        """How far apart the rules are, in decades (log10 of largest / smallest suggestion)."""
        values = list(self.suggestions.values())
        return float(math.log10(max(values) / min(values)))

    @property
    def confidence(self) -> str:
        """``high`` when the rules agree within half a decade, ``medium`` within one, else
        ``low`` (then look at the plot)."""
        spread = self.agreement_decades
        return "high" if spread <= 0.5 else "medium" if spread <= 1.0 else "low"

    @property
    def cyclic_bounds(self) -> tuple[float, float]:
        """``(base_lr, max_lr)`` for a cyclical or one-cycle schedule: ``max_lr`` the largest rate
        that still improves the loss (at the smoothed minimum), ``base_lr`` a quarter of it
        (Smith: a third to a quarter)."""
        max_lr = float(self.rates[self._index_of_min()])
        return max_lr / 4, max_lr

    def suggestion_for_groups(self) -> np.ndarray:
        """The suggestion as one rate per parameter group (groups ramp in lockstep)."""
        index = int(np.argmin(np.abs(np.log(self.rates) - math.log(self.suggestion))))
        return np.atleast_1d(self.lrs[index]).astype(float)

    def summary(self) -> str:
        """A few lines for a terminal or a report."""
        s = self.suggestions
        base, top = self.cyclic_bounds
        return (
            f"range test: {len(self.losses)} steps, stop: {self.stop_reason}\n"
            f"  suggested lr {self.suggestion:.3g} (steepest {s['steepest']:.3g}, valley "
            f"{s['valley']:.3g}, min/10 {s['min/10']:.3g}; confidence {self.confidence}, "
            f"rules {self.agreement_decades:.2f} decades apart)\n"
            f"  cyclic bounds: base_lr {base:.3g}, max_lr {top:.3g}"
        )

    def plot(self, path: Union[str, os.PathLike[str], None] = None, ax: Any = None) -> Any:
        """Loss against rate on a log axis, raw and smoothed, with the suggestions marked."""
        from ..plot import figure_and_axes

        fig, ax = figure_and_axes(ax)
        ax.plot(self.rates, self.losses, color="0.75", linewidth=1, label="loss")
        ax.plot(self.rates, self.centered, color="C0", linewidth=2, label="smoothed")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = self.centered[np.isfinite(self.centered)]
        if len(finite):
            raw = self.losses[np.isfinite(self.losses)]
            low, high = min(finite.min(), raw.min()), finite[: max(1, self.burn_in + 1)].max()
            pad = 0.1 * (high - low) if high > low else 1.0
            ax.set_ylim(low - pad, high + 3 * pad)
        try:
            markers = {**self.suggestions, "suggested": self.suggestion}
        except ValueError:
            markers = {}
        for i, (name, lr) in enumerate(markers.items()):
            ax.axvline(lr, color=f"C{i + 1}", linestyle="--", linewidth=1, label=f"{name} {lr:.2g}")
        ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3, which="both")
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _ramp(start: Rates, end: Rates, num_steps: int, mode: str) -> np.ndarray:
    start_a = np.atleast_1d(np.asarray(start, dtype=float))
    end_a = np.atleast_1d(np.asarray(end, dtype=float))
    if start_a.shape != end_a.shape or start_a.ndim != 1:
        raise ValueError("start_lr and end_lr must be numbers or sequences of the same length")
    if not (np.all(start_a > 0) and np.all(np.isfinite(end_a)) and np.all(end_a > start_a)):
        raise ValueError(f"need 0 < start_lr < end_lr (finite), got {start} and {end}")
    fraction = np.linspace(0.0, 1.0, num_steps)[:, None]
    if mode == "exp":
        rates = start_a * (end_a / start_a) ** fraction
    elif mode == "linear":
        rates = start_a + (end_a - start_a) * fraction
    else:
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    return np.asarray(rates[:, 0] if np.ndim(start) == 0 else rates)


def lr_range_test(
    step_fn: Optional[Callable[..., float]] = None,
    *,
    optimizer: Optional[Optimizer] = None,
    loss_fn: Optional[Callable[..., tuple[float, Any]]] = None,
    start_lr: Rates = 1e-7,
    end_lr: Rates = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    beta: float = 0.98,
    diverge_threshold: float = 5.0,
    burn_in: Optional[int] = None,
    min_lr: float = 0.0,
    reset: Optional[Callable[[], None]] = None,
    restore: bool = True,
    seed: Optional[int] = None,
    progress: bool = False,
) -> RangeTestResult:
    """Sweeps the learning rate from ``start_lr`` to ``end_lr`` over ``num_steps`` mini-batches.

    Two ways to train:

    - ``step_fn(lr) -> loss``: trains one mini-batch at rate ``lr`` (a float, or a tuple with one
      rate per group when ``start_lr``/``end_lr`` are sequences) and returns its loss; works with
      any framework. If it accepts an ``rng`` argument, it receives a NumPy generator seeded with
      ``seed``, so that its batches are reproducible.
    - ``optimizer=`` an lrfast optimizer and ``loss_fn(rng) -> (loss, grads)``: lrfast sets the
      rate, steps the optimizer, and afterwards restores the parameters and the optimizer state
      exactly as they were (``restore=True``, the default).

    The loss is smoothed with a bias-corrected exponential average (``beta``). The sweep stops
    early when the smoothed loss exceeds ``diverge_threshold`` times its best, or the loss is NaN
    or infinite. ``reset()`` is called at the end (restore your own model there). Suggestions
    ignore the first ``burn_in`` points (default: a tenth) and rates below ``min_lr``, so an early
    spike or a noisy start cannot win.
    """
    if (step_fn is None) == (optimizer is None):
        raise TypeError("give either step_fn, or optimizer and loss_fn")
    if optimizer is not None and loss_fn is None:
        raise TypeError("optimizer= needs loss_fn(rng) -> (loss, grads)")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if not diverge_threshold > 1:
        raise ValueError(f"diverge_threshold must be > 1, got {diverge_threshold}")
    rates = _ramp(start_lr, end_lr, num_steps, mode)
    rng = np.random.default_rng(seed)
    burn_in = max(1, num_steps // 10) if burn_in is None else burn_in
    snapshot = None
    if optimizer is not None:
        snapshot = ([p.copy() for p in optimizer.params], optimizer.state_dict())

        def train(lr: Any) -> float:
            assert loss_fn is not None and optimizer is not None
            loss, grads = loss_fn(rng)
            optimizer.lr = float(np.atleast_1d(lr)[0])
            optimizer.step(grads)
            return real_number(loss, "loss_fn's loss")

    else:
        assert step_fn is not None
        takes_rng = "rng" in inspect.signature(step_fn).parameters

        def train(lr: Any) -> float:
            assert step_fn is not None
            value = tuple(float(x) for x in lr) if np.ndim(lr) else float(lr)
            loss = step_fn(value, rng=rng) if takes_rng else step_fn(value)
            return real_number(loss, f"step_fn({value})")

    losses: list[float] = []
    smoothed: list[float] = []
    average, best, stop_reason = 0.0, math.inf, "end_lr reached"
    bar = _progress(num_steps, "range test") if progress else None
    try:
        for i in range(num_steps):
            loss = train(rates[i])
            losses.append(loss)
            if bar is not None:
                bar.update(1)
            if not math.isfinite(loss):
                smoothed.append(math.nan)
                stop_reason = f"loss not finite at lr {np.atleast_1d(rates[i])[0]:.3g}"
                break
            average = beta * average + (1 - beta) * loss
            value = average / (1 - beta ** (i + 1))
            smoothed.append(value)
            best = min(best, value)
            if i >= burn_in and value > diverge_threshold * best:
                stop_reason = f"diverged at lr {np.atleast_1d(rates[i])[0]:.3g}"
                break
    finally:
        if bar is not None:
            bar.close()
        if optimizer is not None and snapshot is not None and restore:
            for p, saved in zip(optimizer.params, snapshot[0]):
                np.copyto(p, saved)
            optimizer.load_state_dict(snapshot[1])  # the rates and lr_scale too
        if reset is not None:
            reset()
    n = len(losses)
    return RangeTestResult(
        lrs=rates[:n],
        losses=np.asarray(losses),
        smoothed=np.asarray(smoothed),
        stop_reason=stop_reason,
        burn_in=burn_in,
        min_lr_guard=min_lr,
        beta=beta,
    )


def _ema(y: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average."""
    out = np.empty(len(y))
    average = 0.0
    for i, value in enumerate(y):
        average = beta * average + (1 - beta) * value
        out[i] = average / (1 - beta ** (i + 1))
    return out


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, desc=desc, leave=False)
