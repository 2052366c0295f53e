"""Makes the corpus of real training runs that ``diagnose`` and the range test are checked on.

    python tests/data/make_loss_corpus.py          # about 5 minutes on 2 cores; needs torch

Four problems, trained by lrfast's own optimizers at rates from far too low to far too high:

- ``digits-mlp``: the demo's 64-128-10 ReLU network on raw digits (pixels 0-16), NumPy;
- ``digits-logreg``: softmax regression on digits scaled to [0, 1], NumPy;
- ``spirals-mlp``: a 2-64-64-2 tanh network on two interleaved spirals, NumPy;
- ``digits-cnn``: a small convolutional network in PyTorch, trained through ``lrfast.torch``.

Each with plain SGD, SGD with momentum 0.9 and Adam, a constant rate and a cosine decay to zero,
13 rates half a decade apart, two seeds (one for the CNN). Every run records its mini-batch
losses (per step) and their mean per epoch, its test accuracy and final losses, and a label
read off its outcome against the best run of its family (same problem, optimizer, schedule and
seed): see :func:`label`. For each problem, optimizer and seed a range test (200 mini-batches)
is recorded too, with the rates its family found good, so that confidence can be checked
against a known answer.

Split: ``digits-cnn`` (a framework and an architecture the rules never saw) and seed 1 of the
other problems are held out; the thresholds of ``diagnose`` are tuned on seed 0 of the NumPy
problems only. ``tests/test_diagnose_corpus.py`` reads the files this writes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import lrfast
from lrfast.cli.demo import load_digits_split
from lrfast.cli.models import MLP, two_spirals

HERE = Path(__file__).parent
EPOCHS = 20
BATCH = 64
SGD_RATES = np.logspace(-5, 1, 13)
ADAM_RATES = np.logspace(-6, 0, 13)
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine")
# A loss above this many times its first value, or not finite, ends a run: it has diverged.
BLOW_UP = 1e3


@dataclass
class Run:
    problem: str
    optimizer: str
    schedule: str
    lr: float
    seed: int
    split: str
    classes: int
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    test_accuracy: float = math.nan
    test_loss: float = math.nan
    label: str = ""


@dataclass
class Problem:
    """Data and a model factory: ``make(rng)`` returns (params, loss_and_grads, evaluate)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    make: Callable[[np.random.Generator], Any]


