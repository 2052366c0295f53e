"""lrfast.torch against torch.optim itself: every optimizer and option, several steps and groups,
state dicts both ways, schedulers, mixed precision, the checks, and a real training run."""

from __future__ import annotations

import copy
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="the torch extra: pip install '.[test]'")
import lrfast.torch as lt  # noqa: E402
from lrfast import schedules  # noqa: E402

# float32 results agree with torch.optim's to this many units in the last place (of each
# tensor's largest value, or of 1), over the steps and options the property test draws: the
# kernels and torch round the same formulas in a different order (torch's lerp and addcdiv), and
# a momentum buffer sums those differences over up to 1/(1 - momentum) steps. Measured worst over
# 2,000 drawn cases: 16 (RMSprop's momentum buffer).
FLOAT32_ULPS = 32
# The largest errors seen (the test summary prints them).
WORST = {"float64 relative": 0.0, "float32 ULPs": 0.0}
FLOAT64_RELATIVE = 1e-10

# Per optimizer: the options torch offers, as hypothesis strategies.
_BOOL = st.booleans()
_WD = st.sampled_from([0.0, 1e-2, 0.1])
OPTIONS = {
    "SGD": dict(
        lr=st.sampled_from([0.01, 0.1]),
        momentum=st.sampled_from([0.0, 0.9]),
        dampening=st.sampled_from([0.0, 0.3]),
        weight_decay=_WD,
        nesterov=_BOOL,
        maximize=_BOOL,
    ),
    "Adagrad": dict(
        lr=st.sampled_from([0.01, 0.1]),
        lr_decay=st.sampled_from([0.0, 0.01]),
        weight_decay=_WD,
        initial_accumulator_value=st.sampled_from([0.0, 0.1]),
        eps=st.sampled_from([1e-10, 1e-6]),
        maximize=_BOOL,
    ),
    "RMSprop": dict(
        lr=st.sampled_from([0.001, 0.01]),
        alpha=st.sampled_from([0.9, 0.99]),
        weight_decay=_WD,
        momentum=st.sampled_from([0.0, 0.9]),
        centered=_BOOL,
        maximize=_BOOL,
    ),
    "Adadelta": dict(
        lr=st.sampled_from([0.1, 1.0]),
        rho=st.sampled_from([0.9, 0.95]),
        weight_decay=_WD,
        maximize=_BOOL,
    ),
    "Adam": dict(
        lr=st.sampled_from([1e-3, 1e-2]),
        betas=st.sampled_from([(0.9, 0.999), (0.8, 0.99)]),
        weight_decay=_WD,
        amsgrad=_BOOL,
        maximize=_BOOL,
        decoupled_weight_decay=_BOOL,
    ),
    "AdamW": dict(
        lr=st.sampled_from([1e-3, 1e-2]),
        betas=st.sampled_from([(0.9, 0.999), (0.8, 0.99)]),
        weight_decay=_WD,
        amsgrad=_BOOL,
        maximize=_BOOL,
    ),
    "Adamax": dict(
        lr=st.sampled_from([2e-3, 1e-2]),
        betas=st.sampled_from([(0.9, 0.999), (0.8, 0.99)]),
        weight_decay=_WD,
        maximize=_BOOL,
    ),
    "NAdam": dict(
        lr=st.sampled_from([2e-3, 1e-2]),
        betas=st.sampled_from([(0.9, 0.999), (0.8, 0.99)]),
        weight_decay=_WD,
        momentum_decay=st.sampled_from([4e-3, 0.0]),
        decoupled_weight_decay=_BOOL,
        maximize=_BOOL,
    ),
    "RAdam": dict(
        lr=st.sampled_from([1e-3, 1e-2]),
        betas=st.sampled_from([(0.9, 0.999), (0.8, 0.99)]),
        weight_decay=_WD,
        decoupled_weight_decay=_BOOL,
        maximize=_BOOL,
    ),
}
NAMES = sorted(OPTIONS)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    assert ours.dtype == theirs.dtype, what
    if ours.dtype == torch.float64:
        scale = theirs.abs().clamp_min(1e-3)
        worst = ((ours - theirs).abs() / scale).max().item() if ours.numel() else 0.0
        WORST["float64 relative"] = max(WORST["float64 relative"], worst)
        assert worst <= FLOAT64_RELATIVE, f"{what}: relative error {worst:.3g}"
    else:
        a, b = ours.detach().double(), theirs.detach().double()
        # In units of the spacing at the larger of the tensor's largest value and 1, the size of
        # the test's parameters and gradients (a value that cancelled to near zero, as a moment
        # can, carries the rounding of its inputs).
        scale = float(np.spacing(np.float32(max(b.abs().max().item() if b.numel() else 0, 1.0))))
        worst = (a - b).abs().max().item() / scale if a.numel() else 0.0
        WORST["float32 ULPs"] = max(WORST["float32 ULPs"], worst)
        assert worst <= FLOAT32_ULPS, f"{what}: {worst:.1f} ULPs"


