"""Schedules fused into kernels and optimizers; ReduceLROnPlateau; EarlyStopping; plots."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_optimizers import CLASSES, grads_for, make_params

import lrfast
from kernels import DEFAULTS, KERNELS, Kernel
from lrfast import schedules as S


def _arrays(kernel: Kernel, hyper: dict[str, Any], n: int = 33) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    param = rng.standard_normal(n)
    states = [np.zeros(n) for _ in kernel.needs({**DEFAULTS_FULL[kernel.name], **hyper})]
    return [param, *states]


# Every key the `needs` functions read, so that they can be called with DEFAULTS.
DEFAULTS_FULL = {k.name: {"momentum": 0.0, "centered": False, **DEFAULTS[k.name]} for k in KERNELS}


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_kernel_with_schedule_equals_kernel_with_its_rate(kernel: Kernel) -> None:
    schedule = S.Warmup(S.CosineAnnealingLR(0.05, T_max=7), steps=3)
    hyper = dict(DEFAULTS[kernel.name])
    hyper.pop("lr", None)
    with_schedule = _arrays(kernel, hyper)
    with_float = [a.copy() for a in with_schedule]
    rng = np.random.default_rng(1)
    for step in range(1, 12):
        grad = rng.standard_normal(with_float[0].shape)
        kernel.fast(with_schedule[0], grad, *with_schedule[1:], step=step, lr=schedule, **hyper)
        rate = schedule(step - 1)  # update `step` uses the schedule's step - 1
        kernel.fast(with_float[0], grad, *with_float[1:], step=step, lr=rate, **hyper)
        for a, b in zip(with_schedule, with_float):
            assert a.tobytes() == b.tobytes()


def test_lambda_schedule_in_a_kernel_and_its_errors() -> None:
    p, g, m, v = (np.ones(8) for _ in range(4))
    m[:] = 0
    v[:] = 0
    lrfast.adam_step(p, g, m, v, step=1, lr=S.LambdaLR(0.1, lambda t: 0.5))
    assert np.allclose(p, 1 - 0.05)

    def fails(t: int) -> float:
        raise RuntimeError("user code failed")

    before = [a.copy() for a in (p, m, v)]
    with pytest.raises(RuntimeError, match="user code failed"):
        lrfast.adam_step(p, g, m, v, step=2, lr=S.LambdaLR(0.1, fails))
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        lrfast.adam_step(p, g, m, v, step=2, lr=S.LambdaLR(0.1, lambda t: -1.0))
    with pytest.raises(ValueError, match="step must be an integer >= 1"):
        lrfast.adam_step(p, g, m, v, step=0, lr=S.Constant(0.1))
    with pytest.raises(TypeError, match="lr must be a float or an lrfast schedule"):
        lrfast.adam_step(p, g, m, v, step=2, lr="0.1")  # type: ignore[arg-type]
    for a, b in zip((p, m, v), before):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("cls,kwargs", CLASSES, ids=lambda c: getattr(c, "__name__", ""))
def test_optimizer_with_schedule(cls: type[lrfast.Optimizer], kwargs: dict[str, Any]) -> None:
    schedule = S.OneCycleLR(0.02, total_steps=8)
    fixed_kwargs = {k: v for k, v in kwargs.items() if k != "lr"}
    scheduled = make_params(np.float64)
    manual = make_params(np.float64)
    opt = cls(scheduled, lr=schedule, **fixed_kwargs)
    ref = cls(manual, lr=schedule(0), **fixed_kwargs)
    for t in range(8):
        assert opt.lr == schedule(t)
        ref.lr = schedule(t)
        opt.step(grads_for(t, scheduled))
        ref.step(grads_for(t, manual))
        for a, b in zip(scheduled, manual):
            assert a.tobytes() == b.tobytes()
    assert opt.schedule == schedule


def test_optimizer_checkpoint_keeps_the_schedule(tmp_path: Path) -> None:
    schedule = S.Warmup(S.CosineAnnealingWarmRestarts(0.01, 5, 2, decay=0.5), steps=2)
    params = make_params()
    opt = lrfast.Adam(params, lr=schedule)
    for t in range(3):
        opt.step(grads_for(t, params))
    opt.lr_scale = 0.5
    opt.save(tmp_path / "ckpt.npz")
    again = lrfast.Adam([p.copy() for p in params])
    again.load(tmp_path / "ckpt.npz")
    assert again.schedule == schedule
    assert again.lr_scale == 0.5
    assert again.lr == opt.lr == 0.5 * schedule(3)


@pytest.mark.parametrize(
    "cls, name", [(lrfast.SGD, "momentum"), (lrfast.RMSprop, "momentum"), (lrfast.Adam, "betas")]
)
def test_cycle_momentum(cls: type[lrfast.Optimizer], name: str) -> None:
    schedule = S.CyclicLR(0.001, 0.01, step_size_up=3, base_momentum=0.8, max_momentum=0.9)
    extra = {"momentum": 0.9} if name == "momentum" else {}
    cycled = make_params(np.float64)
    manual = make_params(np.float64)
    opt = cls(cycled, lr=schedule, cycle_momentum=True, **extra)
    ref = cls(manual, lr=schedule, **extra)
    for t in range(10):
        momentum = schedule.momentum(t)
        assert momentum is not None
        if name == "betas":
            ref.param_groups[0]["betas"] = (momentum, 0.999)
        else:
            ref.param_groups[0]["momentum"] = momentum
        opt.step(grads_for(t, cycled))
        ref.step(grads_for(t, manual))
        for a, b in zip(cycled, manual):
            assert a.tobytes() == b.tobytes()


def test_cycle_momentum_survives_plateau_scaling() -> None:
    schedule = S.OneCycleLR(0.01, total_steps=20)
    params = make_params(np.float64)
    opt = lrfast.Adam(params, lr=schedule, cycle_momentum=True)
    opt.lr_scale = 0.5  # as ReduceLROnPlateau would set it
    opt.step(grads_for(0, params))
    assert opt.lr == pytest.approx(0.5 * schedule(1))


def test_cycle_momentum_needs_a_cycling_schedule() -> None:
    params = make_params()
    with pytest.raises(ValueError, match="CyclicLR or OneCycleLR"):
        lrfast.SGD(params, lr=0.1, momentum=0.9, cycle_momentum=True)
    with pytest.raises(ValueError, match="no momentum"):
        lrfast.Adagrad(params, lr=S.OneCycleLR(0.1, 10), cycle_momentum=True)
    with pytest.raises(ValueError, match="momentum > 0"):
        lrfast.SGD(params, lr=S.OneCycleLR(0.1, 10), cycle_momentum=True)


def test_bad_schedule_is_refused_by_the_optimizer() -> None:
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        lrfast.SGD(make_params(), lr=S.LambdaLR(1.0, lambda t: -1.0))
    opt = lrfast.SGD(make_params(), lr=0.1)
    with pytest.raises(ValueError, match="lr must be finite"):
        opt.lr = S.LambdaLR(1.0, lambda t: math.nan)
    assert opt.lr == 0.1


# -- ReduceLROnPlateau ------------------------------------------------------------------------
def _plateau_reference(
    metrics: list[float], lr: float, mode: str, factor: float, patience: int,
    threshold: float, threshold_mode: str, cooldown: int, min_lr: float, eps: float,
) -> list[float]:  # fmt: skip
    """PyTorch's ReduceLROnPlateau, transcribed from docs/semantics.md."""
    best = math.inf if mode == "min" else -math.inf
    bad = cool = 0
    out = []
    for x in metrics:
        if mode == "min" and threshold_mode == "rel":
            better = x < best * (1 - threshold)
        elif mode == "min":
            better = x < best - threshold
        elif threshold_mode == "rel":
            better = x > best * (1 + threshold)
        else:
            better = x > best + threshold
        if better:
            best, bad = x, 0
        else:
            bad += 1
        if cool > 0:
            cool -= 1
            bad = 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > eps:
                lr = new
            cool, bad = cooldown, 0
        out.append(lr)
    return out


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("cooldown", [0, 2])
def test_plateau_matches_pytorch_semantics(mode: str, threshold_mode: str, cooldown: int) -> None:
    rng = np.random.default_rng(3)
    sign = 1 if mode == "min" else -1
    metrics = [sign * v for v in (np.exp(-np.arange(60) / 10) + 0.02 * rng.random(60))]
    metrics[30:35] = [math.nan] * 5
    kwargs: dict[str, Any] = dict(
        mode=mode, factor=0.5, patience=3, threshold=1e-2, threshold_mode=threshold_mode,
        cooldown=cooldown, min_lr=1e-3, eps=1e-8,
    )  # fmt: skip
    expected = _plateau_reference(metrics, 0.1, **kwargs)
    functional = lrfast.ReduceLROnPlateau(0.1, **kwargs)
    assert [functional.step(m) for m in metrics] == expected
    opt = lrfast.SGD(make_params(), lr=0.1)
    with_optimizer = lrfast.ReduceLROnPlateau(opt, **kwargs)
    got = []
    for m in metrics:
        with_optimizer.step(m)
        got.append(opt.lr)
    assert got == pytest.approx(expected, rel=1e-12)
    assert min(expected) < 0.1  # the sequence does trigger reductions


