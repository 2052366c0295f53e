"""sensitivity(strategy="tpe"): Optuna's TPE over the rate and a space, pruning, a study that two
processes share through one SQLite file, a search killed midway and resumed, and the checks."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrfast

optuna = pytest.importorskip("optuna", reason="the search extra: pip install '.[search]'")
optuna.logging.set_verbosity(optuna.logging.WARNING)

EIGENVALUES = np.geomspace(0.5, 8.0, 20)
BEST_LR = 2 / (0.5 + 8.0)  # the rate that minimizes the quadratic's loss after 30 steps
WORKER = Path(__file__).parent / "search" / "worker.py"


def quadratic(lr: float, steps: int = 30, momentum: float = 0.0) -> list[float]:
    """The losses of SGD (heavy ball with ``momentum``) on the tests' quadratic, per step."""
    theta, velocity, losses = np.ones(20), np.zeros(20), []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            velocity = momentum * velocity + EIGENVALUES * theta
            theta = theta - lr * velocity
            losses.append(float(0.5 * np.sum(EIGENVALUES * theta**2)))
    return losses


def train(lr: float) -> float:
    return quadratic(lr)[-1]


def test_tpe_finds_the_bottom_of_the_u_reproducibly() -> None:
    result = lrfast.sensitivity(train, strategy="tpe", low=1e-3, high=10.0, num=20, seed=0)
    assert len(result.lrs) == 20 and np.all(np.diff(result.lrs) >= 0)
    assert abs(math.log10(result.best_lr / BEST_LR)) < 0.15, result.best_lr
    # TPE draws near the bottom once it has seen it: more of its rates lie within a factor of
    # 2 of the best than a log-uniform draw would put there (2 of 20 on average).
    near = np.sum(np.abs(np.log10(result.lrs / BEST_LR)) < math.log10(2))
    assert near >= 6, result.lrs
    again = lrfast.sensitivity(train, strategy="tpe", low=1e-3, high=10.0, num=20, seed=0)
    assert np.array_equal(result.lrs, again.lrs)
    other = lrfast.sensitivity(train, strategy="tpe", low=1e-3, high=10.0, num=20, seed=1)
    assert not np.array_equal(result.lrs, other.lrs)
    assert "<- best" in result.table()


def test_tpe_and_random_search_the_space_with_the_rate() -> None:
    seen: list[tuple[float, float, int, str]] = []

    def train_fn(lr: float, momentum: float, steps: int, schedule: str) -> float:
        assert isinstance(steps, int) and isinstance(schedule, str)
        seen.append((lr, momentum, steps, schedule))
        return quadratic(lr * (0.5 if schedule == "half" else 1.0), steps, momentum)[-1]

    space: Any = {"momentum": (0.0, 0.9), "steps": (5, 40), "schedule": ["full", "half"]}
    for strategy in ("tpe", "random"):
        seen.clear()
        result = lrfast.sensitivity(
            train_fn, strategy=strategy, low=1e-3, high=1.0, num=15, space=space, seed=0
        )
        assert len(seen) == 15
        for lr, momentum, steps, schedule in seen:
            assert 1e-3 <= lr <= 1.0 and 0.0 <= momentum <= 0.9 and 5 <= steps <= 40
            assert schedule in ("full", "half")
        assert {s for *_, s in seen} == {"full", "half"}
        best = result.best_params
        assert set(best) == {"lr", "momentum", "steps", "schedule"}
        i = result.best_index
        assert (
            train_fn(best["lr"], best["momentum"], best["steps"], best["schedule"])
            == (result.final[i])
        )
        header = result.table().splitlines()[0]
        assert all(name in header for name in ("momentum", "steps", "schedule"))


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_pruner_stops_trainings_that_do_worse_than_the_others(pruner: str) -> None:
    stopped: list[float] = []

    def train_fn(lr: float, report: Any) -> float:
        losses = quadratic(lr, steps=30)
        for loss in losses[::3]:
            try:
                report(loss)
            except lrfast.Pruned:
                stopped.append(lr)
                raise
        return losses[-1]

    result = lrfast.sensitivity(
        train_fn, strategy="tpe", low=1e-3, high=10.0, num=25, seed=0, pruner=pruner
    )
    pruned = [i for i, step in enumerate(result.pruned) if step is not None]
    assert pruned and len(pruned) == len(stopped)
    assert sorted(result.lrs[pruned].tolist()) == sorted(stopped)
    for i in pruned:
        assert math.isnan(result.final[i])
        assert result.histories[i] is not None and len(result.histories[i]) == result.pruned[i] + 1
    assert f"pruned at step {result.pruned[pruned[0]]}" in result.table()
    assert abs(math.log10(result.best_lr / BEST_LR)) < 0.3