def twin_params(shapes: list[tuple[int, ...]], dtype: torch.dtype, seed: int):
    generator = torch.Generator().manual_seed(seed)
    base = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    return [b.clone().requires_grad_() for b in base], [b.clone().requires_grad_() for b in base]


def set_grads(a: list[torch.Tensor], b: list[torch.Tensor], generator: torch.Generator) -> None:
    for x, y in zip(a, b):
        g = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x.grad = g.clone()
        y.grad = g.clone()


def compare_state(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer) -> None:
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert set(a["state"]) == set(b["state"])
    for index, theirs_state in b["state"].items():
        ours_state = a["state"][index]
        extra = set(ours_state) - set(theirs_state)
        assert extra <= {"step"}, extra  # lrfast's SGD counts steps, torch's does not
        for key, value in theirs_state.items():
            if key in ("step", "mu_product"):
                assert ours_state[key].dtype == value.dtype, key
                assert ours_state[key].shape == value.shape, key
                assert_close(ours_state[key].double(), value.double(), key)
            else:
                assert_close(ours_state[key], value, f"state[{index}][{key!r}]")


@st.composite
def configurations(draw):  # type: ignore[no-untyped-def]
    name = draw(st.sampled_from(NAMES))
    options = {k: draw(v) for k, v in OPTIONS[name].items()}
    if name == "SGD" and options["nesterov"] and (options["momentum"] == 0 or options["dampening"]):
        options["nesterov"] = False  # torch refuses it: Nesterov needs momentum, no dampening
    groups = draw(st.integers(1, 3))
    shapes = [
        tuple(draw(st.lists(st.integers(1, 9), min_size=0, max_size=3)))
        for _ in range(draw(st.integers(groups, 5)))
    ]
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    steps = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    return name, options, groups, shapes, dtype, steps, seed


@given(configurations())
def test_matches_torch_optim(configuration) -> None:  # type: ignore[no-untyped-def]
    """Every optimizer and option torch offers, float32 and float64, 1-3 groups (the later ones
    with their own lr and weight decay), several steps: parameters and every state tensor."""
    name, options, n_groups, shapes, dtype, steps, seed = configuration
    ours_params, theirs_params = twin_params(shapes, dtype, seed)

    def groups(params: list[torch.Tensor]) -> list[dict]:
        split = np.array_split(np.arange(len(params)), n_groups)
        return [
            {"params": [params[i] for i in part], **({"lr": options["lr"] * 0.5} if g else {})}
            for g, part in enumerate(split)
        ]

    theirs = getattr(torch.optim, name)(groups(theirs_params), **options)
    ours = getattr(lt, name)(groups(ours_params), **options)
    generator = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        set_grads(ours_params, theirs_params, generator)
        theirs.step()
        ours.step()
    for i, (a, b) in enumerate(zip(ours_params, theirs_params)):
        assert_close(a, b, f"{name} {options} param {i}")
    compare_state(ours, theirs)


def test_defaults_and_signatures_are_torchs() -> None:
    import inspect

    from lrfast import specs

    every = {s.torch_name for s in specs.optimizers()}
    assert set(NAMES) == every
    assert set(lt.__all__) == every | {"Optimizer", "SGDHD", "AdamHD"}

    for name in NAMES:
        ours, theirs = getattr(lt, name), getattr(torch.optim, name)
        signature = inspect.signature(ours)
        ours_only = ["master_weights", "state_bits", "min_8bit_size"]
        assert list(signature.parameters)[:-3] == list(inspect.signature(theirs).parameters)
        assert list(signature.parameters)[-3:] == ours_only
        p = torch.zeros(2, requires_grad=True)
        assert ours([p]).defaults == theirs([p]).defaults
        assert issubclass(ours, torch.optim.Optimizer)
        assert not issubclass(ours, theirs)  # DeepSpeed rebuilds subclasses of the originals


