"""``python -m lrfast demo``: the classic learning-rate experiments, on real data, in a minute.

A two-layer perceptron in NumPy (64 → 128 ReLU → 10, softmax, He initialization) learns
scikit-learn's bundled handwritten digits (1,797 8×8 images; no network needed), every update an
lrfast kernel. The
sections reproduce what practitioners see:

1. ``fixed``: plain SGD at a rate too high, too low and well chosen;
2. ``sensitivity``: the U-shaped curve of final loss against rate, coarse to fine;
3. ``range``: the learning-rate range test, its suggestion, and a run at it;
4. ``optimizers``: SGD, momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam, AdamW, Adam-HD;
5. ``schedules``: constant, step, exponential, cosine, warm restarts, cyclical, one-cycle and
   plateau reduction, at the same peak rate;
6. ``state8``: SGD momentum, Adam and AdamW with 8-bit state against float32 state, on the same
   batches: test accuracy, loss and how far the parameters drift apart, step by step;
7. ``search``: grid, random and Bayesian (Optuna's TPE) search for SGD's rate, and how many
   trainings each needs to come near the best.

It prints tables and writes a report folder (``report.md`` and PNG plots).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .. import optim, schedules
from ..extras import install_hint
from ..monitor import ReduceLROnPlateau
from ..tracking import TrainingLogger, summary_writer
from ..tuning import AdamHD, diagnose, log_grid, lr_range_test, sensitivity
from .models import MLP

SECTIONS = ("fixed", "sensitivity", "range", "optimizers", "schedules", "state8", "search")
BATCH = 64


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int) -> Data:
    """scikit-learn's digits, 75% train / 25% test, float32, pixel intensities 0-16 as
    scikit-learn ships them. Unscaled inputs are where the rate matters most: the usable range
    is narrow, and the failures on either side are plain to see."""
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError as err:
        raise SystemExit(
            f"the demo needs scikit-learn and matplotlib: {install_hint('demo')}"
        ) from err
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order]
    cut = int(0.75 * len(x))
    return Data(x[:cut], y[:cut], x[cut:], y[cut:])


@dataclass
class Run:
    """One training run: losses per epoch (train, mean over its mini-batches), test accuracy."""

    label: str
    lr: float
    epoch_losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    test_accuracy: float = math.nan
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1] if self.epoch_losses else math.nan


def train(
    data: Data,
    make_optimizer: Callable[[list[np.ndarray]], Any],
    epochs: int,
    seed: int,
    label: str = "",
    on_epoch: Optional[Callable[[Any, float], None]] = None,
) -> Run:
    """Trains a fresh MLP; stops early (loss NaN/Inf) and records what happened. With
    ``--tensorboard``, a labelled run also writes its scalars there."""
    rng = np.random.default_rng(seed)
    model = MLP([64, 128, 10], rng, "relu")
    opt = make_optimizer(model.params)
    run = Run(label, float(opt.lr))
    log = _logger(label)
    if log is not None:
        log.attach(opt.inner if isinstance(opt, _Recorded) else opt)
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        for _ in range(epochs):
            order = rng.permutation(len(data.x_train))
            losses = []
            for i in range(0, len(order), BATCH):
                batch = order[i : i + BATCH]
                loss, grads = model.loss_and_grads(data.x_train[batch], data.y_train[batch])
                losses.append(loss)
                if not math.isfinite(loss):
                    break
                opt.step(grads)
                if log is not None:
                    log.log(loss=loss)
            epoch_loss = float(np.mean(losses))
            if log is not None:
                log.log(epoch_loss=epoch_loss)
            run.epoch_losses.append(epoch_loss)
            run.lrs.append(float(opt.lr))
            if not math.isfinite(epoch_loss) or epoch_loss > 1e3:
                break
            if on_epoch is not None:
                on_epoch(opt, epoch_loss)
        run.test_accuracy = model.accuracy(data.x_test, data.y_test)
    run.seconds = time.perf_counter() - start
    if log is not None:
        log.log(test_accuracy=run.test_accuracy)
        log.close()
    return run


# --tensorboard: the folder every labelled run writes its TensorBoard events to (in a
# subfolder named after it), for this invocation of the demo.
_tensorboard_dir: Optional[Path] = None


def _logger(label: str) -> Optional[TrainingLogger]:
    if _tensorboard_dir is None or not label:
        return None
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in label)
    folder, n = _tensorboard_dir / name, 1
    while folder.exists():  # a label met again (a section run twice) gets its own folder
        n += 1
        folder = _tensorboard_dir / f"{name}_{n}"
    return TrainingLogger(tensorboard=folder)


def _verdict(run: Run) -> str:
    """diagnose()'s short verdict on a run's epoch losses."""
    if len(run.epoch_losses) < 8:
        return "too_high (diverged)" if not math.isfinite(run.final_loss) else ""
    d = diagnose(run.epoch_losses)
    return d.verdict + (f" ({d.kind})" if d.kind else "")


def _table(rows: Sequence[Run]) -> str:
    head = "| run | starting lr | final train loss | test accuracy | diagnose() |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        verdict = _verdict(r)
        lines.append(
            f"| {r.label} | {r.lr:.3g} | {r.final_loss:.4g} | {r.test_accuracy:.3f} | {verdict} |"
        )
    return "\n".join(lines)


def _loss_plot(runs: Sequence[Run], path: Path, title: str) -> None:
    from ..plot import LINESTYLES, figure, finish

    fig = figure()
    ax = fig.subplots()
    for i, r in enumerate(runs):
        y = np.array(r.epoch_losses)
        y = np.where(np.isfinite(y) & (y < 1e3), y, np.nan)
        # Styles cycle with the colours so that curves that coincide (Adam and AdamW here,
        # without weight decay to tell them apart) both stay visible.
        ax.plot(np.arange(1, len(y) + 1), y, linestyle=LINESTYLES[i % len(LINESTYLES)],
                linewidth=1.5, label=f"{r.label} (acc {r.test_accuracy:.2f})")  # fmt: skip
    finish(ax, title, "epoch", "train loss", log_y=True)
    fig.savefig(path, dpi=120)


class Report:
    """Collects Markdown sections and prints them as it goes."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts: list[str] = []
        # (section, what it shows): the summary table the README quotes, read off this run.
        self.claims: list[tuple[str, str]] = []

    def add(self, text: str) -> None:
        print(text + "\n", flush=True)
        self.parts.append(text)

    def image(self, name: str, caption: str) -> None:
        self.parts.append(f"![{caption}]({name})")

    def write(self) -> Path:
        path = self.out / "report.md"
        path.write_text("\n\n".join(self.parts) + "\n")
        return path