def test_plateau_after_warmup_and_on_a_cosine() -> None:
    schedule = S.Warmup(S.CosineAnnealingLR(0.1, T_max=100), steps=5)
    params = make_params()
    opt = lrfast.SGD(params, lr=schedule)
    plateau = lrfast.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    for t in range(5):  # warmup: loss improving
        opt.step(grads_for(t, params))
        plateau.step(1.0 / (t + 1))
    assert opt.lr_scale == 1.0
    for t in range(5, 8):  # plateau
        opt.step(grads_for(t, params))
        plateau.step(1.0)
    assert opt.lr_scale == pytest.approx(0.5)
    # The scaled cosine keeps its shape, fused in the kernel: the next update uses 0.5·cos(t).
    assert opt.lr == pytest.approx(0.5 * schedule(opt.step_count))
    before = [p.copy() for p in params]
    check = [p.copy() for p in params]
    grads = grads_for(99, params)
    rate = 0.5 * schedule(opt.step_count)
    opt.step(grads)
    lrfast.sgd_step(check, grads, step=1, lr=rate)
    for a, b, c in zip(params, check, before):
        assert np.allclose(a, b, rtol=1e-6) and not np.array_equal(a, c)


def test_plateau_can_raise_the_rate() -> None:
    plateau = lrfast.ReduceLROnPlateau(0.01, factor=2.0, patience=0, max_lr=0.03)
    rates = [plateau.step(1.0) for _ in range(4)]
    assert rates == [0.01, 0.02, 0.03, 0.03]
    with pytest.raises(ValueError, match="max_lr"):
        lrfast.ReduceLROnPlateau(0.01, factor=2.0)


