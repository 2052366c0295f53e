"""The optimizer classes: lazy state, step counting, checkpoints and grad checking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrfast
import lrfast.reference as ref

CLASSES: list[tuple[type[lrfast.Optimizer], dict[str, Any]]] = [
    (lrfast.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (lrfast.Adagrad, {"lr": 0.1, "initial_accumulator_value": 0.1}),
    (lrfast.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    (lrfast.Adadelta, {}),
    (lrfast.Adam, {"lr": 0.01, "amsgrad": True}),
    (lrfast.AdamW, {"lr": 0.01}),
    (lrfast.Adamax, {}),
    (lrfast.NAdam, {"decoupled_weight_decay": True, "weight_decay": 0.01}),
    (lrfast.RAdam, {}),
]


def make_params(dtype: Any = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(s).astype(dtype) for s in [(3, 4), (5,), ()]]


def grads_for(t: int, params: list[np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + t)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


@pytest.mark.parametrize("cls,kwargs", CLASSES, ids=lambda c: getattr(c, "__name__", ""))
def test_resume_from_checkpoint_is_bit_identical(
    cls: type[lrfast.Optimizer], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    straight = make_params()
    opt = cls(straight, **kwargs)
    for t in range(10):
        opt.step(grads_for(t, straight))

    resumed = make_params()
    first = cls(resumed, **kwargs)
    for t in range(4):
        first.step(grads_for(t, resumed))
    first.save(tmp_path / "ckpt.npz")
    in_memory = first.state_dict()
    saved_params = [p.copy() for p in resumed]

    # A new optimizer over copies of the parameters, from the file...
    from_file = [p.copy() for p in saved_params]
    second = cls(from_file, **kwargs)
    second.load(tmp_path / "ckpt.npz")
    # ...and one from the in-memory state_dict.
    from_dict = [p.copy() for p in saved_params]
    third = cls(from_dict, **kwargs)
    third.load_state_dict(in_memory)
    assert second.step_count == third.step_count == 4
    for t in range(4, 10):
        second.step(grads_for(t, from_file))
        third.step(grads_for(t, from_dict))
    for a, b, c in zip(straight, from_file, from_dict):
        assert a.tobytes() == b.tobytes() == c.tobytes()


@pytest.mark.parametrize("cls,kwargs", CLASSES, ids=lambda c: getattr(c, "__name__", ""))
def test_state_dict_round_trip_is_exact_and_a_copy(
    cls: type[lrfast.Optimizer], kwargs: dict[str, Any]
) -> None:
    params = make_params(np.float64)
    opt = cls(params, **kwargs)
    opt.step(grads_for(0, params))
    sd = opt.state_dict()
    assert sd["step"] == 1
    (group,) = sd["param_groups"]
    assert {k: group[k] for k in opt.defaults} == opt.defaults
    assert group["params"] == list(range(len(params))) and group["step"] == 1
    opt.step(grads_for(1, params))  # must not change the saved copy
    other = cls(make_params(np.float64), **kwargs)
    other.load_state_dict(sd)
    assert other.step_count == 1
    assert other.state_dict()["scalars"] == sd["scalars"]
    for s_other, s_saved in zip(other.state, sd["state"]):
        assert s_other.keys() == s_saved.keys()
        for name in s_saved:
            assert s_other[name].tobytes() == s_saved[name].tobytes()
            assert s_other[name] is not s_saved[name]


def test_adam_class_matches_reference_over_steps() -> None:
    params = make_params(np.float64)
    ref_params = [p.copy() for p in params]
    opt = lrfast.Adam(params, lr=0.01, weight_decay=0.1)
    states = [(np.zeros_like(p), np.zeros_like(p)) for p in ref_params]
    for t in range(1, 6):
        grads = grads_for(t, params)
        opt.step(grads)
        for p, g, (m, v) in zip(ref_params, grads, states):
            ref.adam_step(p, g, m, v, step=t, lr=0.01, weight_decay=0.1)
    for p, r in zip(params, ref_params):
        np.testing.assert_array_equal(p, r)


def test_single_array_params_and_lr_property() -> None:
    p = np.ones(4)
    opt = lrfast.SGD(p, lr=0.5)
    opt.step(np.ones(4))
    np.testing.assert_array_equal(p, 0.5)
    opt.lr = 0.25
    assert opt.lr == 0.25
    opt.step([np.ones(4)])
    np.testing.assert_array_equal(p, 0.25)
    assert "SGD(<1 params>" in repr(opt)


@pytest.mark.parametrize(
    "grads,exc,needle",
    [
        (lambda ps: ps[:-1], ValueError, "expected 3 gradients"),
        (lambda ps: [np.zeros_like(p) for p in ps] + [np.zeros(1)], ValueError, "expected 3"),
        (lambda ps: [np.zeros(p.shape, np.float64) for p in ps], TypeError, "grads[0]"),
        (
            lambda ps: [np.zeros_like(ps[0]), np.zeros(4, np.float32), np.zeros_like(ps[2])],
            ValueError,
            "grads[1]",
        ),
        (lambda ps: [np.zeros_like(ps[0]), np.zeros_like(ps[1]), 1.0], TypeError, "grads[2]"),
        (
            lambda ps: [
                np.zeros_like(ps[0]),
                np.zeros((5, 2), np.float32)[:, 0],
                np.zeros_like(ps[2]),
            ],
            ValueError,
            "grads[1]",
        ),
    ],
)
def test_mismatched_grads_change_nothing(grads: Any, exc: type[Exception], needle: str) -> None:
    params = make_params()
    opt = lrfast.Adam(params, lr=0.1)
    opt.step(grads_for(0, params))
    before = [p.copy() for p in params]
    state_before = opt.state_dict()
    with pytest.raises(exc, match=needle.replace("[", r"\[").replace("]", r"\]")):
        opt.step(grads(params))
    for p, b in zip(params, before):
        assert p.tobytes() == b.tobytes()
    assert opt.step_count == 1
    for s, sb in zip(opt.state, state_before["state"]):
        for name in s:
            assert s[name].tobytes() == sb[name].tobytes()


def test_bad_hyperparameters_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="lr"):
        lrfast.Adam(np.zeros(3), lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        lrfast.Adam(np.zeros(3), betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="nesterov"):
        lrfast.SGD(np.zeros(3), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        lrfast.Adagrad(np.zeros(3), initial_accumulator_value=-1.0)
    with pytest.raises(TypeError, match="momentum"):
        lrfast.Adam(np.zeros(3), momentum=0.9)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        lrfast.Adam([np.zeros(3, np.int32)])


def test_load_state_dict_refuses_a_mismatch() -> None:
    params = make_params()
    opt = lrfast.Adam(params)
    opt.step(grads_for(0, params))
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="Adam, not SGD"):
        lrfast.SGD(make_params(), lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"groups of \[3\] parameters .* hold \[2\]"):
        lrfast.Adam(make_params()[:2]).load_state_dict(sd)
    wrong = [np.zeros(7, np.float32), *make_params()[1:]]
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]\['exp_avg'\] has shape"):
        lrfast.Adam(wrong).load_state_dict(sd)


def test_max_grad_norm_clips_before_the_update() -> None:
    params = make_params(np.float64)
    clipped = [p.copy() for p in params]
    grads = grads_for(0, params)
    manual_grads = [g.copy() for g in grads]
    opt = lrfast.SGD(params, lr=0.1, max_grad_norm=0.5)
    opt.step(grads)
    norm = lrfast.clip_grad_norm(manual_grads, 0.5)
    lrfast.SGD(clipped, lr=0.1).step(manual_grads)
    assert opt.last_grad_norm == norm > 0.5
    for a, b in zip(params, clipped):
        assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="max_grad_norm"):
        lrfast.Adam(np.zeros(3), max_grad_norm=-1.0)


def test_clipping_options_are_checked_at_construction_naming_them() -> None:
    for kwargs, error, name in [
        ({"max_grad_norm": "1"}, TypeError, "max_grad_norm"),
        ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm"),
        ({"max_grad_norm": 1.0, "grad_norm_type": -1.0}, ValueError, "grad_norm_type"),
        ({"max_grad_norm": 1.0, "grad_norm_type": "2"}, TypeError, "grad_norm_type"),
    ]:
        with pytest.raises(error, match=name):
            lrfast.SGD(make_params(), lr=0.1, **kwargs)