def test_two_processes_share_one_study_in_one_sqlite_file(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'lr.db'}"
    command = [sys.executable, str(WORKER), storage, "shared", "16"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert 16 <= len(trials) <= 17
    assert len({t.number for t in trials}) == len(trials)
    pids = {t.user_attrs["metric"] for t in trials}
    assert len(pids) == 2  # both processes trained
    # Each process returns the whole study as it stood when it finished: the later one, all.
    rates = [sorted(float(x) for x in out.split()) for out in outputs]
    assert max(len(r) for r in rates) == len(trials)
    assert sorted(t.params["lr"] for t in trials) == max(rates, key=len)


def test_a_search_killed_midway_resumes_where_it_stopped(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'lr.db'}"
    command = [sys.executable, str(WORKER), storage, "resumed", "10"]
    killed = subprocess.run([*command, "--die-after", "4"], capture_output=True, timeout=300)
    assert killed.returncode == -9  # SIGKILL, in its fifth training
    study = optuna.load_study(study_name="resumed", storage=storage)
    states = optuna.trial.TrialState
    before = study.get_trials(states=(states.COMPLETE,))
    assert len(before) == 4
    assert len(study.get_trials(states=(states.RUNNING,))) == 1  # the one it died in
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rates = [float(x) for x in resumed.stdout.split()]
    assert len(rates) == 10  # six more trainings, not ten
    assert {t.params["lr"] for t in before} <= set(rates)
    after = study.get_trials(states=(states.COMPLETE,))
    assert len(after) == 10 and len({t.user_attrs["metric"] for t in after}) == 2


def test_a_failing_or_diverging_training_is_a_row_and_the_search_goes_on() -> None:
    def train_fn(lr: float) -> float:
        if lr > 3.0:
            raise RuntimeError("out of memory at this rate")
        return quadratic(lr)[-1]

    result = lrfast.sensitivity(train_fn, strategy="tpe", low=1e-3, high=10.0, num=20, seed=0)
    failed = [i for i, e in enumerate(result.errors) if e is not None]
    assert failed and all(result.lrs[i] > 3.0 for i in failed)
    assert all(result.errors[i] == "RuntimeError: out of memory at this rate" for i in failed)
    assert np.all(np.isnan(result.final[failed]))
    diverged = (result.lrs > 2 / 8.0 * 1.2) & (result.lrs <= 3.0)
    assert np.all(result.final[diverged] > 1.0)
    with pytest.raises(TypeError, match=r"train_fn\(.*\) must be a real number"):
        lrfast.sensitivity(lambda lr: "low", strategy="tpe", num=2)


def test_the_search_options_are_checked_by_name() -> None:
    def with_report(lr: float, report: Any) -> float:
        return 1.0

    cases: list[tuple[dict[str, Any], str]] = [
        ({"strategy": "tpe", "lrs": [0.1]}, "lrs and strategy='tpe' exclude each other"),
        ({"strategy": "tpe", "refine": 1}, "strategy='tpe' takes no refine or processes"),
        ({"strategy": "tpe", "processes": 2}, "strategy='tpe' takes no refine or processes"),
        ({"strategy": "tpe", "storage": "sqlite:///x.db"}, "storage needs a study_name"),
        ({"strategy": "tpe", "pruner": "median"}, "a pruner needs train_fn to take a report"),
        ({"strategy": "tpe", "num": 0}, "num must be an integer >= 1"),
        ({"pruner": "median"}, "pruner is for strategy='tpe'"),
        ({"storage": "sqlite:///x.db"}, "storage is for strategy='tpe'"),
        ({"space": {"momentum": (0.0, 0.9)}}, "space needs strategy='random' or 'tpe'"),
        ({"strategy": "random", "space": {"lr": (0.0, 0.9)}}, r"space\['lr'\]: names are"),
        ({"strategy": "random", "space": {"m": (0.9, 0.1)}}, r"space\['m'\] needs finite low"),
        ({"strategy": "random", "space": {"m": (0.0, 1.0, "ln")}}, "may only be 'log'"),
        ({"strategy": "random", "space": {"m": (0.0, 1.0, "log")}}, "a log range needs low > 0"),
        ({"strategy": "random", "space": {"m": []}}, "an empty list of choices"),
        ({"strategy": "random", "space": {"m": 0.5}}, r"must be \(low, high\)"),
    ]
    for options, words in cases:
        with pytest.raises(ValueError, match=words):
            lrfast.sensitivity(lambda lr, **kw: 1.0, **options)
    with pytest.raises(ValueError, match="pruner must be 'median', 'hyperband'"):
        lrfast.sensitivity(with_report, strategy="tpe", pruner="bogus", num=1)


def test_without_optuna_tpe_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"strategy='tpe' needs Optuna: .*\.\[search\]"):
        lrfast.sensitivity(train, strategy="tpe", num=2)
    assert len(lrfast.sensitivity(train, strategy="random", num=2).lrs) == 2