def test_plateau_validation_and_state() -> None:
    for kwargs, name in [
        ({"mode": "low"}, "mode"),
        ({"threshold_mode": "x"}, "threshold_mode"),
        ({"factor": 1.0}, "factor"),
        ({"factor": -0.5}, "factor"),
        ({"patience": -1}, "patience"),
        ({"cooldown": 1.5}, "cooldown"),
        ({"min_lr": -1.0}, "min_lr"),
    ]:
        with pytest.raises(ValueError, match=name):
            lrfast.ReduceLROnPlateau(0.1, **kwargs)
    with pytest.raises(TypeError, match="target"):
        lrfast.ReduceLROnPlateau("0.1")  # type: ignore[arg-type]
    a = lrfast.ReduceLROnPlateau(0.1, patience=1)
    for m in (3.0, 2.0, 2.0):
        a.step(m)
    b = lrfast.ReduceLROnPlateau(0.1, patience=1)
    b.load_state_dict(a.state_dict())
    assert [a.step(2.0), a.step(2.0)] == [b.step(2.0), b.step(2.0)]


# -- EarlyStopping ----------------------------------------------------------------------------
def test_early_stopping_restores_the_best_parameters() -> None:
    params = [np.zeros(4), np.zeros(2)]
    stopper = lrfast.EarlyStopping(patience=2, min_delta=0.01, restore_best=True, params=params)
    losses = [1.0, 0.5, 0.3, 0.295, 0.4, 0.5]
    stops = []
    for i, loss in enumerate(losses):
        for p in params:
            p[:] = i
        stops.append(stopper.step(loss))
        if stops[-1]:
            break
    assert stops == [False, False, False, False, True]
    assert stopper.best == 0.3 and stopper.best_step == 3
    assert all((p == 2).all() for p in params)  # restored to the state at the best loss
    clone = lrfast.EarlyStopping(patience=2, restore_best=True, params=[np.ones(4), np.ones(2)])
    clone.load_state_dict(stopper.state_dict())
    clone.restore()
    assert all((p == 2).all() for p in clone.params)


def test_early_stopping_modes_and_nan() -> None:
    stopper = lrfast.EarlyStopping(patience=1, mode="max")
    assert [stopper.step(x) for x in (0.5, 0.6, 0.6)] == [False, False, True]
    stopper = lrfast.EarlyStopping(patience=2)
    assert [stopper.step(x) for x in (1.0, math.nan, math.nan)] == [False, False, True]
    with pytest.raises(ValueError, match="params"):
        lrfast.EarlyStopping(restore_best=True)
    with pytest.raises(RuntimeError):
        lrfast.EarlyStopping(params=[np.zeros(1)]).restore()
    opt = lrfast.SGD(make_params(), lr=0.1)
    assert lrfast.EarlyStopping(params=opt).params == opt.params


# -- plots ------------------------------------------------------------------------------------
def test_plot_schedules(tmp_path: Path) -> None:
    path = tmp_path / "schedules.png"
    fig = lrfast.plot.schedules(
        {"cosine": S.CosineAnnealingLR(0.1, 1000), "one-cycle": S.OneCycleLR(0.1, 1000)},
        steps=1000,
        path=path,
        log=True,
        title="two schedules",
    )
    assert path.stat().st_size > 1000
    assert len(fig.axes[0].lines) == 2
    fig = lrfast.plot.schedules(S.StepLR(0.1, 10), steps=np.arange(0, 100, 5))
    assert fig.axes[0].lines[0].get_xdata().tolist() == list(range(0, 100, 5))
    with pytest.raises(ValueError, match="no schedules"):
        lrfast.plot.schedules({})
    with pytest.raises(TypeError, match="not an lrfast schedule"):
        lrfast.plot.schedules({"x": 0.1})  # type: ignore[dict-item]


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'\.\[plot\]" in a clone'):
        lrfast.plot.schedules(S.Constant(0.1))