def test_foreach_and_fused_are_accepted_and_ignored() -> None:
    a, b = twin_params([(4, 3)], torch.float32, 0)
    theirs = torch.optim.AdamW(a, lr=0.01)
    ours = lt.AdamW(b, lr=0.01, foreach=True, fused=True)
    set_grads(a, b, torch.Generator().manual_seed(1))
    theirs.step()
    ours.step()
    assert_close(b[0], a[0], "fused=True")


def run(optimizer_a, optimizer_b, a, b, steps, generator, schedulers=()):  # type: ignore[no-untyped-def]
    for _ in range(steps):
        set_grads(a, b, generator)
        optimizer_a.step()
        optimizer_b.step()
        for scheduler in schedulers:
            scheduler.step()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_interchange_both_ways(name: str) -> None:
    """Mid-training, with a scheduler: a torch.optim checkpoint loads into lrfast.torch and an
    lrfast.torch checkpoint into torch.optim, and training continues as if it never stopped."""
    options = {"lr": 0.01}
    if name in ("SGD", "RMSprop"):
        options["momentum"] = 0.9
    generator = torch.Generator().manual_seed(7)
    reference, ours = twin_params([(6, 5), (5,)], torch.float64, 3)
    ref_opt = getattr(torch.optim, name)(reference, **options)
    our_opt = getattr(lt, name)(ours, **options)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=2, gamma=0.5)
    our_sched = torch.optim.lr_scheduler.StepLR(our_opt, step_size=2, gamma=0.5)
    run(ref_opt, our_opt, reference, ours, 3, generator, (ref_sched, our_sched))

    # torch -> lrfast: a fresh lrfast optimizer on copies of the torch run's parameters.
    moved = [p.detach().clone().requires_grad_() for p in reference]
    loaded = getattr(lt, name)(moved, **options)
    loaded.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    loaded_sched = torch.optim.lr_scheduler.StepLR(loaded, step_size=2, gamma=0.5)
    loaded_sched.load_state_dict(ref_sched.state_dict())
    # lrfast -> torch: a fresh torch optimizer on copies of the lrfast run's parameters.
    back = [p.detach().clone().requires_grad_() for p in ours]
    back_opt = getattr(torch.optim, name)(back, **options)
    back_opt.load_state_dict(copy.deepcopy(our_opt.state_dict()))
    back_sched = torch.optim.lr_scheduler.StepLR(back_opt, step_size=2, gamma=0.5)
    back_sched.load_state_dict(our_sched.state_dict())

    for _ in range(4):
        g = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in reference]
        for params in (reference, moved, ours, back):
            for p, grad in zip(params, g):
                p.grad = grad.clone()
        for opt, sched in (
            (ref_opt, ref_sched),
            (loaded, loaded_sched),
            (our_opt, our_sched),
            (back_opt, back_sched),
        ):
            opt.step()
            sched.step()
    for r, m, o, k in zip(reference, moved, ours, back):
        assert_close(m, r, "torch state loaded into lrfast")
        assert_close(k, o, "lrfast state loaded into torch")
        assert_close(o, r, "lrfast vs torch")


SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.3),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5]),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 8),
    "CosineAnnealingWarmRestarts": lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        o, 3
    ),
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=4),
    "PolynomialLR": lambda o: torch.optim.lr_scheduler.PolynomialLR(o, 6, power=2.0),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(o, 1e-3, 1e-2, step_size_up=3),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 1e-2, total_steps=12),
    "SequentialLR": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=3),
            torch.optim.lr_scheduler.ExponentialLR(o, 0.8),
        ],
        milestones=[3],
    ),
}


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_every_torch_scheduler(name: str, scheduler: str) -> None:
    """torch's schedulers write param_groups[i]['lr'] (CyclicLR and OneCycleLR also cycle SGD's
    momentum and Adam's betas): the lrfast optimizer follows them as torch.optim does."""
    options = {"lr": 0.01, **({"momentum": 0.9} if name == "SGD" else {})}
    a, b = twin_params([(7, 3), (3,)], torch.float64, 11)
    theirs = getattr(torch.optim, name)(a, **options)
    ours = getattr(lt, name)(b, **options)
    schedulers = (SCHEDULERS[scheduler](theirs), SCHEDULERS[scheduler](ours))
    run(theirs, ours, a, b, 12, torch.Generator().manual_seed(2), schedulers)
    for x, y in zip(b, a):
        assert_close(x, y, scheduler)
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]