def _sgd_at(lr: float) -> Callable[[list[np.ndarray]], Any]:
    return lambda params: optim.SGD(params, lr=lr)


def _momentum_sgd_with(schedule: schedules.Schedule) -> Callable[[list[np.ndarray]], Any]:
    return lambda params: optim.SGD(params, lr=schedule, momentum=0.9)


def section_fixed(data: Data, epochs: int, seed: int, report: Report) -> None:
    runs = [
        train(data, _sgd_at(lr), epochs, seed, label)
        for label, lr in (("too high", 0.5), ("too low", 1e-4), ("well chosen", 0.03))
    ]
    details = "\n".join(
        f"- {r.label}: {diagnose(r.epoch_losses)}" for r in runs if len(r.epoch_losses) >= 8
    )
    report.add("## 1. Fixed rates, plain SGD\n\n" + _table(runs) + "\n\n" + details)
    report.claims.append((
        "fixed rates",
        "; ".join(f"lr {r.lr:.3g}: test accuracy {r.test_accuracy:.3f} (`{_verdict(r)}`)"
                  for r in runs),
    ))  # fmt: skip
    _loss_plot(runs, report.out / "fixed_rates.png", "plain SGD at three fixed rates")
    report.image("fixed_rates.png", "loss curves at three fixed rates")


