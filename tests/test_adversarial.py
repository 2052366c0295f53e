"""The adversarial suite, beyond the kernels' bad arguments (``test_bad_input.py``): overlap
judged against ``numpy.shares_memory``, concurrency, state dicts, checkpoint files on a failing
disk, schedule edges against exact integer arithmetic, and the tools' inputs. Every attempt is
tallied per family (``adversarial.py``); ``HYPOTHESIS_PROFILE=thorough`` runs many more."""

from __future__ import annotations

import errno
import math
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from adversarial import attempt
from hypothesis import given
from hypothesis import strategies as st

import lrfast
from lrfast import schedules as S

# -- overlap, against numpy.shares_memory ----------------------------------------------------

BUFFER_BYTES = 256


@st.composite
def views(draw: st.DrawFn, count: int) -> list[np.ndarray]:
    """``count`` float32 views into one or two byte buffers, at any 4-byte offset and length."""
    buffers = [np.zeros(BUFFER_BYTES, np.uint8) for _ in range(2)]
    out = []
    for _ in range(count):
        buffer = buffers[draw(st.integers(0, 1))]
        start = draw(st.integers(0, BUFFER_BYTES // 4 - 1)) * 4
        length = draw(st.integers(0, (BUFFER_BYTES - start) // 4))
        out.append(buffer[start : start + 4 * length].view(np.float32))
    return out


@given(data=st.data())
def test_overlap_is_judged_as_numpy_shares_memory_judges_it(data: st.DataObject) -> None:
    """SGD with momentum writes param and buffer and reads grad: a call is refused exactly when
    a written array shares memory with another argument."""
    param, grad, buffer = data.draw(views(3))
    grad = grad[: param.size] if grad.size >= param.size else None
    buffer = buffer[: param.size] if buffer.size >= param.size else None
    if grad is None or buffer is None or grad.size != param.size or buffer.size != param.size:
        return
    written = [("param", param), ("momentum_buffer", buffer)]
    others = [("grad", grad), *written]
    clash = any(
        np.shares_memory(a, b) and a.size and b.size
        for i, (_, a) in enumerate(written)
        for j, (_, b) in enumerate(others)
        if (i, j) not in ((0, 1), (1, 2))
    )

    def run() -> None:
        lrfast.sgd_step(param, grad, buffer, step=2, lr=0.1, momentum=0.9)

    if clash:
        attempt("overlap", run, naming="share memory", arrays=[param, grad, buffer])
    else:
        attempt("overlap", run, rejects=None)


@given(arrays=views(5), written=st.lists(st.booleans(), min_size=5, max_size=5))
def test_the_step_sweep_finds_an_overlap_exactly_when_numpy_does(
    arrays: list[np.ndarray], written: list[bool]
) -> None:
    expected = any(
        (written[i] or written[j]) and np.shares_memory(arrays[i], arrays[j])
        for i in range(5)
        for j in range(i + 1, 5)
        if arrays[i].size and arrays[j].size
    )
    FAMILY = "overlap"

    def run() -> None:
        pair = lrfast._lrfast.first_overlap(arrays, written)
        assert (pair is not None) == expected, (pair, expected)
        if pair is not None:
            i, j = pair
            assert (written[i] or written[j]) and np.shares_memory(arrays[i], arrays[j])

    attempt(FAMILY, run, rejects=None)


# -- concurrency -----------------------------------------------------------------------------


def test_one_optimizer_stepped_from_two_threads_loses_nothing() -> None:
    size = 1 << 16
    params = [np.zeros(size, np.float32)]
    opt = lrfast.Adam(params, lr=1e-3)
    grad = [np.ones(size, np.float32)]
    applied, refused = [0], [0]
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            try:
                opt.step(grad)
                with lock:
                    applied[0] += 1
            except RuntimeError as e:
                assert "another thread" in str(e)
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    attempt("concurrency", lambda: None, rejects=None)
    assert opt.step_count == applied[0] and applied[0] + refused[0] == 80
    replay = [np.zeros(size, np.float32)]
    sequential = lrfast.Adam(replay, lr=1e-3)
    for _ in range(applied[0]):
        sequential.step(grad)
    assert params[0].tobytes() == replay[0].tobytes()


def test_reading_a_gradient_another_thread_writes_is_refused() -> None:
    grad = np.ones(1 << 22, np.float32)
    param, m, v = np.zeros_like(grad), np.zeros_like(grad), np.zeros_like(grad)
    errors: list[BaseException] = []

    def clip() -> None:
        for _ in range(20):
            try:
                lrfast.clip_grad_norm([grad], 1e9)
            except ValueError as e:
                errors.append(e)

    def update() -> None:
        for t in range(1, 20):
            try:
                lrfast.adam_step(param, grad, m, v, step=t, lr=1e-3)
            except ValueError as e:
                errors.append(e)

    threads = [threading.Thread(target=clip), threading.Thread(target=update)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for e in errors:
        attempt("concurrency", lambda e=e: _raise(e), naming="in use")


def _raise(error: BaseException) -> None:
    raise error


def test_saving_from_two_threads_leaves_one_whole_checkpoint(tmp_path: Path) -> None:
    opt = lrfast.Adam([np.ones(1000, np.float32)], lr=0.01)
    opt.step([np.ones(1000, np.float32)])
    path = tmp_path / "ckpt.npz"
    threads = [threading.Thread(target=opt.save, args=(path,)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    again = lrfast.Adam([np.ones(1000, np.float32)], lr=0.01)
    attempt("concurrency", lambda: again.load(path), rejects=None)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


# -- state dicts -----------------------------------------------------------------------------


def _trained(cls: Any = lrfast.NAdam, **kwargs: Any) -> lrfast.Optimizer:
    groups = [
        {"params": [np.ones(4, np.float32)], "lr": S.StepLR(0.1, step_size=2)},
        {"params": [np.ones(3, np.float32), np.ones(2, np.float32)], "weight_decay": 0.1},
    ]
    opt = cls(groups, **kwargs)
    opt.step([np.ones(4, np.float32), np.ones(3, np.float32), np.ones(2, np.float32)])
    return opt


def _state_dict_cases(good: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(what, a broken copy of ``good``, the key its message must name)."""
    group0, group1 = good["param_groups"]
    state0 = good["state"][0]

    def groups(**change: Any) -> dict[str, Any]:
        return {**good, "param_groups": [{**group0, **change}, group1]}

    def state(entry: Any) -> dict[str, Any]:
        return {**good, "state": [entry, *good["state"][1:]]}

    cases = [
        ("not a dict", [good], "state_dict"),  # type: ignore[list-item]
        ("no step", {k: v for k, v in good.items() if k != "step"}, "step"),
        ("unknown key", {**good, "bogus": 1}, "bogus"),
        ("other optimizer", {**good, "optimizer": "Adam"}, "Adam"),
        ("groups not a list", {**good, "param_groups": group0}, "param_groups"),
        ("one group too few", {**good, "param_groups": [group0]}, "param_groups"),
        ("groups swapped", {**good, "param_groups": [group1, group0]}, "param_groups"),
        ("state not a list", {**good, "state": {}}, "state"),
        ("state too short", {**good, "state": good["state"][:2]}, "state"),
        ("state entry a list", state([]), "state'][0]"),
        ("state entry None", state(None), "state'][0]"),
        ("missing exp_avg_sq", state({"exp_avg": state0["exp_avg"]}), "exp_avg_sq"),
        ("unknown state key", state({**state0, "bogus": state0["exp_avg"]}), "bogus"),
        ("a list, not an array", state({**state0, "exp_avg": [0.0] * 4}), "exp_avg"),
        (
            "float64 state",
            state({**state0, "exp_avg": state0["exp_avg"].astype(np.float64)}),
            "exp_avg",
        ),
        ("short state", state({**state0, "exp_avg": state0["exp_avg"][:2]}), "exp_avg"),
        ("master for float32", state({**state0, "master": state0["exp_avg"]}), "master"),
        ("lr negative", groups(lr=-1.0), "lr"),
        ("lr a string", groups(lr="0.1"), "lr"),
        ("betas of three", groups(betas=(0.9, 0.99, 0.9)), "betas"),
        ("eps NaN", groups(eps=math.nan), "eps"),
        ("unknown hyperparameter", groups(nope=1), "nope"),
        (
            "missing hyperparameter",
            {**good, "param_groups": [{k: v for k, v in group0.items() if k != "eps"}, group1]},
            "eps",
        ),
        ("params of another size", groups(params=[0, 1]), "param_groups"),
    ]
    for value in ("x", None, -5, 2**64, 1.5, "7", True):
        cases.append((f"step={value!r}", {**good, "step": value}, "step"))
        cases.append((f"group step={value!r}", groups(step=value), "step"))
    for value in (math.nan, -1.0, 0.0, math.inf, "1"):
        cases.append((f"lr_scale={value!r}", {**good, "scalars": {"lr_scale": value}}, "lr_scale"))
    for value in (5.0, math.nan, -0.5, "0.5", None):
        cases.append((f"mu_product={value!r}", groups(mu_product=value), "mu_product"))
    cases.append(("unknown scalar", {**good, "scalars": {"lr_scale": 1.0, "x": 1.0}}, "x"))
    return cases


def test_every_broken_state_dict_is_refused_and_changes_nothing() -> None:
    good = _trained(lr=0.01).state_dict()
    target = _trained(lr=0.5)
    before = target.state_dict()
    for what, broken, key in _state_dict_cases(good):
        attempt("state dicts", lambda b=broken: target.load_state_dict(b), naming=key,
                arrays=[a for s in target.state for a in s.values()])  # fmt: skip
        after = target.state_dict()
        assert after["param_groups"] == before["param_groups"], what
        assert (after["step"], after["scalars"]) == (before["step"], before["scalars"]), what
    attempt("state dicts", lambda: target.load_state_dict(good), rejects=None)
    assert target.state_dict()["param_groups"] == good["param_groups"]


# -- checkpoint files ------------------------------------------------------------------------


class _FailingDisk:
    """Makes the n-th write to a file opened for writing raise ``ENOSPC``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
        self.count = 0
        self.fail_at = fail_at
        real_fdopen = os.fdopen

        def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
            f = real_fdopen(fd, *args, **kwargs)
            disk = self
            real_write = f.write

            def write(data: Any) -> int:
                disk.count += 1
                if disk.count >= disk.fail_at:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return int(real_write(data))

            f.write = write
            return f

        monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.parametrize("fail_at", [1, 2, 5, 20])
def test_a_failing_disk_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    opt = _trained()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    previous = path.read_bytes()
    opt.step([np.ones(4, np.float32), np.ones(3, np.float32), np.ones(2, np.float32)])
    with monkeypatch.context() as m:
        _FailingDisk(m, fail_at)
        attempt("checkpoint files", lambda: opt.save(path), rejects=(OSError,), naming="space")
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_a_broken_checkpoint_file_is_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    opt = _trained()
    good = tmp_path / "good.npz"
    opt.save(good)
    data = good.read_bytes()
    target = _trained()
    files: list[tuple[str, bytes, str]] = [
        ("truncated", data[: len(data) // 2], "checkpoint"),
        ("empty", b"", "checkpoint"),
        ("random bytes", bytes(range(256)) * 4, "checkpoint"),
    ]
    for what, content, message in files:
        path = tmp_path / f"{what}.npz"
        path.write_bytes(content)
        attempt("checkpoint files", lambda p=path: target.load(p), naming=message,
                arrays=[a for s in target.state for a in s.values()])  # fmt: skip
    arrays_only = tmp_path / "plain.npz"
    np.savez(arrays_only, x=np.ones(2))
    attempt("checkpoint files", lambda: target.load(arrays_only), naming="__meta__")
    nested = tmp_path / "nested.npz"
    np.savez(nested, __meta__=np.array("[" * 100_000 + "]" * 100_000))
    attempt("checkpoint files", lambda: target.load(nested), naming="metadata")
    attempt("checkpoint files", lambda: opt.save(tmp_path), rejects=(IsADirectoryError,),
            naming="directory")  # fmt: skip
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    attempt("checkpoint files", lambda: opt.save(pipe), naming="not a regular file")
    assert pipe.is_fifo()
    link = tmp_path / "link.npz"
    link.symlink_to(good)
    attempt("checkpoint files", lambda: opt.save(link), rejects=None)
    assert link.is_symlink()
    attempt("checkpoint files", lambda: target.load(link), rejects=None)


# -- schedule edges, against exact integer arithmetic ----------------------------------------

U64 = st.integers(0, 2**64 - 1)


def _cosine(peak: float, low: float, fraction: Fraction) -> float:
    return low + (peak - low) * (1 + math.cos(math.pi * float(fraction))) / 2


@given(t_0=st.integers(1, 2**64 - 1), t_mult=st.integers(1, 2**64 - 1), t=U64)
def test_warm_restarts_match_exact_integer_positions(t_0: int, t_mult: int, t: int) -> None:
    start, period = 0, t_0
    while start + period <= t:
        start, period = start + period, period * t_mult
    expected = _cosine(0.1, 0.0, Fraction(t - start, period))
    schedule = S.CosineAnnealingWarmRestarts(0.1, t_0, T_mult=t_mult)

    def run() -> None:
        assert math.isclose(schedule(t), expected, rel_tol=1e-9, abs_tol=1e-15)

    attempt("schedule edges", run, rejects=None)


@given(t_max=st.integers(1, 2**64 - 1), t=U64)
def test_cosine_annealing_matches_exact_integer_phases(t_max: int, t: int) -> None:
    expected = _cosine(0.1, 0.0, Fraction(t % (2 * t_max), t_max))
    schedule = S.CosineAnnealingLR(0.1, t_max)

    def run() -> None:
        assert math.isclose(schedule(t), expected, rel_tol=1e-9, abs_tol=1e-15)

    attempt("schedule edges", run, rejects=None)


EXTREME_STEPS = [0, 1, 2, 2**31 + 1, 2**53 + 1, 2**63, 2**64 - 1]


@st.composite
def accepted_schedules(draw: st.DrawFn) -> S.Schedule:
    """A schedule with extreme but accepted parameters."""
    rate = st.sampled_from([0.0, 1e-300, 1e-3, 0.1, 1.0, 1e300, 1.7e308])
    count = st.sampled_from([1, 2, 3, 2**31, 2**53 + 1, 2**63, 2**64 - 1])
    unit = st.sampled_from([0.0, 1e-300, 0.5, 0.999999, 1.0])
    kind = draw(st.integers(0, 9))
    lr = draw(rate)
    if kind == 0:
        return S.StepLR(lr, step_size=draw(count), gamma=draw(unit))
    if kind == 1:
        return S.ExponentialLR(lr, gamma=draw(unit))
    if kind == 2:
        return S.CosineAnnealingLR(lr, draw(count), eta_min=min(lr, draw(rate)))
    if kind == 3:
        return S.CosineAnnealingWarmRestarts(lr, draw(count), T_mult=draw(count))
    if kind == 4:
        low, high = sorted([lr, draw(rate)])
        mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
        return S.CyclicLR(low, high, step_size_up=draw(count), mode=mode, gamma=draw(unit))
    if kind == 5:
        return S.PolynomialLR(
            lr, total_iters=draw(count), power=draw(st.sampled_from([0.0, 0.5, 3.0]))
        )
    if kind == 6:
        t_mul = draw(st.sampled_from([1.0, 2.0, 1e300]))
        return S.CosineDecayRestarts(
            lr, draw(count), t_mul=t_mul, m_mul=draw(unit), alpha=draw(unit)
        )
    if kind == 7:
        return S.InverseTimeDecay(lr, draw(count), decay_rate=draw(rate))
    if kind == 8:
        return S.PolynomialDecay(lr, draw(count), end_learning_rate=draw(rate), power=0.5,
                                 cycle=draw(st.booleans()))  # fmt: skip
    return S.OneCycleLR(lr, total_steps=draw(count))


@given(schedule=accepted_schedules())
def test_an_accepted_schedule_never_gives_nan(schedule: S.Schedule) -> None:
    def run() -> None:
        rates = [schedule(t) for t in EXTREME_STEPS]
        assert not any(math.isnan(r) for r in rates), (schedule, rates)
        assert all(r >= 0 for r in rates), (schedule, rates)

    attempt("schedule edges", run, rejects=None)


def test_schedule_parameters_that_cannot_be_represented_are_refused() -> None:
    attempt("schedule edges", lambda: S.CyclicLR(0.1, 1, mode="exp_range", gamma=2), naming="gamma")
    attempt("schedule edges", lambda: S.LambdaLR(-1.0, lambda t: 1.0), naming="base_lr")
    steps = np.array([1, 2], dtype="timedelta64[s]")
    attempt("schedule edges", lambda: S.CosineAnnealingLR(0.1, 10).evaluate(steps),
            naming="steps")  # fmt: skip


# -- the tools' inputs -----------------------------------------------------------------------


def test_the_tools_refuse_what_is_not_a_loss() -> None:
    for bad in ("0.5", None, True, [0.5, 0.5], {"loss": "x"}):
        attempt("tools", lambda b=bad: lrfast.lr_range_test(lambda lr: b, num_steps=5),
                naming="step_fn")  # fmt: skip
        attempt("tools", lambda b=bad: lrfast.sensitivity(lambda lr: b, [0.1, 0.2]),
                naming="train_fn")  # fmt: skip
        attempt("tools", lambda b=bad: lrfast.EarlyStopping().step(b), naming="metric")
        attempt("tools", lambda b=bad: lrfast.ReduceLROnPlateau(0.1).step(b), naming="metric")
    for good in (np.float32(0.5), np.array(0.5), np.array([0.5]), 1):
        attempt("tools", lambda g=good: lrfast.EarlyStopping().step(g), rejects=None)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_the_hypergradient_steps_treat_matrices_as_arrays() -> None:
    for step in (lrfast.sgd_hd_step, lrfast.adam_hd_step):
        p = np.matrix(np.ones((2, 2)))
        states = [
            np.matrix(np.zeros((2, 2))) for _ in range(1 if step is lrfast.sgd_hd_step else 2)
        ]
        attempt("tools", lambda s=step, p=p, st=states: s(p, np.matrix(np.ones((2, 2))), *st,
                step=1, lr=0.1), rejects=None)  # fmt: skip
        assert (np.asarray(p) < 1).all()
    attempt("tools", lambda: lrfast.SGDHD(np.ones(3) for _ in range(2)), rejects=None)


def test_the_clipping_functions_name_an_argument_of_the_wrong_kind() -> None:
    def grads() -> list[np.ndarray]:
        return [np.full(3, 2.0, np.float32), np.full(2, -3.0, np.float32)]

    cases: list[tuple[str, Any, str]] = [
        ("clip_grad_norm", {"max_norm": "1"}, "max_norm"),
        ("clip_grad_norm", {"max_norm": True}, "max_norm"),
        ("clip_grad_norm", {"max_norm": 1.0, "norm_type": "2"}, "norm_type"),
        ("clip_grad_norm", {"max_norm": 1.0, "error_if_nonfinite": 1}, "error_if_nonfinite"),
        ("clip_grad_norm", {"max_norm": -1.0}, "max_norm"),
        ("grad_norm", {"norm_type": True}, "norm_type"),
        ("grad_norm", {"norm_type": -1.0}, "norm_type"),
        ("clip_grad_value", {"clip_value": "0.5"}, "clip_value"),
        ("clip_grad_value", {"clip_value": math.nan}, "clip_value"),
    ]
    for function, kwargs, name in cases:
        arrays = grads()
        call = getattr(lrfast, function)
        attempt("clipping", lambda c=call, a=arrays, k=kwargs: c(a, **k), naming=name,
                arrays=arrays)  # fmt: skip