def test_reduce_lr_on_plateau() -> None:
    a, b = twin_params([(5,)], torch.float64, 4)
    theirs, ours = torch.optim.Adam(a, lr=0.1), lt.Adam(b, lr=0.1)
    s_theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, patience=1)
    s_ours = torch.optim.lr_scheduler.ReduceLROnPlateau(ours, patience=1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        set_grads(a, b, generator)
        theirs.step()
        ours.step()
        s_theirs.step(1.0)
        s_ours.step(1.0)
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"] < 0.1
    assert_close(b[0], a[0], "ReduceLROnPlateau")


def test_lrfast_schedule_as_lr() -> None:
    """An lrfast schedule given as lr is evaluated at each step, as torch's LambdaLR with the
    same rates."""
    schedule = schedules.Warmup(
        schedules.CosineAnnealingLR(0.01, T_max=10), steps=3, start_factor=0.1
    )
    a, b = twin_params([(4, 4)], torch.float64, 5)
    theirs = torch.optim.Adam(a, lr=1.0)
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(theirs, lambda t: schedule(t))
    ours = lt.Adam(b, lr=schedule)
    run(theirs, ours, a, b, 10, torch.Generator().manual_seed(3), (lambda_lr,))
    assert_close(b[0], a[0], "schedule as lr")


def test_closure_hooks_zero_grad_and_skipped_params() -> None:
    a, b = twin_params([(3, 3), (3,)], torch.float64, 6)
    x = torch.randn(5, 3, dtype=torch.float64)

    def closure_for(params, optimizer):  # type: ignore[no-untyped-def]
        def closure():  # type: ignore[no-untyped-def]
            optimizer.zero_grad()
            loss = ((x @ params[0] + params[1]) ** 2).sum()
            loss.backward()
            return loss

        return closure

    theirs, ours = torch.optim.RMSprop(a, lr=0.01), lt.RMSprop(b, lr=0.01)
    calls = []
    ours.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    ours.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    for _ in range(3):
        loss_theirs = theirs.step(closure_for(a, theirs))
        loss_ours = ours.step(closure_for(b, ours))
        assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-12)
    assert calls == ["pre", "post"] * 3
    # A parameter without a gradient is skipped, and its step count stays, as in torch.
    ours.zero_grad()
    theirs.zero_grad()
    a[1].grad = torch.ones_like(a[1])
    b[1].grad = torch.ones_like(b[1])
    theirs.step()
    ours.step()
    assert ours.state[b[0]]["step"].item() == theirs.state[a[0]]["step"].item() == 3
    assert ours.state[b[1]]["step"].item() == 4
    for p, q in zip(b, a):
        assert_close(p, q, "skipped parameter")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("master_weights", [False, True])
