"""Parameter groups, as torch.optim's: each group its own hyperparameters, schedule and step
count, in ``param_groups``, ``state_dict`` and checkpoints; ``add_param_group``; checks naming
the group."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrfast
from lrfast import schedules as S

# What each optimizer's second group overrides: values that change the update and, for some,
# which state arrays it needs.
OVERRIDES: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.5, "nesterov": True, "weight_decay": 0.1},
    "Adagrad": {"lr_decay": 0.01, "initial_accumulator_value": 0.5},
    "RMSprop": {"centered": True, "momentum": 0.3},
    "Adadelta": {"rho": 0.5, "weight_decay": 0.01},
    "Adam": {"amsgrad": True, "betas": (0.8, 0.99)},
    "AdamW": {"weight_decay": 0.1, "eps": 1e-6},
    "Adamax": {"betas": [0.5, 0.9]},
    "NAdam": {"momentum_decay": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1},
    "RAdam": {"betas": (0.5, 0.6), "maximize": True},
}
CLASSES = [getattr(lrfast, s.torch_name) for s in lrfast.optimizers()]


def arrays(seed: int, shapes: list[tuple[int, ...]], dtype: Any = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def same_bits(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_groups_update_as_separate_optimizers_would(cls: type[lrfast.Optimizer]) -> None:
    weights, biases = arrays(0, [(4, 3), (7,)]), arrays(1, [(3,), ()], np.float64)
    alone_w, alone_b = [p.copy() for p in weights], [p.copy() for p in biases]
    schedule = S.StepLR(0.05, step_size=2, gamma=0.5)
    overrides = OVERRIDES[cls.__name__]
    grouped = cls([{"params": weights, "lr": schedule}, {"params": biases, **overrides}], lr=0.01)
    first, second = cls(alone_w, lr=schedule), cls(alone_b, lr=0.01, **overrides)
    for t in range(6):
        gw, gb = arrays(10 + t, [(4, 3), (7,)]), arrays(20 + t, [(3,), ()], np.float64)
        grouped.step(gw + gb)
        first.step(gw)
        second.step(gb)
    assert same_bits(weights, alone_w) and same_bits(biases, alone_b)
    assert [len(g["params"]) for g in grouped.param_groups] == [2, 2]
    assert grouped.params == [*weights, *biases]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_groups_round_trip_bit_exactly_through_save_and_load(
    cls: type[lrfast.Optimizer], tmp_path: Path
) -> None:
    def build(params: list[np.ndarray]) -> lrfast.Optimizer:
        groups = [
            {"params": params[:2], "lr": S.CosineAnnealingLR(0.02, T_max=7)},
            {"params": params[2:], **OVERRIDES[cls.__name__]},
        ]
        return cls(groups, lr=0.003)

    shapes = [(5, 2), (3,), (4,), ()]
    straight = arrays(2, shapes)
    opt = build(straight)
    for t in range(4):
        opt.step(arrays(30 + t, shapes))
    opt.save(tmp_path / "ckpt.npz")
    saved = opt.state_dict()
    resumed = [p.copy() for p in straight]  # the parameters: the user's own checkpoint
    for t in range(4, 9):
        opt.step(arrays(30 + t, shapes))
    fresh = build(resumed)
    fresh.load(tmp_path / "ckpt.npz")
    assert fresh.state_dict()["param_groups"] == saved["param_groups"]
    for t in range(4, 9):
        fresh.step(arrays(30 + t, shapes))
    assert same_bits(resumed, straight)
    assert fresh.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for a, b in zip(fresh.state, opt.state):
        assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_a_group_added_later_starts_at_step_one() -> None:
    old, new = arrays(3, [(6,)]), arrays(4, [(2, 2)])
    alone = [p.copy() for p in new]
    opt = lrfast.Adam(old, lr=0.01)
    for t in range(5):
        opt.step(arrays(40 + t, [(6,)]))
    opt.add_param_group({"params": new, "lr": 0.1, "amsgrad": True})
    assert opt.param_groups[1]["betas"] == opt.defaults["betas"]
    later = lrfast.Adam(alone, lr=0.1, amsgrad=True)
    for t in range(3):
        g_new = arrays(50 + t, [(2, 2)])
        opt.step(arrays(45 + t, [(6,)]) + g_new)
        later.step(g_new)
    assert same_bits(new, alone)
    assert [g["step"] for g in opt.state_dict()["param_groups"]] == [8, 3]
    assert opt.step_count == 8


def test_a_scheduler_may_write_param_groups_each_step() -> None:
    params, manual = arrays(5, [(8,)]), arrays(5, [(8,)])
    opt = lrfast.SGD([{"params": params}], lr=1.0, momentum=0.9)
    rates = [0.1 * 0.5**t for t in range(5)]
    for t, rate in enumerate(rates):
        opt.param_groups[0]["lr"] = rate
        opt.step(arrays(60 + t, [(8,)]))
    reference = lrfast.SGD(manual, lr=S.ExponentialLR(0.1, gamma=0.5), momentum=0.9)
    for t in range(5):
        reference.step(arrays(60 + t, [(8,)]))
    assert same_bits(params, manual)


def test_a_bad_value_written_into_a_group_fails_the_next_step_unapplied() -> None:
    a, b = np.ones(3, np.float32), np.ones(2, np.float32)
    opt = lrfast.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    before = opt.state_dict()
    saved = a.copy(), b.copy()
    opt.param_groups[1]["eps"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[1\]: eps must be"):
        opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    assert same_bits([a, b], list(saved)) and opt.step_count == 1
    for key, value in before["state"][0].items():
        assert opt.state[0][key].tobytes() == value.tobytes()
    opt.param_groups[1]["eps"] = 1e-8
    opt.param_groups[0]["params"].append(np.ones(1, np.float32))
    with pytest.raises(ValueError, match="add_param_group"):
        opt.step([np.ones(3, np.float32), np.ones(2, np.float32), np.ones(1, np.float32)])


def test_group_faults_are_refused_naming_the_group() -> None:
    a, b = np.ones(3), np.ones(2)
    cases: list[tuple[Any, type[Exception], str]] = [
        ([{"params": a}, {"params": b, "lr": -1.0}], ValueError, r"params\[1\]: lr must be"),
        ([{"params": a}, {"params": b, "lrr": 0.1}], ValueError, r"params\[1\] has unknown keys"),
        ([{"params": a}, {"lr": 0.1}], ValueError, r"params\[1\] has no 'params'"),
        ([{"params": a}, b], TypeError, "all arrays or all parameter groups"),
        ([{"params": a}, {"params": [b, a]}], ValueError, r"params\[0\]\['params'\]\[0\] and"),
        ([{"params": [a, a[1:]]}], ValueError, "share memory"),
        ([{"params": [a[::2]]}], ValueError, r"params\[0\]\['params'\]\[0\] must be C-contig"),
        ([{"params": ["x"]}], TypeError, r"params\[0\]\['params'\]\[0\] must be a numpy"),
        ({"params": a}, TypeError, "list of parameter groups"),
        ([{"params": a, "initial_accumulator_value": -1.0}], ValueError, "initial_accumulator"),
    ]
    for params, error, message in cases:
        with pytest.raises(error, match=message):
            lrfast.Adagrad(params, lr=0.1)
    assert (a == 1).all() and (b == 1).all()


def test_add_param_group_checks_everything_first() -> None:
    a, b = np.ones(3), np.ones(2)
    opt = lrfast.SGD([a], lr=0.1)
    for group, message in [
        ({"params": [b, a]}, r"param_groups\[0\]\['params'\]\[0\] and param_group\['params'\]"),
        ({"params": b, "momentum": -1.0}, r"param_group: momentum must be"),
        ({"params": b, "bogus": 1}, "unknown keys"),
    ]:
        with pytest.raises(ValueError, match=message):
            opt.add_param_group(group)
        assert len(opt.param_groups) == 1 and len(opt.state) == 1
    with pytest.raises(TypeError, match="must be a dict"):
        opt.add_param_group([b])  # type: ignore[arg-type]


def test_setting_lr_sets_every_group_or_none() -> None:
    opt = lrfast.SGD([{"params": np.ones(2), "lr": 0.5}, {"params": np.ones(3)}], lr=0.1)
    opt.lr = 0.25
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr must be"):
        opt.lr = -1.0
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


def test_load_refuses_groups_of_another_layout() -> None:
    source = lrfast.Adam([{"params": [np.ones(2)]}, {"params": [np.ones(3), np.ones(1)]}])
    source.step([np.ones(2), np.ones(3), np.ones(1)])
    target = lrfast.Adam([np.ones(2), np.ones(3), np.ones(1)])
    with pytest.raises(ValueError, match=r"groups of \[1, 2\] parameters .* hold \[3\]"):
        target.load_state_dict(source.state_dict())
    assert target.state_dict()["param_groups"][0]["step"] == 0


@given(
    sizes=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    rates=st.lists(st.floats(0.0, 0.5), min_size=4, max_size=4),
    decays=st.lists(st.sampled_from([0.0, 0.1]), min_size=4, max_size=4),
)
def test_any_split_into_groups_equals_one_optimizer_per_group(
    sizes: list[int], rates: list[float], decays: list[float]
) -> None:
    shapes = [(i + 1,) for i in range(sum(sizes))]
    grouped_params, alone_params = arrays(7, shapes), arrays(7, shapes)
    groups, alone, start = [], [], 0
    for g, n in enumerate(sizes):
        chunk = slice(start, start + n)
        groups.append({"params": grouped_params[chunk], "lr": rates[g], "weight_decay": decays[g]})
        alone.append(lrfast.NAdam(alone_params[chunk], lr=rates[g], weight_decay=decays[g]))
        start += n
    grouped = lrfast.NAdam(groups)
    for t in range(3):
        grads = arrays(70 + t, shapes)
        grouped.step(grads)
        start = 0
        for opt, n in zip(alone, sizes):
            opt.step(grads[start : start + n])
            start += n
    assert same_bits(grouped_params, alone_params)


def test_the_hypergradient_optimizers_have_real_signatures_and_one_group() -> None:
    signature = inspect.signature(lrfast.SGDHD)
    assert list(signature.parameters)[:3] == ["params", "lr", "hypergrad_lr"]
    assert signature.parameters["lr_max"].default == float("inf")
    assert inspect.signature(lrfast.AdamHD).parameters["betas"].default == (0.9, 0.999)
    opt = lrfast.AdamHD([np.ones(3)], 0.01)
    assert opt.lr == 0.01
    with pytest.raises(TypeError, match="one rate"):
        opt.add_param_group({"params": [np.ones(2)]})
    with pytest.raises(TypeError):
        lrfast.SGDHD([np.ones(3)], lrr=0.1)  # type: ignore[call-arg]


def test_the_one_call_step_falls_back_to_the_named_checks() -> None:
    """After the first step a step is one kernel call; whatever it refuses is still refused
    with the caller's names, nothing changed."""
    params = [np.ones(3, np.float32), np.ones(2, np.float32)]
    opt = lrfast.Adam(params, lr=0.1)
    opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    before = [p.copy() for p in params]
    cases: list[tuple[Any, str]] = [
        ([np.ones(3, np.float32), np.ones(2, np.float64)], r"grads\[1\] has dtype"),
        ([np.ones(3, np.float32)], "expected 2 gradients"),
        ([np.ones(3, np.float32), params[1]], r"grads\[1\] and params\[1\] share memory"),
        ([np.ones(3, np.float32), opt.state[1]["exp_avg"]], r"grads\[1\] and state\[1\]"),
    ]
    for grads, message in cases:
        with pytest.raises((TypeError, ValueError), match=message):
            opt.step(grads)
        assert same_bits(params, before) and opt.step_count == 1
    del opt.param_groups[0]["eps"]
    with pytest.raises(ValueError, match=r"param_groups\[0\]: a parameter group has no 'eps'"):
        opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    assert same_bits(params, before)
    opt.param_groups[0]["eps"] = 1e-8
    opt.step(iter([np.ones(3, np.float32), np.ones(2, np.float32)]))
    assert opt.step_count == 2


def test_the_hypergradient_optimizers_check_every_value_when_built() -> None:
    for cls, kwargs, error, name in [
        (lrfast.SGDHD, {"lr": "x"}, TypeError, "lr"),
        (lrfast.SGDHD, {"momentum": -1.0}, ValueError, "momentum"),
        (lrfast.SGDHD, {"maximize": 1}, TypeError, "maximize"),
        (lrfast.AdamHD, {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\]"),
        (lrfast.AdamHD, {"eps": math.nan}, ValueError, "eps"),
        (lrfast.AdamHD, {"lr_max": 0.0, "lr_min": 0.1}, ValueError, "lr_max"),
    ]:
        with pytest.raises(error, match=name):
            cls([np.ones(3)], **kwargs)