def numpy_problems(seed: int) -> list[Problem]:
    digits = load_digits_split(seed)
    rng = np.random.default_rng(seed)
    xs, ys = two_spirals(3000, rng)
    xt, yt = two_spirals(1000, rng)

    def mlp(sizes: list[int], activation: str) -> Callable[[np.random.Generator], Any]:
        def make(rng: np.random.Generator) -> Any:
            model = MLP(sizes, rng, activation)

            def evaluate(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
                loss, _ = model.loss_and_grads(x, y)
                return loss, model.accuracy(x, y)

            return model.params, model.loss_and_grads, evaluate

        return make

    return [
        Problem("digits-mlp", digits.x_train, digits.y_train, digits.x_test, digits.y_test, 10,
                mlp([64, 128, 10], "relu")),
        Problem("digits-logreg", digits.x_train / 16, digits.y_train, digits.x_test / 16,
                digits.y_test, 10, mlp([64, 10], "tanh")),
        Problem("spirals-mlp", xs, ys, xt, yt, 2, mlp([2, 64, 64, 2], "tanh")),
    ]  # fmt: skip


def schedule_for(kind: str, lr: float, steps: int) -> Any:
    if kind == "constant":
        return lr
    return lrfast.schedules.CosineAnnealingLR(lr, T_max=steps)


def numpy_optimizer(name: str, params: list[np.ndarray], lr: Any) -> Any:
    if name == "sgd":
        return lrfast.SGD(params, lr=lr)
    if name == "momentum":
        return lrfast.SGD(params, lr=lr, momentum=0.9)
    return lrfast.Adam(params, lr=lr)


def train_numpy(problem: Problem, run: Run, seed: int) -> None:
    rng = np.random.default_rng(seed)
    params, loss_and_grads, evaluate = problem.make(rng)
    steps = EPOCHS * math.ceil(len(problem.x_train) / BATCH)
    opt = numpy_optimizer(run.optimizer, params, schedule_for(run.schedule, run.lr, steps))
    with np.errstate(all="ignore"):
        for _ in range(EPOCHS):
            order = rng.permutation(len(problem.x_train))
            losses = []
            for i in range(0, len(order), BATCH):
                batch = order[i : i + BATCH]
                loss, grads = loss_and_grads(problem.x_train[batch], problem.y_train[batch])
                losses.append(loss)
                if not math.isfinite(loss) or loss > BLOW_UP * run_start(run, losses):
                    break
                opt.step(grads)
            run.step_losses += losses
            run.epoch_losses.append(float(np.mean(losses)))
            if len(losses) < math.ceil(len(order) / BATCH):
                break
        run.test_loss, run.test_accuracy = evaluate(problem.x_test, problem.y_test)


def run_start(run: Run, losses: list[float]) -> float:
    first = run.step_losses[0] if run.step_losses else losses[0]
    return max(abs(first), 1e-12)


def train_torch(run: Run, seed: int, digits: Any) -> None:
    import torch
    from torch import nn

    import lrfast.torch as lt

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10),
    )  # fmt: skip
    x_train = torch.from_numpy(digits.x_train.reshape(-1, 1, 8, 8) / 16)
    y_train = torch.from_numpy(digits.y_train)
    x_test = torch.from_numpy(digits.x_test.reshape(-1, 1, 8, 8) / 16)
    y_test = torch.from_numpy(digits.y_test)
    steps = EPOCHS * math.ceil(len(x_train) / BATCH)
    if run.optimizer == "adam":
        opt: Any = lt.Adam(model.parameters(), lr=run.lr)
    else:
        momentum = 0.9 if run.optimizer == "momentum" else 0.0
        opt = lt.SGD(model.parameters(), lr=run.lr, momentum=momentum)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        if run.schedule == "cosine"
        else None
    )
    criterion = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x_train)))
        losses = []
        for i in range(0, len(order), BATCH):
            batch = order[i : i + BATCH]
            loss = criterion(model(x_train[batch]), y_train[batch])
            value = loss.item()
            losses.append(value)
            if not math.isfinite(value) or value > BLOW_UP * run_start(run, losses):
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
        run.step_losses += losses
        run.epoch_losses.append(float(np.mean(losses)))
        if len(losses) < math.ceil(len(order) / BATCH):
            break
    with torch.no_grad():
        logits = model(x_test)
        run.test_loss = float(criterion(logits, y_test))
        run.test_accuracy = float((logits.argmax(1) == y_test).double().mean())


def label(run: Run, family: list[Run]) -> str:
    """The outcome of a run against the best of its family (the lowest final training loss):

    - ``diverged``: a loss not finite, or above ``BLOW_UP`` times the first (the run stopped);
    - ``no_learning``: the final training loss within 10% of the first epoch's (either way):
      training did not move it;
    - ``good``: test accuracy within 2 points of the best run's and a final training loss
      within 10x of the best's;
    - ``too_low`` / ``too_high``: anything else, by which side of the best rate it sits on.
    """

    def final(r: Run) -> float:
        return r.epoch_losses[-1] if stopped_cleanly(r) else math.inf

    best = min((r for r in family if math.isfinite(final(r))), key=final)
    if not math.isfinite(final(run)):
        return "diverged"
    if abs(final(run) - run.epoch_losses[0]) <= 0.1 * abs(run.epoch_losses[0]):
        return "no_learning"
    if run.test_accuracy >= best.test_accuracy - 0.02 and final(run) <= 10 * final(best):
        return "good"
    return "too_low" if run.lr < best.lr else "too_high"


def stopped_cleanly(run: Run) -> bool:
    return len(run.epoch_losses) == EPOCHS and bool(np.isfinite(run.step_losses).all())


