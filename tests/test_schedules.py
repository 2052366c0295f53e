"""Schedules: Rust against the plain-Python reference and PyTorch's own vectors; values;
validation; evaluate(); composition."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from schedule_reference import REFERENCE

import lrfast
from lrfast import schedules as S

rates = st.floats(1e-6, 10.0)
factors = st.floats(0.0, 1.0)
counts = st.integers(1, 1000)
steps = st.integers(0, 5000) | st.integers(0, 2**62)


def _increasing(n_min: int = 0) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, 10_000), min_size=n_min, max_size=6, unique=True).map(sorted)


# One strategy of constructor arguments per schedule class in the reference.
PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "Constant": st.fixed_dictionaries({"lr": rates}),
    "StepLR": st.fixed_dictionaries({"base_lr": rates, "step_size": counts, "gamma": factors}),
    "MultiStepLR": st.fixed_dictionaries(
        {"base_lr": rates, "milestones": _increasing(), "gamma": factors}
    ),
    "ExponentialLR": st.fixed_dictionaries({"base_lr": rates, "gamma": st.floats(0.5, 1.0)}),
    "InverseTimeLR": st.fixed_dictionaries({"base_lr": rates, "gamma": st.floats(0.0, 10.0)}),
    "LinearLR": st.fixed_dictionaries(
        {"base_lr": rates, "start_factor": factors, "end_factor": factors, "total_iters": counts}
    ),
    "ConstantLR": st.fixed_dictionaries(
        {"base_lr": rates, "factor": factors, "total_iters": st.integers(0, 1000)}
    ),
    "PolynomialLR": st.fixed_dictionaries(
        {"base_lr": rates, "total_iters": counts, "power": st.floats(0.0, 4.0)}
    ),
    "CosineAnnealingLR": st.fixed_dictionaries(
        {"base_lr": rates, "T_max": counts, "eta_min": st.floats(0.0, 1e-3)}
    ),
    "CosineAnnealingWarmRestarts": st.fixed_dictionaries(
        {
            "base_lr": rates,
            "T_0": counts,
            "T_mult": st.integers(1, 4),
            "eta_min": st.floats(0.0, 1e-3),
            "decay": st.floats(0.1, 1.0),
        }
    ),
    "CyclicLR": st.fixed_dictionaries(
        {
            "base_lr": st.floats(0.0, 1.0),
            "max_lr": st.floats(1.0, 5.0),
            "step_size_up": counts,
            "step_size_down": st.none() | counts,
            "mode": st.sampled_from(["triangular", "triangular2", "exp_range"]),
            "gamma": st.floats(0.9, 1.0),
        }
    ),
    "OneCycleLR": st.fixed_dictionaries(
        {
            "max_lr": rates,
            "total_steps": st.integers(1, 5000),
            "pct_start": st.floats(0.0, 1.0),
            "anneal_strategy": st.sampled_from(["cos", "linear"]),
            "div_factor": st.floats(1.0, 100.0),
            "final_div_factor": st.floats(1.0, 1e5),
            "three_phase": st.booleans(),
        }
    ),
    "ExponentialDecay": st.fixed_dictionaries(
        {
            "initial_learning_rate": rates,
            "decay_steps": counts,
            "decay_rate": st.floats(0.1, 1.0),
            "staircase": st.booleans(),
        }
    ),
    "InverseTimeDecay": st.fixed_dictionaries(
        {
            "initial_learning_rate": rates,
            "decay_steps": counts,
            "decay_rate": st.floats(0.0, 10.0),
            "staircase": st.booleans(),
        }
    ),
    "PolynomialDecay": st.fixed_dictionaries(
        {
            "initial_learning_rate": rates,
            "decay_steps": counts,
            "end_learning_rate": st.floats(0.0, 1e-3),
            "power": st.floats(0.0, 4.0),
            "cycle": st.booleans(),
        }
    ),
    "PiecewiseConstantDecay": _increasing(0).flatmap(
        lambda b: st.fixed_dictionaries(
            {
                "boundaries": st.just(b),
                "values": st.lists(rates, min_size=len(b) + 1, max_size=len(b) + 1),
            }
        )
    ),
    "CosineDecay": st.fixed_dictionaries(
        {
            "initial_learning_rate": rates,
            "decay_steps": counts,
            "alpha": factors,
            "warmup_target": st.none() | rates,
            "warmup_steps": st.integers(0, 1000),
        }
    ),
    "CosineDecayRestarts": st.fixed_dictionaries(
        {
            "initial_learning_rate": rates,
            "first_decay_steps": counts,
            "t_mul": st.sampled_from([1.0, 2.0]) | st.floats(1.0, 3.0),
            "m_mul": st.floats(0.1, 1.0),
            "alpha": factors,
        }
    ),
}


def _magnitude(params: dict[str, Any]) -> float:
    """The largest rate-like number among the parameters: a difference of rates (e + (s - e)...)
    can cancel to zero, and its rounding is relative to the rates, not to the result."""
    numbers = [abs(v) for v in params.values() if isinstance(v, float)]
    numbers += [abs(x) for v in params.values() if isinstance(v, list) for x in v]
    return max(numbers, default=0.0)


def _close(actual: float, expected: float, magnitude: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return abs(actual - expected) <= 1e-12 * max(abs(expected), magnitude) + 1e-300


def test_every_reference_schedule_has_a_strategy() -> None:
    assert set(PARAMS) == set(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@given(data=st.data())
def test_schedule_matches_reference(name: str, data: st.DataObject) -> None:
    params = data.draw(PARAMS[name], label="params")
    schedule = getattr(S, name)(**params)
    full = {**schedule.params, **params}
    ts = data.draw(st.lists(steps, min_size=1, max_size=8), label="steps")
    for t in ts:
        expected = REFERENCE[name](full, t)
        actual = schedule(t)
        assert _close(actual, expected, _magnitude(full)), (name, full, t, actual, expected)
    # One call over an array gives the same bits as one call per step.
    batch = schedule.evaluate(np.array(ts, dtype=np.int64))
    assert [v.hex() for v in batch.tolist()] == [schedule(t).hex() for t in ts]


DATA = Path(__file__).parent / "data" / "torch_schedule_vectors.json"


def _from_torch_case(case: dict[str, Any]) -> S.Schedule:
    kwargs = dict(case["kwargs"])
    kwargs.pop("cycle_momentum", None)
    name = case["scheduler"]
    if name in ("CyclicLR", "OneCycleLR"):
        return getattr(S, name)(**kwargs)
    return getattr(S, name)(case["base_lr"], **kwargs)


@pytest.mark.parametrize(
    "case", json.loads(DATA.read_text())["cases"], ids=lambda c: str(c["scheduler"])
)
def test_matches_pytorch_vectors(case: dict[str, Any]) -> None:
    schedule = _from_torch_case(case)
    expected = np.array(case["lrs"])
    actual = schedule.evaluate(np.arange(len(expected)))
    # PyTorch computes most of these recursively (lr_t from lr_{t-1}), lrfast in closed form.
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


def test_known_values() -> None:
    assert S.StepLR(1.0, 3, 0.5).evaluate(np.arange(7)).tolist() == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert S.MultiStepLR(1.0, [2, 4], 0.1)(3) == pytest.approx(0.1)
    assert S.LinearLR(1.0, 0.5, 1.0, 4).evaluate(np.arange(6)).tolist() == [
        0.5,
        0.625,
        0.75,
        0.875,
        1.0,
        1.0,
    ]
    assert S.ConstantLR(1.0, 0.25, 2).evaluate(np.arange(3)).tolist() == [0.25, 0.25, 1.0]
    assert S.CosineAnnealingLR(1.0, 10)(5) == pytest.approx(0.5)
    assert S.CosineAnnealingLR(1.0, 10)(10) == pytest.approx(0.0, abs=1e-16)
    sgdr = S.CosineAnnealingWarmRestarts(1.0, T_0=2, T_mult=2, decay=0.5)
    # periods [0, 2), [2, 6), [6, 14): peaks 1, 0.5, 0.25 at the restarts
    assert [sgdr(t) for t in (0, 2, 6)] == [1.0, 0.5, 0.25]
    assert S.InverseTimeLR(1.0, 1.0)(3) == 0.25
    assert S.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]).evaluate(
        np.array([0, 10, 11, 20, 21])
    ).tolist() == [1.0, 1.0, 0.5, 0.5, 0.1]
    one = S.OneCycleLR(1.0, total_steps=100, pct_start=0.25)
    assert one(0) == pytest.approx(1.0 / 25)
    assert one(24) == pytest.approx(1.0)
    assert one(99) == pytest.approx(1.0 / 25 / 1e4)
    assert one(10**6) == one(99)  # held past the end
    assert one.momentum(24) == pytest.approx(0.85)
    assert one.momentum(0) == pytest.approx(0.95)
    cyc = S.CyclicLR(0.1, 1.0, step_size_up=4, mode="triangular2")
    assert [cyc(t) for t in (0, 4, 8, 12)] == pytest.approx([0.1, 1.0, 0.1, 0.55])
    assert cyc.momentum(4) == pytest.approx(0.8)
    assert S.StepLR(1.0, 2).momentum(0) is None


def test_very_large_steps() -> None:
    t = 2**63 + 12345
    assert S.StepLR(1.0, 10, 0.5)(t) == 0.0
    assert S.CosineAnnealingWarmRestarts(1.0, 1, 2)(2**64 - 1) == 1.0
    assert 0 <= S.CyclicLR(0.1, 1.0)(t) <= 1.0
    assert S.Constant(0.3)(2**64 - 1) == 0.3
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        S.Constant(0.3)(2**64)


# -- composition ------------------------------------------------------------------------------
def test_warmup() -> None:
    inner = S.CosineAnnealingLR(0.1, T_max=100)
    w = S.Warmup(inner, steps=10, start_factor=0.1)
    expected = [0.1 * (0.1 + 0.9 * t / 10) for t in range(10)] + [inner(t) for t in range(50)]
    np.testing.assert_allclose(w.evaluate(np.arange(60)), expected, rtol=1e-15)


def test_sequential_restarts_each_schedule() -> None:
    seq = S.SequentialLR([S.Constant(0.5), S.ExponentialLR(1.0, 0.5), S.StepLR(0.1, 1)], [3, 5])
    assert seq.evaluate(np.arange(8)).tolist() == pytest.approx(
        [0.5, 0.5, 0.5, 1.0, 0.5, 0.1, 0.01, 0.001]
    )


def test_product_and_scaling() -> None:
    a, b = S.CosineAnnealingLR(0.1, 50), S.ExponentialLR(1.0, 0.99)
    both = a * b
    assert isinstance(both, S.Product)
    for t in (0, 7, 49, 1000):
        assert both(t) == a(t) * b(t)
    assert (0.5 * a)(7) == 0.5 * a(7)
    assert (a * 2)(7) == a(7) * 2
    with pytest.raises(TypeError):
        a * "x"  # type: ignore[operator]


def test_lambda_is_an_escape_hatch() -> None:
    sched = S.LambdaLR(0.1, lambda t: 1 / (1 + t))
    assert sched(3) == 0.1 / 4
    assert sched.evaluate(np.arange(3)).tolist() == [0.1, 0.05, 0.1 / 3]
    warm = S.Warmup(sched, steps=2)
    assert warm(2) == 0.1

    def broken(t: int) -> float:
        raise KeyError("from the user's function")

    with pytest.raises(KeyError, match="from the user's function"):
        S.LambdaLR(1.0, broken)(0)
    with pytest.raises(TypeError):
        S.LambdaLR(1.0, lambda t: "x")(0)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="callable"):
        S.LambdaLR(1.0, 3)  # type: ignore[arg-type]


# -- values -----------------------------------------------------------------------------------
def _factor(t: int) -> float:
    return 0.5**t


EXAMPLES = [
    S.Constant(0.1),
    S.StepLR(0.1, 30),
    S.MultiStepLR(0.1, [30, 80], gamma=0.5),
    S.ExponentialLR(0.1, 0.95),
    S.InverseTimeLR(0.1, 0.01),
    S.LinearLR(0.1, 1.0, 0.1, 100),
    S.ConstantLR(0.1),
    S.PolynomialLR(0.1, 100, 2.0),
    S.CosineAnnealingLR(0.1, 100, 1e-4),
    S.CosineAnnealingWarmRestarts(0.1, 10, 2, decay=0.8),
    S.CyclicLR(0.001, 0.1, 200, mode="exp_range", gamma=0.999),
    S.OneCycleLR(0.1, 1000, three_phase=True, anneal_strategy="linear"),
    S.ExponentialDecay(0.1, 100, 0.9, staircase=True),
    S.InverseTimeDecay(0.1, 1, 0.5),
    S.PolynomialDecay(0.1, 100, cycle=True),
    S.PiecewiseConstantDecay([100, 200], [0.1, 0.01, 0.001]),
    S.CosineDecay(0.0, 1000, warmup_target=0.1, warmup_steps=100),
    S.CosineDecayRestarts(0.1, 100),
    S.Warmup(S.CosineAnnealingLR(0.1, 100), 10),
    S.SequentialLR([S.Constant(0.01), S.StepLR(0.1, 10)], [5]),
    S.CosineAnnealingLR(0.1, 100) * S.ExponentialLR(1.0, 0.99),
    S.LambdaLR(0.1, _factor),
]


def test_examples_cover_every_class() -> None:
    covered = {type(s).__name__ for s in EXAMPLES}
    assert covered == {name for name in S.__all__ if name not in ("Schedule", "from_dict")}


@pytest.mark.parametrize("schedule", EXAMPLES, ids=repr)
def test_schedules_are_values(schedule: S.Schedule) -> None:
    ts = np.array([0, 1, 5, 99, 100, 101, 12345])
    again = eval(repr(schedule), {**vars(S), "_factor": _factor})
    assert again == schedule and hash(again) == hash(schedule)
    for copy in (
        S.from_dict(schedule.to_dict()),
        pickle.loads(pickle.dumps(schedule)),
    ):
        assert copy == schedule
        assert type(copy) is type(schedule)
        assert copy.evaluate(ts).tolist() == schedule.evaluate(ts).tolist()
    if not isinstance(schedule, S.LambdaLR):
        described = json.loads(json.dumps(schedule.to_dict()))
        assert S.from_dict(described) == schedule


def test_inequality() -> None:
    assert S.StepLR(0.1, 30) != S.StepLR(0.1, 31)
    assert S.StepLR(0.1, 30) != S.Constant(0.1)
    assert S.Warmup(S.Constant(0.1), 5) != S.Warmup(S.Constant(0.2), 5)
    with pytest.raises(ValueError, match="unknown schedule type"):
        S.from_dict({"type": "Nope"})


# -- validation -------------------------------------------------------------------------------
INVALID = [
    (lambda: S.StepLR(0.1, 0), "step_size"),
    (lambda: S.StepLR(0.1, -3), "step_size"),
    (lambda: S.StepLR(0.1, 2.5), "step_size"),  # type: ignore[arg-type]
    (lambda: S.StepLR(0.1, 10, gamma=-0.1), "gamma"),
    (lambda: S.StepLR(-0.1, 10), "base_lr"),
    (lambda: S.StepLR(math.nan, 10), "base_lr"),
    (lambda: S.MultiStepLR(0.1, [5, 3]), "milestones"),
    (lambda: S.ExponentialLR(0.1, math.inf), "gamma"),
    (lambda: S.LinearLR(0.1, start_factor=1.5), "start_factor"),
    (lambda: S.LinearLR(0.1, total_iters=0), "total_iters"),
    (lambda: S.ConstantLR(0.1, factor=2.0), "factor"),
    (lambda: S.PolynomialLR(0.1, total_iters=0), "total_iters"),
    (lambda: S.CosineAnnealingLR(0.1, 0), "T_max"),
    (lambda: S.CosineAnnealingLR(0.1, 10, eta_min=-1.0), "eta_min"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, 0), "T_0"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, 5, T_mult=0), "T_mult"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, 5, decay=-1.0), "decay"),
    (lambda: S.CyclicLR(0.1, 0.01), "max_lr"),
    (lambda: S.CyclicLR(0.01, 0.1, step_size_up=0), "step_size_up"),
    (lambda: S.CyclicLR(0.01, 0.1, mode="sine"), "mode"),
    (lambda: S.CyclicLR(0.01, 0.1, base_momentum=0.95, max_momentum=0.9), "base_momentum"),
    (lambda: S.OneCycleLR(0.1, 0), "total_steps"),
    (lambda: S.OneCycleLR(0.1, 10, pct_start=1.5), "pct_start"),
    (lambda: S.OneCycleLR(0.1, 10, anneal_strategy="cosine"), "anneal_strategy"),
    (lambda: S.OneCycleLR(0.1, 10, div_factor=0.0), "div_factor"),
    (lambda: S.ExponentialDecay(0.1, 0, 0.9), "decay_steps"),
    (lambda: S.PolynomialDecay(0.1, 10, power=-1.0), "power"),
    (lambda: S.PiecewiseConstantDecay([1, 2], [0.1]), "values"),
    (lambda: S.CosineDecay(0.1, 10, alpha=2.0), "alpha"),
    (lambda: S.CosineDecayRestarts(0.1, 10, t_mul=0.5), "t_mul"),
    (lambda: S.Warmup(S.Constant(0.1), 5, start_factor=2.0), "start_factor"),
    (lambda: S.Warmup(0.1, 5), "schedule"),  # type: ignore[arg-type]
    (lambda: S.SequentialLR([S.Constant(0.1)], [5]), "milestones"),
    (lambda: S.SequentialLR([S.Constant(0.1), S.Constant(0.2)], [5, 6]), "milestones"),
    (lambda: S.Product([]), "at least one"),
]


@pytest.mark.parametrize("make, name", INVALID, ids=[n for _, n in INVALID])
def test_invalid_parameters_are_named(make: Any, name: str) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_bad_steps() -> None:
    sched = S.StepLR(0.1, 10)
    for bad in (-1, 1.5, True, "3", None):
        with pytest.raises(ValueError, match="step must be an integer >= 0"):
            sched(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps must be >= 0"):
        sched.evaluate([3, -1])
    with pytest.raises(TypeError, match="steps must be integers"):
        sched.evaluate([0.5])
    assert sched(np.int64(10)) == pytest.approx(0.01)


def test_evaluate_shapes_and_threads() -> None:
    sched = S.OneCycleLR(0.1, 10**6)
    steps = np.arange(10**6, dtype=np.int64)
    with lrfast.threads(1):
        one = sched.evaluate(steps)
    two = sched.evaluate(steps)  # long enough to be spread over threads
    assert one.tobytes() == two.tobytes()
    picked = np.array([[0, 5], [999_999, 123_456]])
    assert sched.evaluate(picked).shape == (2, 2)
    assert sched.evaluate(picked)[1, 1] == sched(123_456)
    assert sched.evaluate([]).shape == (0,)


def test_subclasses_keep_their_parents_kind() -> None:
    class MyCosine(S.CosineAnnealingLR):
        """A user's subclass: evaluated in Rust as its parent."""

    mine, parent = MyCosine(0.1, T_max=100), S.CosineAnnealingLR(0.1, T_max=100)
    assert MyCosine.kind == "CosineAnnealingLR"
    assert [mine(t) for t in range(0, 120, 7)] == [parent(t) for t in range(0, 120, 7)]
    again = S.from_dict(mine.to_dict())
    assert type(again) is MyCosine and again(50) == parent(50)