def section_sensitivity(
    data: Data, epochs: int, seed: int, report: Report, progress: bool
) -> float:
    def run_at(lr: float) -> dict[str, Any]:
        r = train(data, lambda p: optim.SGD(p, lr=lr), epochs, seed)
        return {"loss": r.final_loss, "metric": r.test_accuracy, "history": r.epoch_losses}

    grid = log_grid(1e-5, 1.0, per_decade=2).tolist()
    result = sensitivity(run_at, grid, refine=1, refine_points=3, progress=progress)
    report.add(
        "## 2. Sensitivity: final loss against rate (plain SGD)\n\n"
        "A log grid of two points per decade from 1e-5 to 1, then one finer round around the "
        f"best. Best rate: **{result.best_lr:.3g}**. (metric = test accuracy)\n\n"
        f"```\n{result.table()}\n```"
    )
    finite = np.isfinite(result.final)
    report.claims.append((
        "sensitivity",
        f"U curve over {result.lrs[0]:.3g}..{result.lrs[-1]:.3g}: final loss "
        f"{result.final[0]:.3g} at {result.lrs[0]:.3g}, bottom {result.final[finite].min():.3g} "
        f"at {result.best_lr:.3g}, {result.final[-1]:.3g} at {result.lrs[-1]:.3g}",
    ))  # fmt: skip
    result.plot(report.out / "sensitivity.png")
    report.image("sensitivity.png", "final loss against learning rate")
    return result.best_lr


def section_range(data: Data, epochs: int, seed: int, report: Report, progress: bool) -> float:
    rng = np.random.default_rng(seed)
    model = MLP([64, 128, 10], rng, "relu")
    opt = optim.SGD(model.params, lr=0.0)
    before = [p.copy() for p in model.params]

    def loss_fn(batch_rng: np.random.Generator) -> tuple[float, list[np.ndarray]]:
        batch = batch_rng.integers(0, len(data.x_train), BATCH)
        return model.loss_and_grads(data.x_train[batch], data.y_train[batch])

    with np.errstate(all="ignore"):
        result = lr_range_test(
            optimizer=opt, loss_fn=loss_fn, start_lr=1e-6, end_lr=10.0, num_steps=200,
            seed=seed, progress=progress,
        )  # fmt: skip
    restored = all(np.array_equal(a, b) for a, b in zip(before, model.params))
    try:
        suggestion = result.suggestion
    except ValueError as err:  # no signal, or too few points: say so, and go on at 0.01
        report.add(f"## 3. Learning-rate range test\n\nNo suggestion: {err}. Using 0.01.")
        return 0.01
    run = train(data, lambda p: optim.SGD(p, lr=suggestion), epochs, seed, "at the suggestion")
    report.add(
        "## 3. Learning-rate range test (plain SGD, 200 mini-batches, 1e-6 to 10)\n\n"
        f"```\n{result.summary()}\n```\n\n"
        f"Model restored exactly after the sweep: {restored}. Training {epochs} epochs at the "
        f"suggested rate {suggestion:.3g}: final loss {run.final_loss:.4g}, test accuracy "
        f"**{run.test_accuracy:.3f}**."
    )
    s = result.suggestions
    report.claims.append((
        "range test",
        f"suggestion {suggestion:.2g} (steepest {s['steepest']:.2g}, valley {s['valley']:.2g}, "
        f"min/10 {s['min/10']:.2g}; confidence {result.confidence}), stop: "
        f"{result.stop_reason}; {epochs} epochs at the suggestion reach "
        f"{run.test_accuracy:.3f}; model restored exactly: {restored}",
    ))  # fmt: skip
    result.plot(report.out / "range_test.png")
    report.image("range_test.png", "range test: loss against rate")
    return suggestion