def test_16_bit_params_keep_float32_state(dtype: torch.dtype, master_weights: bool) -> None:
    """16-bit parameters get float32 state (and a float32 master copy when asked), matching a
    float32 torch.optim run on the master copy; the state stays float32 through a checkpoint."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(64, generator=generator)
    low = start.to(dtype).requires_grad_()
    master = low.detach().float().requires_grad_()
    ours = lt.AdamW([low], lr=0.01, master_weights=master_weights)
    theirs = torch.optim.AdamW([master], lr=0.01)
    for _ in range(5):
        g = torch.randn(64, generator=generator).to(dtype)
        low.grad = g
        master.grad = g.float()
        ours.step()
        theirs.step()
    state = ours.state[low]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32
    if master_weights:
        assert_close(state["master"], master.detach(), "master copy")
        assert torch.equal(low.detach(), master.detach().to(dtype))
    saved = copy.deepcopy(ours.state_dict())
    fresh_param = low.detach().clone().requires_grad_()
    fresh = lt.AdamW([fresh_param], lr=0.01, master_weights=master_weights)
    fresh.load_state_dict(saved)
    for key, value in fresh.state[fresh_param].items():
        assert value.dtype == state[key].dtype, key
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: lt.Adam([p], differentiable=True), "differentiable"),
        (lambda p: lt.Adam([p], capturable=True), "capturable"),
        (lambda p: lt.Adam([p], lr=-1.0), "lr"),
        (lambda p: lt.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda p: lt.Adam([{"params": [p], "betas": (0.9, 1.5)}]), r"param_groups\[0\]"),
    ],
)
def test_bad_construction_is_refused(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        make(torch.zeros(3, requires_grad=True))


def _bad_tensors():  # type: ignore[no-untyped-def]
    """Pairs of (parameter, gradient) each step must refuse, and the words it names them by."""
    p = torch.zeros(4, 4, requires_grad=True)
    meta = torch.zeros(4, device="meta", requires_grad=True)
    meta.grad = torch.zeros(4, device="meta")
    sparse = torch.zeros(4, requires_grad=True)
    sparse.grad = torch.zeros(4).to_sparse()
    complex_ = torch.zeros(4, dtype=torch.complex64, requires_grad=True)
    complex_.grad = torch.zeros(4, dtype=torch.complex64)
    strided = torch.zeros(4, 4).t().requires_grad_()
    strided.grad = torch.zeros(4, 4).t()
    del p
    return [
        (meta, "meta"),
        (sparse, "sparse"),
        (complex_, "complex"),
        (strided, "contiguous"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_bad_tensors_are_refused_before_anything_changes(case: int) -> None:
    """One bad tensor in the second group: the step raises, naming it, and the first group's
    parameters and every state are exactly as they were."""
    bad, words = _bad_tensors()[case]
    good = torch.randn(8, requires_grad=True)
    optimizer = lt.Adam([{"params": [good]}, {"params": [bad]}], lr=0.1)
    good.grad = torch.ones(8)
    before = good.detach().clone()
    with pytest.raises((ValueError, TypeError), match=words) as error:
        optimizer.step()
    assert "param_groups[1]['params'][0]" in str(error.value)
    assert torch.equal(good.detach(), before)
    assert len(optimizer.state) == 0


def test_refused_group_value_written_by_hand_changes_nothing() -> None:
    p, q = torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True)
    optimizer = lt.SGD([{"params": [p]}, {"params": [q]}], lr=0.1, momentum=0.9)
    p.grad, q.grad = torch.ones(5), torch.ones(5)
    optimizer.step()
    before = [p.detach().clone(), optimizer.state[p]["momentum_buffer"].clone()]
    optimizer.param_groups[1]["momentum"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[1\].*momentum"):
        optimizer.step()
    assert torch.equal(p.detach(), before[0])
    assert torch.equal(optimizer.state[p]["momentum_buffer"], before[1])


def test_clip_grad_norm_accumulation_and_amp() -> None:
    """clip_grad_norm_, gradient accumulation, bf16 autocast and a GradScaler on the CPU."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 6), torch.randn(32, 1)

    def train(optimizer_class):  # type: ignore[no-untyped-def]
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        optimizer = optimizer_class(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        for _ in range(6):
            for xb, yb in zip((x[:16], x[16:]), (y[:16], y[16:])):  # accumulate two halves
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = torch.nn.functional.mse_loss(model(xb).float(), yb)
                scaler.scale(loss / 2).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
        return [p.detach() for p in model.parameters()]

    for ours, theirs in zip(train(lt.Adam), train(torch.optim.Adam)):
        assert_close(ours, theirs, "amp")


def test_compiled_model() -> None:
    """A torch.compile'd model trains with an lrfast optimizer (its step is not compiled)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    compiled = torch.compile(model, backend="aot_eager")
    optimizer = lt.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = compiled(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def _digits():  # type: ignore[no-untyped-def]
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float64).unsqueeze(1)
    return x, torch.tensor(data.target)


def _cnn_losses(optimizer_class, options, x, y) -> list[float]:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    ).double()
    optimizer = optimizer_class(model.parameters(), **options)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3 * 15)
    order = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(3):
        permutation = torch.randperm(len(x), generator=order)
        for batch in permutation[:1500].split(100):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    return losses


CNN_OPTIONS = {
    "SGD": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "Adagrad": {"lr": 0.05},
    "RMSprop": {"lr": 1e-3, "centered": True},
    "Adadelta": {"lr": 1.0},
    "Adam": {"lr": 3e-3, "amsgrad": True},
    "AdamW": {"lr": 3e-3, "weight_decay": 0.05},
    "Adamax": {"lr": 5e-3},
    "NAdam": {"lr": 3e-3},
    "RAdam": {"lr": 1e-2},
}


@pytest.mark.parametrize("name", NAMES)
def test_cnn_on_digits_matches_torch_optim(name: str) -> None:
    """A small CNN on scikit-learn's digits, 3 epochs with a cosine schedule, float64: every
    step's loss equals the torch.optim run's to 1e-9."""
    x, y = _digits()
    ours = _cnn_losses(getattr(lt, name), CNN_OPTIONS[name], x, y)
    theirs = _cnn_losses(getattr(torch.optim, name), CNN_OPTIONS[name], x, y)
    assert len(ours) == 45
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours, theirs))
    assert worst <= 1e-9, worst
    assert ours[-1] < ours[0] or math.isclose(ours[-1], ours[0])


DISTRIBUTED = Path(__file__).parent / "distributed"


def _torchrun(script: str, *args: str, timeout: float = 600) -> None:
    # DeepSpeed compiles its communication op with ninja, from this environment's bin.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONPATH": str(DISTRIBUTED), "OMP_NUM_THREADS": "1", "PATH": path}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port()), str(DISTRIBUTED / script), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_zero_redundancy_optimizer_on_two_processes(tmp_path: Path) -> None:
    """ZeroRedundancyOptimizer(optimizer_class=lrfast.torch.AdamW) under DDP, 2 processes on
    gloo, each on half of every batch: the parameters equal a single-process torch.optim.AdamW
    run over the whole batches, and the consolidated state dict loads into torch.optim.AdamW."""
    sys.path.insert(0, str(DISTRIBUTED))
    try:
        from common import STEPS, batches, model  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DISTRIBUTED))
    out = tmp_path / "zero.pt"
    _torchrun("zero_worker.py", str(out))
    result = torch.load(out, weights_only=False)

    reference = model()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
    for x, y in batches(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(reference(x), y).backward()
        optimizer.step()
    for ours, theirs in zip(result["params"], reference.parameters()):
        assert_close(ours, theirs.detach(), "ZeRO")
    loaded = torch.optim.AdamW(model().parameters(), lr=1e-2, weight_decay=0.1)
    loaded.load_state_dict(result["optimizer"])
    for ours, theirs in zip(loaded.state.values(), optimizer.state.values()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert_close(ours[key], theirs[key], f"consolidated {key}")
        assert ours["step"].item() == STEPS


def test_deepspeed_zero_offload_with_lrfast_as_the_cpu_optimizer(tmp_path: Path) -> None:
    """DeepSpeed ZeRO stage 2 with the optimizer offloaded to the CPU, bf16, 2 processes on the
    CPU accelerator, lrfast.torch.AdamW as the client optimizer: the float32 master weights
    after the steps match the same run with torch.optim.AdamW."""
    pytest.importorskip("deepspeed", reason="the test extra installs deepspeed")
    runs = {}
    for which in ("lrfast", "torch"):
        out = tmp_path / f"{which}.pt"
        _torchrun("deepspeed_worker.py", which, str(out), timeout=900)
        runs[which] = torch.load(out, weights_only=False)
    assert runs["lrfast"]["optimizer"] == "lrfast.torch.AdamW"
    assert runs["torch"]["optimizer"] == "torch.optim.adamw.AdamW"
    for rank, (ours, theirs) in enumerate(zip(runs["lrfast"]["masters"], runs["torch"]["masters"])):
        for a, b in zip(ours, theirs):
            assert_close(a, b, f"rank {rank}'s partition")


def _trained_adam():  # type: ignore[no-untyped-def]
    p = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    optimizer = lt.Adam([p], lr=0.01, amsgrad=True)
    p.grad = torch.ones_like(p)
    optimizer.step()
    return p, optimizer


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda sd: sd["state"][0].update(exp_avg=torch.zeros(5)), r"\['exp_avg'\] has shape"),
        (lambda sd: sd["state"][0].update(sum=torch.zeros(4, 3)), "keeps no 'sum'"),
        (lambda sd: sd["state"][0].update(step="3"), r"\['step'\] must be a number"),
        (lambda sd: sd["state"][0].update(exp_avg_sq=[1.0]), "floating-point tensor"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), r"param_groups'\]\[0\].*lr"),
        (lambda sd: sd["param_groups"].append(sd["param_groups"][0]), "1 groups"),
    ],
)
def test_a_state_dict_that_does_not_fit_changes_nothing(corrupt, message) -> None:  # type: ignore[no-untyped-def]
    _, optimizer = _trained_adam()
    before = copy.deepcopy(optimizer.state_dict())
    bad = copy.deepcopy(before)
    corrupt(bad)
    with pytest.raises((TypeError, ValueError), match=message):
        optimizer.load_state_dict(bad)
    after = optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for key, value in before["state"][0].items():
        assert torch.equal(after["state"][0][key], value), key


def test_old_checkpoints_with_number_steps_load() -> None:
    """torch checkpoints from before step tensors hold a number; it loads as torch.optim does."""
    p, optimizer = _trained_adam()
    saved = copy.deepcopy(optimizer.state_dict())
    saved["state"][0]["step"] = 1
    q = p.detach().clone().requires_grad_()
    fresh = lt.Adam([q], lr=0.01, amsgrad=True)
    fresh.load_state_dict(saved)
    assert isinstance(fresh.state[q]["step"], torch.Tensor)
    p.grad = torch.ones_like(p)
    q.grad = torch.ones_like(q)
    optimizer.step()
    fresh.step()
    assert torch.equal(p, q)


def test_a_first_step_the_kernel_refuses_creates_no_state() -> None:
    """A gradient that is a view of its own parameter: the kernel refuses the call before it
    writes, and the state the step was about to use is taken back."""
    p = torch.randn(6, requires_grad=True)
    optimizer = lt.Adam([p], lr=0.1)
    p.grad = p.detach()  # the same memory
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"share|overlap|alias"):
        optimizer.step()
    assert len(optimizer.state) == 0
    assert torch.equal(p.detach(), before)


def _stepped_pair():  # type: ignore[no-untyped-def]
    """Two groups of an Adam that has taken a step, and a copy of everything it holds."""
    p, q = torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)
    optimizer = lt.Adam([{"params": [p]}, {"params": [q]}], lr=0.1)
    p.grad, q.grad = torch.ones(4, 3), torch.ones(5)
    optimizer.step()
    return p, q, optimizer


def _snapshot(optimizer):  # type: ignore[no-untyped-def]
    params = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]
    return params, copy.deepcopy(optimizer.state_dict()["state"])


def _assert_unchanged(optimizer, snapshot, but: str = "") -> None:  # type: ignore[no-untyped-def]
    """Every parameter and state tensor is as in ``snapshot``, but the second group's ``but``."""
    params, state = snapshot
    now = [p.detach() for g in optimizer.param_groups for p in g["params"]]
    assert all(torch.equal(a, b) for a, b in zip(now, params))
    after = optimizer.state_dict()["state"]
    assert set(after) == set(state)
    for index, entry in state.items():
        assert set(after[index]) == set(entry)
        for key, value in entry.items():
            if (index, key) != (1, but):
                assert torch.equal(after[index][key], value), (index, key)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("exp_avg", [0.0] * 5, "must be a tensor, got list"),
        ("exp_avg_sq", torch.zeros(4), r"has dtype .* shape \(4,\); .* \(5,\)"),
        (
            "exp_avg",
            torch.zeros(5, dtype=torch.float64),
            "has dtype torch.float64 .* needs torch.float32",
        ),
        ("exp_avg", torch.zeros(10)[::2], "is not contiguous"),
        ("exp_avg", torch.zeros(5, device="meta"), "is on meta"),
        ("step", torch.tensor(1.5), "is 1.5; a step count is a whole number"),
        ("step", torch.tensor([1.0, 2.0]), "must be a float32 or float64 tensor of one element"),
    ],
)
def test_a_state_written_by_hand_that_does_not_fit_changes_nothing(key, value, words) -> None:  # type: ignore[no-untyped-def]
    """The second group's state is broken after a step: the next step names the tensor and
    writes nothing, in either group."""
    p, q, optimizer = _stepped_pair()
    snapshot = _snapshot(optimizer)
    optimizer.state[q][key] = value
    p.grad, q.grad = torch.ones(4, 3), torch.ones(5)
    name = re.escape(f"state '{key}' of param_groups[1]['params'][0] ")
    with pytest.raises((TypeError, ValueError), match=name + words):
        optimizer.step()
    _assert_unchanged(optimizer, snapshot, key)