def range_test_numpy(problem: Problem, optimizer: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    params, loss_and_grads, _ = problem.make(rng)
    opt = numpy_optimizer(optimizer, params, 0.0)
    start, end = (1e-7, 10.0) if optimizer == "adam" else (1e-6, 100.0)

    def loss_fn(batch_rng: np.random.Generator) -> Any:
        batch = batch_rng.integers(0, len(problem.x_train), BATCH)
        return loss_and_grads(problem.x_train[batch], problem.y_train[batch])

    with np.errstate(all="ignore"):
        result = lrfast.lr_range_test(
            optimizer=opt, loss_fn=loss_fn, start_lr=start, end_lr=end, num_steps=200, seed=seed
        )
    return {"rates": result.rates.tolist(), "losses": result.losses.tolist()}


def main() -> int:
    if "--relabel" in sys.argv:  # new labelling rules on the recorded runs, nothing retrained
        runs, sweeps = read()
        relabel(runs, sweeps)
        write(runs, sweeps)
        return 0
    started = time.perf_counter()
    runs: list[Run] = []
    sweeps: list[dict[str, Any]] = []
    for seed in (0, 1):
        for problem in numpy_problems(seed):
            split = "tune" if seed == 0 else "held_out"
            for optimizer in OPTIMIZERS:
                rates = ADAM_RATES if optimizer == "adam" else SGD_RATES
                for schedule in SCHEDULES:
                    for lr in rates:
                        run = Run(problem.name, optimizer, schedule, float(lr), seed, split,
                                  problem.classes)  # fmt: skip
                        train_numpy(problem, run, seed)
                        runs.append(run)
                sweep = range_test_numpy(problem, optimizer, seed)
                sweeps.append({"problem": problem.name, "optimizer": optimizer, "seed": seed,
                               "split": split, **sweep})  # fmt: skip
            print(f"{problem.name} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    if "--no-torch" not in sys.argv:
        import torch

        torch.set_num_threads(1)  # tiny convolutions: one thread is fastest
        digits = load_digits_split(0)
        for optimizer in OPTIMIZERS:
            rates = ADAM_RATES if optimizer == "adam" else SGD_RATES
            for schedule in SCHEDULES:
                for lr in rates:
                    run = Run("digits-cnn", optimizer, schedule, float(lr), 0, "held_out", 10)
                    train_torch(run, 0, digits)
                    runs.append(run)
        print(f"digits-cnn: {time.perf_counter() - started:.0f} s", flush=True)
    relabel(runs, sweeps)
    write(runs, sweeps)
    print(f"{len(runs)} runs, {len(sweeps)} sweeps in {time.perf_counter() - started:.0f} s")
    return 0


def relabel(runs: list[Run], sweeps: list[dict[str, Any]]) -> None:
    families: dict[tuple[str, str, str, int], list[Run]] = {}
    for run in runs:
        families.setdefault((run.problem, run.optimizer, run.schedule, run.seed), []).append(run)
    for family in families.values():
        for run in family:
            run.label = label(run, family)
    for sweep in sweeps:
        family = families[(sweep["problem"], sweep["optimizer"], "constant", sweep["seed"])]
        sweep["good_rates"] = [r.lr for r in family if r.label == "good"]


def read() -> tuple[list[Run], list[dict[str, Any]]]:
    """The runs and sweeps :func:`write` wrote."""
    meta = json.loads((HERE / "loss_corpus.json").read_text())
    histories = np.load(HERE / "loss_corpus.npz")
    runs = [
        Run(**record, step_losses=histories[f"step_{i}"].tolist(),
            epoch_losses=histories[f"epoch_{i}"].tolist())
        for i, record in enumerate(meta["runs"])
    ]  # fmt: skip
    return runs, meta["sweeps"]


def write(runs: list[Run], sweeps: list[dict[str, Any]]) -> None:
    """``loss_corpus.json``: one record per run (its metadata, outcome and label) and the sweeps;
    ``loss_corpus.npz``: the histories, ``step_<i>`` and ``epoch_<i>`` for run ``i``."""
    arrays: dict[str, np.ndarray] = {}
    records = []
    for i, run in enumerate(runs):
        record = asdict(run)
        arrays[f"step_{i}"] = np.asarray(record.pop("step_losses"), dtype=np.float32)
        arrays[f"epoch_{i}"] = np.asarray(record.pop("epoch_losses"), dtype=np.float64)
        records.append(record)
    np.savez_compressed(HERE / "loss_corpus.npz", **arrays)
    text = json.dumps({"epochs": EPOCHS, "runs": records, "sweeps": sweeps}, indent=0)
    (HERE / "loss_corpus.json").write_text(text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