def section_optimizers(
    data: Data, epochs: int, seed: int, report: Report, sgd_lr: float
) -> None:  # fmt: skip
    makers: dict[str, tuple[Callable[[list[np.ndarray]], Any], float]] = {
        "SGD": (lambda p: optim.SGD(p, lr=sgd_lr), sgd_lr),
        "SGD momentum": (lambda p: optim.SGD(p, lr=sgd_lr / 10, momentum=0.9), sgd_lr / 10),
        "Nesterov": (
            lambda p: optim.SGD(p, lr=sgd_lr / 10, momentum=0.9, nesterov=True),
            sgd_lr / 10,
        ),
        "Adagrad": (lambda p: optim.Adagrad(p, lr=0.05), 0.05),
        "RMSprop": (lambda p: optim.RMSprop(p, lr=1e-3), 1e-3),
        "Adadelta": (lambda p: optim.Adadelta(p, lr=1.0), 1.0),
        "Adam": (lambda p: optim.Adam(p, lr=1e-3), 1e-3),
        "AdamW": (lambda p: optim.AdamW(p, lr=1e-3), 1e-3),
        "Adam-HD": (lambda p: AdamHD(p, lr=1e-3, hypergrad_lr=1e-7), 1e-3),
    }
    runs = [train(data, make, epochs, seed, name) for name, (make, _) in makers.items()]
    hd = runs[-1]
    report.add(
        "## 4. Optimizers (default rates; SGD at the range test's suggestion, momentum "
        "variants at a tenth of it)\n\n"
        + _table(runs)
        + f"\n\nAdam-HD moved its rate from {hd.lr:.3g} to {hd.lrs[-1]:.3g} by itself."
    )
    worst = min(runs, key=lambda r: r.test_accuracy)
    best = max(runs, key=lambda r: r.test_accuracy)
    report.claims.append((
        "optimizers",
        f"test accuracy {worst.test_accuracy:.3f} ({worst.label}) to {best.test_accuracy:.3f} "
        f"({best.label}); Adam-HD {hd.test_accuracy:.3f}, its rate moved from {hd.lr:.3g} to "
        f"{hd.lrs[-1]:.3g} by itself",
    ))  # fmt: skip
    _loss_plot(runs, report.out / "optimizers.png", "nine optimizers on digits")
    report.image("optimizers.png", "loss curves of nine optimizers")


class _Recorded:
    """An optimizer that keeps a copy of the parameters after every step (for comparing two
    runs step by step); everything else is the wrapped optimizer's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.snapshots: list[list[np.ndarray]] = []

    @property
    def lr(self) -> float:
        return float(self.inner.lr)

    def step(self, grads: list[np.ndarray]) -> None:
        self.inner.step(grads)
        self.snapshots.append([p.copy() for p in self.inner.params])


def _recorded_run(
    data: Data,
    make: Callable[[list[np.ndarray], int], Any],
    bits: int,
    epochs: int,
    seed: int,
    name: str,
) -> tuple[Run, _Recorded]:
    """One run with ``state_bits=bits``, and its optimizer with a snapshot after each step."""
    made: list[_Recorded] = []

    def make_recorded(params: list[np.ndarray]) -> _Recorded:
        made.append(_Recorded(make(params, bits)))
        return made[0]

    run = train(data, make_recorded, epochs, seed, f"{name}, {bits}-bit")
    return run, made[0]


def section_state8(data: Data, epochs: int, seed: int, report: Report, sgd_lr: float) -> None:
    """The same runs with float32 and with 8-bit optimizer state."""
    makers: dict[str, Callable[[list[np.ndarray], int], Any]] = {
        "SGD momentum": lambda p, bits: optim.SGD(p, lr=sgd_lr / 10, momentum=0.9, state_bits=bits),
        "Adam": lambda p, bits: optim.Adam(p, lr=1e-3, state_bits=bits),
        "AdamW": lambda p, bits: optim.AdamW(p, lr=1e-3, state_bits=bits),
    }
    lines = [
        "| optimizer | test accuracy, float32 state | 8-bit state | difference (points) | "
        "final loss, float32 | 8-bit | parameters apart after epoch 1 / at the end / at worst "
        "| state bytes per parameter, float32 / 8-bit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    differences = []
    for name, make in makers.items():
        runs: dict[int, Run] = {}
        recorders: dict[int, _Recorded] = {}
        state_bytes: dict[int, float] = {}
        for bits in (32, 8):
            runs[bits], recorders[bits] = _recorded_run(data, make, bits, epochs, seed, name)
            opt = recorders[bits].inner
            held = sum(s.nbytes for state in opt.state for s in state.values())
            state_bytes[bits] = held / sum(p.size for p in opt.params)
        apart = [
            math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(p8, p32)))
            / math.sqrt(sum(float(np.sum(b**2)) for b in p32))
            for p8, p32 in zip(recorders[8].snapshots, recorders[32].snapshots)
        ]
        gap = 100 * (runs[8].test_accuracy - runs[32].test_accuracy)
        epoch = -(-len(data.x_train) // BATCH)  # steps per epoch
        differences.append((name, gap))
        lines.append(
            f"| {name} | {runs[32].test_accuracy:.3f} | {runs[8].test_accuracy:.3f} | "
            f"{gap:+.1f} | {runs[32].final_loss:.4g} | {runs[8].final_loss:.4g} | "
            f"{apart[epoch - 1]:.2%} / {apart[-1]:.2%} / {max(apart):.2%} | "
            f"{state_bytes[32]:.2f} / {state_bytes[8]:.2f} |"
        )
    report.add(
        "## 6. 8-bit optimizer state\n\n"
        "`state_bits=8` keeps the state of float32 parameters of 4,096 elements or more in 8 "
        "bits per value (block-wise, Dettmers et al. 2022): here the 64x128 first layer, 85% "
        "of the parameters; the smaller tensors keep float32 state. Both runs of a row see the "
        'same batches; "parameters apart" is ||p_8bit - p_float32|| / ||p_float32|| after '
        "each step.\n\n" + "\n".join(lines)
    )
    worst_name, worst_gap = max(differences, key=lambda d: abs(d[1]))
    report.claims.append((
        "state8",
        f"8-bit state changes test accuracy by at most {abs(worst_gap):.1f} points "
        f"({worst_name}: {worst_gap:+.1f})",
    ))  # fmt: skip


# The search comparison: trainings per search, seeds of the random and TPE searches (a grid has
# none), and what counts as found: a final loss within 10% of the best any search reached.
SEARCH_LOW, SEARCH_HIGH, SEARCH_PER_DECADE = 1e-4, 1.0, 6
SEARCH_SEEDS = 5
SEARCH_WITHIN = (1.10, 1.5)


def _needed(finals: list[float], target: float) -> Optional[int]:
    """How many trainings, in the order run, until one's final loss is within ``target``."""
    return next((i + 1 for i, loss in enumerate(finals) if loss <= target), None)