def test_tensors_of_two_groups_that_share_memory_are_refused() -> None:
    """Each kernel call checks its own arrays; the step checks all of them, across groups."""
    base = torch.randn(10)
    p = base[:6].requires_grad_()
    q = base[4:].requires_grad_()  # overlaps p's last two elements
    optimizer = lt.SGD([{"params": [p]}, {"params": [q]}], lr=0.1, momentum=0.9)
    p.grad, q.grad = torch.ones(6), torch.ones(6)
    before = base.clone()
    names = r"param_groups\[0\]\['params'\]\[0\] and param_groups\[1\]\['params'\]\[0\]"
    with pytest.raises(ValueError, match=names + " share memory"):
        optimizer.step()
    assert torch.equal(base, before)
    assert len(optimizer.state) == 0


def test_a_negated_view_parameter_is_refused() -> None:
    p = torch.randn(4)._neg_view().requires_grad_()
    optimizer = lt.SGD([p], lr=0.1)
    p.grad = torch.ones(4)
    with pytest.raises(ValueError, match="negative bit"):
        optimizer.step()


def test_a_gradient_that_is_not_contiguous_is_read_as_is() -> None:
    ours, theirs = twin_params([(3, 4)], torch.float64, seed=1)
    grad = torch.randn(4, 3, dtype=torch.float64).t()
    assert not grad.is_contiguous()
    ours[0].grad, theirs[0].grad = grad, grad.clone()
    lt.Adam(ours, lr=0.1).step()
    torch.optim.Adam(theirs, lr=0.1).step()
    assert_close(ours[0].detach(), theirs[0].detach(), "param")


