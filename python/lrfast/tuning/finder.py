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

__all__ = ["lr_range_test", "RangeTestResult", "replay"]

Rates = Union[float, Sequence[float]]
# The smoothed loss must fall by this share of its scale for the sweep to carry a signal.
NO_SIGNAL = 0.05
# The stop rule's defaults (one definition for lr_range_test and replay): the smoothing of the
# online average, and how far above their best the average and a raw loss may go.
BETA = 0.98
DIVERGE_THRESHOLD = 5.0
RAW_DIVERGE_THRESHOLD = 30.0
# Largest spread of the rules, in decades, for each confidence level (calibrated on the
# corpus of training runs in the repository's tests/data).
CONFIDENCE_DECADES = {"high": 0.5, "medium": 1.0}


@dataclass
class RangeTestResult:
    """What a range test saw, and what it suggests.

    ``lrs`` has one row per step taken (one column per parameter group when groups sweep their
    own ranges; the first column is the x axis). ``losses`` are the raw losses,
    ``online_average`` the bias-corrected exponential average the stop rule read as the sweep
    ran, :attr:`smoothed` the zero-lag smoothing the suggestion rules read (the line the plot
    calls "smoothed"). ``stop_reason`` says why the sweep ended; :attr:`has_signal` whether the
    loss responded to the rate at all.
    """

    lrs: np.ndarray
    losses: np.ndarray
    online_average: np.ndarray
    stop_reason: str
    burn_in: int
    min_lr_guard: float = 0.0
    beta: float = BETA
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def smoothed(self) -> np.ndarray:
        """The losses smoothed forward and backward (zero lag): what the rules read.

        The online average the stop rule uses lags the loss by about ``1/(1 − beta)`` steps
        (50 at 0.98): on an exponential ramp of 100 steps that is most of a decade, and
        suggestions read from it land too high. Smoothing the recorded curve in both
        directions, over a window of a 25th of the sweep, removes the lag."""
        if "smoothed" not in self._cache:
            finite = np.isfinite(self.losses)
            y = np.where(finite, self.losses, np.nan)
            n = int(np.argmin(finite)) if not finite.all() else len(y)
            # A window of a 25th of the sweep each way: enough to tame mini-batch noise, short
            # enough to keep a loss that falls by 10x in a few dozen steps.
            beta = 1 - 1 / max(2.0, n / 25)
            forward = _ema(y[:n], beta)
            both = _ema(forward[::-1], beta)[::-1]
            self._cache["smoothed"] = np.r_[both, np.full(len(y) - n, np.nan)]
        smoothed: np.ndarray = self._cache["smoothed"]
        return smoothed

    @property
    def has_signal(self) -> bool:
        """Whether the loss responded to the rate: the smoothed loss fell, somewhere after the
        burn-in, by at least ``NO_SIGNAL`` (5%) of its scale (the largest of its absolute
        values there). A loss that ignores the rate, or pure noise, has no signal, and no
        rate can be read off it."""
        y = self.smoothed[self.burn_in :]
        y = y[np.isfinite(y)]
        if len(y) < 2:
            return False
        scale = float(np.max(np.abs(y)))
        if scale == 0:
            return False
        fall = float(np.max(np.maximum.accumulate(y) - y))
        return fall >= NO_SIGNAL * scale

    # -- the rules ---------------------------------------------------------------------------
    @property
    def rates(self) -> np.ndarray:
        """The first group's rates: the x axis."""
        rates: np.ndarray = self.lrs if self.lrs.ndim == 1 else self.lrs[:, 0]
        return rates

    def _usable(self) -> np.ndarray:
        """Indices a suggestion may use: after burn-in, at or above the guard, finite loss."""
        if not self.has_signal:
            raise ValueError(
                "no signal: the loss did not respond to the rate over the sweep (it fell by "
                f"less than {NO_SIGNAL:.0%} of its scale); check that the rate reaches the "
                "optimizer, widen the range, or use more num_steps"
            )
        idx = np.arange(len(self.losses))
        ok = (idx >= self.burn_in) & (self.rates >= self.min_lr_guard) & np.isfinite(self.smoothed)
        usable: np.ndarray = idx[ok]
        if len(usable) < 5:
            raise ValueError(
                f"too few points for a suggestion: {len(usable)} usable of {len(self.losses)} "
                f"recorded (burn-in {self.burn_in}, stop: {self.stop_reason}); "
                "use more num_steps, a lower start_lr or a larger diverge_threshold"
            )
        return usable

    def _index_of_min(self) -> int:
        usable = self._usable()
        return int(usable[np.argmin(self.smoothed[usable])])

    def steepest_index(self) -> int:
        """Where the smoothed loss falls fastest against log(rate), before its minimum."""
        usable = self._usable()
        end = self._index_of_min()
        window = usable[usable <= end]
        if len(window) < 3:
            window = usable[: max(3, len(window))]
        x = np.log(self.rates[window])
        slope = np.gradient(self.smoothed[window], x)
        return int(window[np.argmin(slope)])

    def valley_index(self) -> int:
        """fastai's valley rule: the longest stretch of decreasing loss; two thirds down it."""
        usable = self._usable()
        y = self.smoothed[usable]
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
        """``high`` when the rules agree within ``CONFIDENCE_DECADES["high"]`` decades,
        ``medium`` within ``CONFIDENCE_DECADES["medium"]``, else ``low`` (then look at the
        plot); ``none`` when there is no signal or too few points to read.

        This measures only how well the three rules agree, and agreement is not evidence that
        the rate is right: on the 12 sweeps with a signal in the repository's corpus of
        training runs (``tests/data/loss_corpus_confusion.md``), no sweep was ``high``, the 5
        ``medium`` ones had a suggestion within a decade of the good rates 3 times (never
        among them), the 7 ``low`` ones 7 times (5 among them). Read the plot."""
        try:
            spread = self.agreement_decades
        except ValueError:
            return "none"
        if spread <= CONFIDENCE_DECADES["high"]:
            return "high"
        return "medium" if spread <= CONFIDENCE_DECADES["medium"] else "low"

    @property
    def cyclic_bounds(self) -> tuple[float, float]:
        """``(base_lr, max_lr)`` for a cyclical or one-cycle schedule: ``max_lr`` the largest rate
        that still improves the loss (at the smoothed minimum), ``base_lr`` a quarter of it
        (Smith: a third to a quarter). The bounds always bracket :attr:`suggestion`: when the
        suggestion lies below a quarter of ``max_lr``, ``base_lr`` is the suggestion itself
        (:meth:`summary` says so)."""
        max_lr = float(self.rates[self._index_of_min()])
        return min(max_lr / 4, self.suggestion), max(max_lr, self.suggestion)

    def suggestion_for_groups(self) -> np.ndarray:
        """The suggestion as one rate per parameter group (groups ramp in lockstep)."""
        index = int(np.argmin(np.abs(np.log(self.rates) - math.log(self.suggestion))))
        return np.atleast_1d(self.lrs[index]).astype(float)

    def summary(self) -> str:
        """A few lines for a terminal or a report."""
        head = f"range test: {len(self.losses)} steps, stop: {self.stop_reason}"
        try:
            s = self.suggestions
        except ValueError as err:
            return f"{head}\n  no suggestion: {err}"
        base, top = self.cyclic_bounds
        note = " (base_lr lowered to the suggestion)" if base < top / 4 else ""
        return (
            f"{head}\n"
            f"  suggested lr {self.suggestion:.3g} (steepest {s['steepest']:.3g}, valley "
            f"{s['valley']:.3g}, min/10 {s['min/10']:.3g}; confidence {self.confidence}, "
            f"rules {self.agreement_decades:.2f} decades apart)\n"
            f"  cyclic bounds: base_lr {base:.3g}, max_lr {top:.3g}{note}"
        )

    def plot(self, path: Union[str, os.PathLike[str], None] = None, ax: Any = None) -> Any:
        """Loss against rate on a log axis, raw and smoothed, over everything the sweep
        recorded (a blow-up included: the loss axis turns logarithmic when the losses span
        more than two decades), with each rule's suggestion marked in its own style."""
        from ..plot import figure_and_axes, finish

        fig, ax = figure_and_axes(ax)
        ax.plot(self.rates, self.losses, color="0.7", linewidth=1, label="loss (raw)")
        ax.plot(self.rates, self.smoothed, color="C0", linewidth=2, label="smoothed")
        raw = self.losses[np.isfinite(self.losses)]
        log_y = len(raw) > 0 and raw.min() > 0 and raw.max() / raw.min() > 100
        try:
            markers = {"suggested": self.suggestion, **self.suggestions}
        except ValueError:
            markers = {}
        # The suggestion is the median of the rules, so it coincides with one of them: a wide
        # pale band under thin patterned lines keeps both visible.
        styles = {
            "suggested": {"color": "C3", "linewidth": 6, "alpha": 0.3, "linestyle": "-"},
            "steepest": {"color": "C1", "linewidth": 1.5, "linestyle": "--"},
            "valley": {"color": "C2", "linewidth": 1.5, "linestyle": ":"},
            "min/10": {"color": "C4", "linewidth": 1.5, "linestyle": "-."},
        }
        for name, lr in markers.items():
            ax.axvline(lr, label=f"{name} {lr:.2g}", **styles[name])
        title = "learning-rate range test" + ("" if markers else " (no suggestion)")
        finish(ax, title, "learning rate", "loss", log_x=True, log_y=log_y)
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
    beta: float = BETA,
    diverge_threshold: float = DIVERGE_THRESHOLD,
    raw_diverge_threshold: float = RAW_DIVERGE_THRESHOLD,
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

    The loss is smoothed with a bias-corrected exponential average (``beta``). After the
    burn-in, the sweep stops early when that average exceeds ``diverge_threshold`` (5) times its
    best, when a raw loss exceeds ``raw_diverge_threshold`` (30) times the best raw loss (a
    blow-up the lagging average would hide; 30 and not 10, because single mini-batch losses on
    real problems often sit 10x above the luckiest one), or when the loss is NaN or infinite.
    Losses may have any sign: for a best at or below zero, "k times the best" reads as the best
    plus ``k − 1`` times the fall from the first loss to it. A loss that does not respond to the
    rate gives a result without signal (:attr:`RangeTestResult.has_signal`), whose suggestion
    raises a ``ValueError`` that says so and whose confidence is ``none``. ``reset()`` is called
    at the end (restore your own model there). Suggestions ignore the first ``burn_in`` points
    (default: a tenth) and rates below ``min_lr``, so an early spike or a noisy start cannot
    win.
    """
    if (step_fn is None) == (optimizer is None):
        raise TypeError("give either step_fn, or optimizer and loss_fn")
    if optimizer is not None and loss_fn is None:
        raise TypeError("optimizer= needs loss_fn(rng) -> (loss, grads)")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    for name, value in (
        ("diverge_threshold", diverge_threshold),
        ("raw_diverge_threshold", raw_diverge_threshold),
    ):
        if not (isinstance(value, (int, float)) and value > 1 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number > 1, got {value!r}")
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
    stop = _StopRule(beta, burn_in, diverge_threshold, raw_diverge_threshold)
    stop_reason = "end_lr reached"
    bar = _progress(num_steps, "range test") if progress else None
    try:
        for i in range(num_steps):
            loss = train(rates[i])
            losses.append(loss)
            if bar is not None:
                bar.update(1)
            why = stop.update(loss)
            if why:
                stop_reason = f"{why} at lr {np.atleast_1d(rates[i])[0]:.3g}"
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
        online_average=np.asarray(stop.averages),
        stop_reason=stop_reason,
        burn_in=burn_in,
        min_lr_guard=min_lr,
        beta=beta,
    )


def _diverged(value: float, best: float, first: float, threshold: float) -> bool:
    """Whether ``value`` has left ``best`` by more than ``threshold`` allows, for losses of any
    sign: above ``threshold × best`` when the best is positive; else above the best by
    ``threshold − 1`` times the fall from the first value to the best (or times ``|first|``
    when nothing fell yet)."""
    if best > 0:
        return value > threshold * best
    reach = first - best if first > best else abs(first)
    return reach > 0 and value > best + (threshold - 1) * reach


class _StopRule:
    """When a sweep must stop: a loss not finite; after the burn-in, the online average above
    ``diverge_threshold`` times its best, or a raw loss above ``raw_diverge_threshold`` times
    the best raw loss (both read by :func:`_diverged`, so negative losses are legal)."""

    def __init__(self, beta: float, burn_in: int, smoothed: float, raw: float) -> None:
        self.beta, self.burn_in, self.smoothed, self.raw = beta, burn_in, smoothed, raw
        self.averages: list[float] = []
        self.average = 0.0
        self.best_average = self.best_raw = math.inf
        self.first = math.nan

    def update(self, loss: float) -> str:
        """Records one loss; the reason to stop, or ``""``."""
        i = len(self.averages)
        if not math.isfinite(loss):
            self.averages.append(math.nan)
            return "loss not finite"
        if i == 0:
            self.first = loss
        self.average = self.beta * self.average + (1 - self.beta) * loss
        value = self.average / (1 - self.beta ** (i + 1))
        self.averages.append(value)
        self.best_average = min(self.best_average, value)
        self.best_raw = min(self.best_raw, loss)
        if i < self.burn_in:
            return ""
        if _diverged(value, self.best_average, self.first, self.smoothed):
            return "diverged"
        if _diverged(loss, self.best_raw, self.first, self.raw):
            return f"raw loss above {self.raw:g}x its best"
        return ""


def replay(
    rates: np.ndarray,
    losses: Sequence[float],
    *,
    beta: float = BETA,
    diverge_threshold: float = DIVERGE_THRESHOLD,
    raw_diverge_threshold: float = RAW_DIVERGE_THRESHOLD,
    burn_in: Optional[int] = None,
    min_lr: float = 0.0,
) -> RangeTestResult:
    """The result :func:`lr_range_test` would have returned for a sweep that saw ``losses`` at
    ``rates`` (recorded elsewhere, or by an older version): the stop rule is applied to them in
    order, so the result ends where that rule would have stopped the sweep (a result that runs
    to the last loss says "end of the recorded losses"). ``burn_in`` defaults to a tenth of
    ``len(rates)``: give the planned sweep's own when ``rates`` holds only the part recorded."""
    rates = np.asarray(rates, dtype=float)
    if len(losses) > len(rates):
        raise ValueError(f"losses has {len(losses)} values for {len(rates)} rates")
    burn_in = max(1, len(rates) // 10) if burn_in is None else burn_in
    stop = _StopRule(beta, burn_in, diverge_threshold, raw_diverge_threshold)
    kept: list[float] = []
    stop_reason = "end of the recorded losses"
    for i, loss in enumerate(losses):
        kept.append(float(loss))
        why = stop.update(float(loss))
        if why:
            stop_reason = f"{why} at lr {np.atleast_1d(rates[i])[0]:.3g}"
            break
    n = len(kept)
    return RangeTestResult(
        rates[:n], np.asarray(kept), np.asarray(stop.averages), stop_reason, burn_in,
        min_lr, beta,
    )  # fmt: skip


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