def section_search(data: Data, epochs: int, seed: int, report: Report) -> None:
    """Grid, random and TPE search for plain SGD's rate, with the same budget of trainings."""
    import optuna

    budget = len(log_grid(SEARCH_LOW, SEARCH_HIGH, SEARCH_PER_DECADE))
    runs: dict[str, list[list[float]]] = {"grid": [], "random": [], "tpe": []}
    tables: dict[str, str] = {}
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial otherwise
    try:
        for strategy, seeds in (("grid", [0]), ("random", range(SEARCH_SEEDS)),
                                ("tpe", range(SEARCH_SEEDS))):  # fmt: skip
            for search_seed in seeds:
                finals: list[float] = []

                def run_at(lr: float, finals: list[float] = finals) -> dict[str, Any]:
                    r = train(data, lambda p: optim.SGD(p, lr=lr), epochs, seed)
                    finals.append(r.final_loss if math.isfinite(r.final_loss) else math.inf)
                    return {"loss": r.final_loss, "metric": r.test_accuracy,
                            "history": r.epoch_losses}  # fmt: skip

                result = sensitivity(
                    run_at, strategy=strategy, low=SEARCH_LOW, high=SEARCH_HIGH,
                    per_decade=SEARCH_PER_DECADE, num=budget, seed=search_seed,
                )  # fmt: skip
                runs[strategy].append(finals)
                tables.setdefault(strategy, result.table())
    finally:
        optuna.logging.set_verbosity(level)
    best = min(min(finals) for tried in runs.values() for finals in tried)
    near, loose = (within * best for within in SEARCH_WITHIN)
    lines = [
        "| search | trainings to come within 10% of the best, per seed | median | found in | "
        "within 50%: median | best final loss found, median |",
        "|---|---|---|---|---|---|",
    ]
    medians: dict[str, float] = {}
    for strategy, tried in runs.items():
        needed = [_needed(finals, near) for finals in tried]
        medians[strategy] = float(np.median([math.inf if n is None else n for n in needed]))
        roughly = np.median([_needed(finals, loose) or math.inf for finals in tried])
        shown = ", ".join("never" if n is None else str(n) for n in needed)
        found = sum(n is not None for n in needed)
        lines.append(
            f"| {strategy} | {shown} | {_count(medians[strategy])} | {found} of {len(tried)} | "
            f"{_count(float(roughly))} | {np.median([min(f) for f in tried]):.4g} |"
        )
    report.add(
        "## 7. Searching for the rate: grid, random and Bayesian (TPE)\n\n"
        f"`sensitivity(strategy=...)` with the same budget of {budget} trainings of plain SGD "
        f"({epochs} epochs each) over {SEARCH_LOW:g}..{SEARCH_HIGH:g}: the grid "
        f"({SEARCH_PER_DECADE} rates per decade, run from low to high), random rates drawn "
        "log-uniformly, and Optuna's TPE sampler (5 random trainings, then rates drawn where "
        f"the good ones were), each of the last two with seeds 0-{SEARCH_SEEDS - 1}. The best "
        f"final loss any search reached is {best:.4g}; the table counts the trainings each "
        f"search ran before one came within 10% of it ({near:.4g}; within 50%: {loose:.4g})."
        "\n\n" + "\n".join(lines) + f"\n\nThe TPE search of seed 0:\n\n```\n{tables['tpe']}\n```"
    )
    _plot_search(runs, near, report.out / "search.png")
    report.image("search.png", "best final loss so far against trainings, per search")
    report.claims.append((
        "search",
        f"trainings to come within 10% of the best final loss (of {budget}): TPE "
        f"{_count(medians['tpe'])}, random {_count(medians['random'])} (medians of "
        f"{SEARCH_SEEDS} seeds), grid {_count(medians['grid'])}",
    ))  # fmt: skip