def test_many_tensors_at_different_steps_in_one_group() -> None:
    """Parameters that got gradients on different steps are at different step counts: one
    step runs one kernel call per count, as torch.optim would update them."""
    ours, theirs = twin_params([(7,)] * 6, torch.float32, seed=2)
    a, b = lt.NAdam(ours, lr=0.01), torch.optim.NAdam(theirs, lr=0.01)
    generator = torch.Generator().manual_seed(3)
    for step in range(5):
        for i, (x, y) in enumerate(zip(ours, theirs)):
            has_grad = i <= step  # parameter i joins at step i
            g = torch.randn(7, generator=generator) if has_grad else None
            x.grad, y.grad = g, None if g is None else g.clone()
        a.step()
        b.step()
    for x, y in zip(ours, theirs):
        assert_close(x.detach(), y.detach(), "param")
    compare_state(a, b)


@pytest.mark.parametrize(
    ("name", "options"),
    [("SGDHD", {}), ("SGDHD", {"momentum": 0.9, "weight_decay": 0.01}), ("AdamHD", {})],
)
def test_hypergradient_optimizers_match_lrfasts(name: str, options: dict) -> None:  # type: ignore[type-arg]
    """lrfast.torch.SGDHD and AdamHD take the NumPy classes' steps: the same parameters and the
    same learned rate, bit for bit, and a state dict that resumes the run exactly."""
    import lrfast

    rate = {"SGDHD": dict(lr=0.05, hypergrad_lr=1e-2), "AdamHD": dict(lr=0.01, hypergrad_lr=1e-4)}
    generator = torch.Generator().manual_seed(4)
    base = [torch.randn(s, generator=generator, dtype=torch.float64) for s in [(3, 4), (5,)]]
    params = [b.clone().requires_grad_() for b in base]
    arrays = [b.numpy().copy() for b in base]
    ours = getattr(lt, name)(params, **rate[name], **options)
    theirs = getattr(lrfast, name)(arrays, **rate[name], **options)
    resumed = None
    for step in range(6):
        grads = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        ours.step()
        theirs.step([g.numpy() for g in grads])
        if resumed is not None:
            for p, g in zip(resumed[0], grads):
                p.grad = g.clone()
            resumed[1].step()
        if step == 2:  # a copy that resumes from the state dict
            copies = [p.detach().clone().requires_grad_() for p in params]
            fresh = getattr(lt, name)(copies, **rate[name], **options)
            fresh.load_state_dict(copy.deepcopy(ours.state_dict()))
            resumed = (copies, fresh)
        assert ours.param_groups[0]["lr"] == theirs.lr
        for p, a in zip(params, arrays):
            assert np.array_equal(p.detach().numpy(), a)
    assert resumed is not None
    for p, q in zip(params, resumed[0]):
        assert torch.equal(p, q)
    assert ours.state[params[0]]["step"].item() == 6


def test_hypergradient_groups_step_together_and_checks_come_first() -> None:
    p, q = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"param_groups\[0\].*hypergrad_lr"):
        lt.SGDHD([p], hypergrad_lr=-1.0)
    optimizer = lt.AdamHD([p, q], lr=0.01)
    p.grad = torch.ones(3)
    optimizer.step()  # q has no gradient yet
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"\['params'\]\[1\] has taken 0 steps"):
        optimizer.step()
    assert torch.equal(p.detach(), before)
    assert q not in optimizer.state