def _count(median: float) -> str:
    return "never" if math.isinf(median) else f"{median:g}"


def _plot_search(runs: dict[str, list[list[float]]], target: float, path: Path) -> None:
    from ..plot import LINESTYLES, figure_and_axes, finish

    fig, ax = figure_and_axes()
    for k, (strategy, tried) in enumerate(runs.items()):
        so_far = np.array([np.minimum.accumulate(finals) for finals in tried])
        steps = np.arange(1, so_far.shape[1] + 1)
        label = strategy if len(tried) == 1 else f"{strategy} (median of {len(tried)} seeds)"
        ax.plot(steps, np.median(so_far, axis=0), color=f"C{k}", linestyle=LINESTYLES[k],
                marker="o", markersize=3, label=label)  # fmt: skip
    ax.axhline(target, color="0.4", linestyle=":", label="within 10% of the best")
    finish(ax, "searching for SGD's rate on digits", "trainings", "best final loss so far",
           log_y=True)  # fmt: skip
    fig.savefig(path, dpi=120, bbox_inches="tight")


def section_schedules(data: Data, epochs: int, seed: int, report: Report, peak: float) -> None:
    steps = epochs * math.ceil(len(data.x_train) / BATCH)
    S = schedules
    shapes: dict[str, schedules.Schedule] = {
        "constant": S.Constant(peak),
        "step": S.StepLR(peak, step_size=steps // 3, gamma=0.3),
        "exponential": S.ExponentialLR(peak, gamma=0.01 ** (1 / steps)),
        "cosine": S.CosineAnnealingLR(peak, T_max=steps),
        "warm restarts": S.CosineAnnealingWarmRestarts(peak, T_0=steps // 7, T_mult=2),
        "cyclical": S.CyclicLR(peak / 4, peak, step_size_up=steps // 8, mode="triangular2"),
        "one-cycle": S.OneCycleLR(peak, total_steps=steps),
    }
    runs = [train(data, _momentum_sgd_with(s), epochs, seed, name) for name, s in shapes.items()]

    def plateau_run() -> Run:
        holder: dict[str, ReduceLROnPlateau] = {}

        def on_epoch(opt: Any, loss: float) -> None:
            if "p" not in holder:
                holder["p"] = ReduceLROnPlateau(opt, factor=0.3, patience=1, threshold=0.05)
            holder["p"].step(loss)

        make = lambda p: optim.SGD(p, lr=peak, momentum=0.9)  # noqa: E731
        return train(data, make, epochs, seed, "plateau", on_epoch)

    runs.append(plateau_run())
    report.add(
        f"## 5. Schedules (SGD with momentum 0.9, peak rate {peak:.3g}, {steps} updates)\n\n"
        + _table(runs)
    )
    lowest = min(runs, key=lambda r: r.final_loss)
    worst = min(runs, key=lambda r: r.test_accuracy)
    best = max(runs, key=lambda r: r.test_accuracy)
    report.claims.append((
        "schedules",
        f"at peak {peak:.3g}: test accuracy {worst.test_accuracy:.3f} ({worst.label}) to "
        f"{best.test_accuracy:.3f} ({best.label}); lowest training loss {lowest.final_loss:.2g} "
        f"({lowest.label})",
    ))  # fmt: skip
    from ..plot import schedules as plot_schedules

    plot_schedules(
        shapes, steps, path=report.out / "schedule_shapes.png",
        title=f"schedule shapes at peak rate {peak:.3g}",
    )  # fmt: skip
    _loss_plot(runs, report.out / "schedules.png", "SGD with momentum under each schedule")
    report.image("schedule_shapes.png", "schedule shapes")
    report.image("schedules.png", "loss curves under each schedule")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lrfast demo", description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=30, help="epochs per training run (>= 1)"
    )
    parser.add_argument("--out", default="lrfast-report", help="report folder")
    parser.add_argument("--seed", type=_seed, default=0, help="seed (>= 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="write each labelled training run's scalars (lr, loss, gradient norm, update "
        "ratio, test accuracy) as TensorBoard event files under DIR, a folder per run",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    try:
        import matplotlib  # noqa: F401
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        if "search" in chosen:
            import optuna  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"the demo needs scikit-learn, matplotlib and optuna: {install_hint('demo')}"
        ) from err
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if args.tensorboard is not None:
        if Path(args.tensorboard).exists() and not Path(args.tensorboard).is_dir():
            parser.error(f"--tensorboard {args.tensorboard!r} exists and is not a folder")
        try:
            summary_writer("auto")  # refused now, not after the first section
        except ImportError as err:
            parser.error(str(err))
    # The demo's matrices are small (batches of 64 by 128 units): NumPy's BLAS threads only
    # contend with each other there, and on a busy machine they made one run 10x slower.
    # lrfast's own threads are not BLAS's and are left alone.
    global _tensorboard_dir
    _tensorboard_dir = None if args.tensorboard is None else Path(args.tensorboard)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            return _run(args, chosen, out)
    finally:
        _tensorboard_dir = None


def _run(args: argparse.Namespace, chosen: list[str], out: Path) -> int:
    data = load_digits_split(args.seed)
    report = Report(out)
    report.add(
        "# lrfast demo: the learning rate on handwritten digits\n\n"
        f"MLP 64-128-10 (ReLU), {len(data.x_train)} training / {len(data.x_test)} test images "
        "(pixels 0-16, unscaled), "
        f"mini-batches of {BATCH}, {args.epochs} epochs per run, seed {args.seed}. The "
        "`diagnose()` column is lrfast's reading of each run's loss curve (its thresholds are "
        "calibrated on a corpus of real training runs; its held-out accuracy is in the "
        "repository's tests/data/loss_corpus_confusion.md)."
    )
    start = time.perf_counter()
    progress = not args.no_progress
    suggestion = 0.1
    if "fixed" in chosen:
        section_fixed(data, args.epochs, args.seed, report)
    if "sensitivity" in chosen:
        section_sensitivity(data, args.epochs, args.seed, report, progress)
    if "range" in chosen:
        suggestion = section_range(data, args.epochs, args.seed, report, progress)
    if "optimizers" in chosen:
        section_optimizers(data, args.epochs, args.seed, report, suggestion)
    if "schedules" in chosen:
        section_schedules(data, args.epochs, args.seed, report, suggestion)
    if "state8" in chosen:
        section_state8(data, args.epochs, args.seed, report, suggestion)
    if "search" in chosen:
        section_search(data, args.epochs, args.seed, report)
    if report.claims:
        rows = "\n".join(f"| {section} | {claim} |" for section, claim in report.claims)
        report.add("## Summary\n\n| section | what it shows (this run) |\n| --- | --- |\n" + rows)
    report.add(f"_Done in {time.perf_counter() - start:.0f} s._")
    path = report.write()
    print(f"report written to {path}")
    return 0
