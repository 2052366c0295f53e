"""Mixed precision: float16 and bfloat16 parameters and gradients with float32 state.

Each update must be bit-identical to widening the 16-bit arrays to float32, running the float32
kernel and rounding the parameter back (NumPy's casts), and agree with the NumPy reference done
the same way. ml_dtypes is a test dependency, so the bfloat16 tests always run.
"""

from __future__ import annotations

from typing import Any, Optional

import hypothesis.strategies as st
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, note
from test_kernels_vs_reference import TOLERANCE_EPS, error_in_eps, shaped, values

import lrfast
import lrfast.reference as ref
from kernels import DEFAULTS, KERNELS, Kernel

LOW = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
LOW_IDS = ["float16", "bfloat16"]
# Largest magnitude drawn: float16 tops out at 65504.
BIG = {"float16": 1e3, "bfloat16": 1e6}
BLOCK = 1024  # the kernels' mixed-precision block (rust/optim/mod.rs, MIXED_BLOCK)

# Around the SIMD widths, the conversion block and the thread split (131,072).
SIZES = st.one_of(
    st.sampled_from([0, 1, 2, 7, 8, 9, 15, 16, 17, 33]),
    st.integers(0, 300),
    st.sampled_from([BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3, 131_073, 300_001]),
)


def same_bits(fast: np.ndarray, expected: np.ndarray) -> bool:
    """Equal bit patterns, NaN matching any NaN (conversions may keep different payloads)."""
    nan = np.isnan(fast.astype(np.float32))
    if not np.array_equal(nan, np.isnan(expected.astype(np.float32))):
        return False
    width = np.uint16 if fast.dtype.itemsize == 2 else np.uint32
    return np.array_equal(fast[~nan].view(width), expected[~nan].view(width))


def low_precision_error(fast: np.ndarray, reference: np.ndarray, scale: np.ndarray) -> float:
    """max |fast - reference| in units of the 16-bit type's spacing at ``scale``."""
    a, b = fast.astype(np.float64), reference.astype(np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN in different places"
    finite = np.isfinite(b)
    assert np.array_equal(a[~finite], b[~finite], equal_nan=True)
    info = ml_dtypes.finfo(fast.dtype)
    unit = float(info.eps) * np.maximum(
        scale[finite], float(info.smallest_subnormal) / float(info.eps)
    )
    return float((np.abs(a[finite] - b[finite]) / unit).max(initial=0.0))


def call(
    kernel: Kernel,
    param: np.ndarray,
    grad: np.ndarray,
    states: dict[str, np.ndarray],
    step: int,
    hyper: dict[str, Any],
    master: Optional[np.ndarray] = None,
) -> Any:
    extra = {"master": master} if master is not None else {}
    if kernel.name == "nadam":
        extra["mu_product"] = None
    return kernel.fast(param, grad, **states, step=step, **hyper, **extra)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@given(data=st.data())
def test_mixed_update_is_widen_step_round_and_matches_reference(
    kernel: Kernel, dtype: np.dtype[Any], data: st.DataObject
) -> None:
    hyper = data.draw(kernel.hyperparameters(), label="hyperparameters")
    with_master = data.draw(st.booleans(), label="master")
    size = data.draw(SIZES, label="size")
    shape = data.draw(shaped(size), label="shape")
    steps = data.draw(st.integers(1, 3), label="steps")
    first = data.draw(st.sampled_from([1, 1, 2, 1000]), label="first_step")
    big = BIG[dtype.name]
    param = data.draw(values(np.float32, shape, big), label="param").astype(dtype)
    needs = kernel.needs(hyper)
    states = {n: np.zeros(shape, np.float32) for n in needs}
    if first > 1:
        for n in needs:
            states[n][...] = np.abs(data.draw(values(np.float32, shape, big), label=n))
    master = param.astype(np.float32) if with_master else None

    # The twin: lrfast's float32 kernel on the widened arrays, rounded with NumPy's cast.
    twin_param, twin_states = param.copy(), {n: s.copy() for n, s in states.items()}
    twin_master = None if master is None else master.copy()
    worst = 0.0
    with np.errstate(all="ignore"):
        for t in range(first, first + steps):
            grad = data.draw(values(np.float32, shape, big), label=f"grad{t}").astype(dtype)
            # The NumPy reference, one step from the same arrays (a rounding that differs by one
            # 16-bit ulp would otherwise compound through weight decay).
            ref_param, ref_states = param.copy(), {n: s.copy() for n, s in states.items()}
            ref_master = None if master is None else master.copy()
            before = param.astype(np.float64) if master is None else master.astype(np.float64)

            call(kernel, param, grad, states, t, hyper, master)
            assert param.dtype == dtype

            work = twin_param.astype(np.float32) if twin_master is None else twin_master
            call(kernel, work, grad.astype(np.float32), twin_states, t, hyper)
            twin_param[...] = work.astype(dtype)
            assert same_bits(param, twin_param), "not widen, float32 step, round"
            for n in needs:
                assert same_bits(states[n], twin_states[n]), n
            if master is not None:
                assert same_bits(master, twin_master)  # type: ignore[arg-type]

            mu = {"mu_product": None} if kernel.name == "nadam" else {}
            kwargs = {**{n: ref_states[n] for n in needs}, "step": t, **hyper, **mu}
            ref.mixed_step(kernel.reference, ref_param, grad, master=ref_master, **kwargs)
            scale = np.abs(before) + np.abs(ref_param.astype(np.float64) - before)
            worst = max(worst, low_precision_error(param, ref_param, scale))
            for n in needs:
                err = error_in_eps(
                    states[n], ref_states[n], np.abs(ref_states[n]).astype(np.float64)
                )
                assert err <= TOLERANCE_EPS, n
            if master is not None:
                assert error_in_eps(master, ref_master, scale) <= TOLERANCE_EPS  # type: ignore[arg-type]
    note(f"worst parameter error {worst:.2f} ulp of {dtype.name}")
    # The float32 results agree within a few float32 roundings, so the 16-bit parameters agree
    # exactly or, when those roundings straddle a 16-bit rounding boundary, by one spacing.
    assert worst <= 1.0


def mixed_arrays(kernel: Kernel, dtype: Any, size: int, seed: int, master: bool) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    hyper = dict(DEFAULTS[kernel.name])
    needs = kernel.needs({"momentum": 0.0, "centered": False, "amsgrad": False, **hyper})
    param = rng.standard_normal(size).astype(dtype)
    return {
        "param": param,
        "grad": rng.standard_normal(size).astype(dtype),
        "states": {n: np.abs(rng.standard_normal(size)).astype(np.float32) for n in needs},
        "master": param.astype(np.float32) if master else None,
        "hyper": hyper,
    }


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_lists_of_mixed_tensors_match_one_call_each(kernel: Kernel, dtype: Any) -> None:
    sizes = [0, 1, 17, BLOCK + 1, 4096, 140_000, 3]
    together = [mixed_arrays(kernel, dtype, n, i, master=i % 2 == 0) for i, n in enumerate(sizes)]
    apart = [mixed_arrays(kernel, dtype, n, i, master=i % 2 == 0) for i, n in enumerate(sizes)]
    # One call takes masters for all tensors or for none: split into two calls.
    for with_master in (True, False):
        group = [a for a in together if (a["master"] is not None) == with_master]
        for t in (1, 2):
            kernel.fast(
                [a["param"] for a in group],
                [a["grad"] for a in group],
                **{n: [a["states"][n] for a in group] for n in group[0]["states"]},
                step=t,
                **group[0]["hyper"],
                **({"master": [a["master"] for a in group]} if with_master else {}),
            )
    for t in (1, 2):
        for a in apart:
            call(kernel, a["param"], a["grad"], a["states"], t, a["hyper"], a["master"])
    for a, b in zip(together, apart):
        assert same_bits(a["param"], b["param"])
        for n in a["states"]:
            assert same_bits(a["states"][n], b["states"][n])
        if a["master"] is not None:
            assert same_bits(a["master"], b["master"])


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_thread_counts_and_simd_levels_give_the_same_bits(dtype: Any) -> None:
    kernel = next(k for k in KERNELS if k.name == "adam")
    results = []
    for threads, level in [(1, "baseline"), (2, "best"), (3, "best"), (1, "best")]:
        lrfast._lrfast._set_simd_level(level)
        try:
            with lrfast.threads(threads):
                a = mixed_arrays(kernel, dtype, 300_001, 5, master=True)
                b = mixed_arrays(kernel, dtype, 300_001, 5, master=False)
                for t in (1, 2, 3):
                    call(kernel, a["param"], a["grad"], a["states"], t, a["hyper"], a["master"])
                    call(kernel, b["param"], b["grad"], b["states"], t, b["hyper"])
        finally:
            lrfast._lrfast._set_simd_level("best")
        results.append((a["param"], a["master"], b["param"], b["states"]["exp_avg_sq"]))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            assert same_bits(x, y)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_master_copy_keeps_steps_below_the_16_bit_spacing(dtype: Any) -> None:
    # 1e-4 per step is below half the spacing under 1.0 in both types (float16 2.4e-4,
    # bfloat16 2.0e-3); 30 steps (3e-3) exceed both spacings.
    param = np.ones(100, dtype)
    grad = np.ones(100, dtype)
    for t in range(1, 31):
        lrfast.sgd_step(param, grad, step=t, lr=1e-4)
    assert np.all(param == 1), "without a master copy the steps vanish"

    param = np.ones(100, dtype)
    master = param.astype(np.float32)
    for t in range(1, 31):
        lrfast.sgd_step(param, grad, step=t, lr=1e-4, master=master)
        assert same_bits(param, master.astype(dtype)), "param is the master's rounding"
    np.testing.assert_allclose(master, 1 - 30 * np.float32(1e-4), rtol=1e-6)
    assert np.all(param < 1)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_clipping_16_bit_gradients(dtype: Any) -> None:
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(n).astype(dtype) for n in (5, 3000, 200_000)]
    wide = [g.astype(np.float64) for g in grads]
    expected = float(np.sqrt(sum(float(np.sum(w * w)) for w in wide)))
    assert lrfast.grad_norm(grads) == pytest.approx(expected, rel=1e-12)
    assert lrfast.grad_norm(grads, norm_type=np.inf) == max(float(np.abs(w).max()) for w in wide)

    clipped = [g.copy() for g in grads]
    assert lrfast.clip_grad_norm(clipped, 1.0) == pytest.approx(expected, rel=1e-12)
    coef = np.float32(1.0 / (expected + 1e-6))
    for g, c in zip(grads, clipped):
        assert same_bits(c, (g.astype(np.float32) * coef).astype(dtype))

    clamped = [g.copy() for g in grads]
    lrfast.clip_grad_value(clamped, 0.5)
    for g, c in zip(grads, clamped):
        assert same_bits(c, np.clip(g.astype(np.float32), -0.5, 0.5).astype(dtype))


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_fused_clipping_matches_clip_then_step(dtype: Any) -> None:
    rng = np.random.default_rng(4)
    param = rng.standard_normal(5000).astype(dtype)
    grad = (10 * rng.standard_normal(5000)).astype(dtype)
    fused = lrfast.Adam([param.copy()], lr=1e-2, max_grad_norm=1.0, master_weights=True)
    plain = lrfast.Adam([param.copy()], lr=1e-2, master_weights=True)
    for _ in range(3):
        fused.step([grad])
        clipped = grad.copy()
        lrfast.clip_grad_norm(clipped, 1.0)
        plain.step([clipped])
    # Clipping in place rounds the scaled gradient to 16 bits; the fused path keeps it in float32.
    np.testing.assert_allclose(
        fused.params[0].astype(np.float32), plain.params[0].astype(np.float32), atol=2e-3
    )


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("master_weights", [False, True])
def test_optimizer_classes_keep_float32_state_and_master(dtype: Any, master_weights: bool) -> None:
    rng = np.random.default_rng(6)
    low = [rng.standard_normal(n).astype(dtype) for n in (10, 3000)]
    full = rng.standard_normal(7).astype(np.float32)
    params = [low[0], full, low[1]]
    opt = lrfast.AdamW(params, lr=1e-2, master_weights=master_weights)
    twins = [p.copy() for p in params]
    masters = [p.astype(np.float32) if master_weights and p.dtype == dtype else None for p in twins]
    states = [{n: np.zeros(p.shape, np.float32) for n in ("exp_avg", "exp_avg_sq")} for p in twins]
    for t in range(1, 4):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        opt.step(grads)
        for p, g, s, m in zip(twins, grads, states, masters):
            lrfast.adamw_step(
                p, g, **s, step=t, lr=1e-2, **({"master": m} if m is not None else {})
            )
    for i, (p, twin) in enumerate(zip(params, twins)):
        assert same_bits(p, twin)
        assert all(v.dtype == np.float32 for v in opt.state[i].values())
        assert ("master" in opt.state[i]) == (master_weights and p.dtype == dtype)
    if master_weights:
        assert same_bits(opt.state[0]["master"], masters[0])  # type: ignore[arg-type]

    # A checkpoint round-trips the float32 state and the master copy, and resumes bit-exactly.
    saved = opt.state_dict()
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    resumed = lrfast.AdamW([p.copy() for p in params], lr=1e-2, master_weights=master_weights)
    resumed.load_state_dict(saved)
    opt.step(grads)
    resumed.step(grads)
    for a, b in zip(opt.params, resumed.params):
        assert same_bits(a, b)
    wrong = {
        **saved,
        "state": [{k: v.astype(np.float64) for k, v in s.items()} for s in saved["state"]],
    }
    with pytest.raises(ValueError, match="float32"):
        resumed.load_state_dict(wrong)


def test_state_like_gives_float32_state_for_16_bit_parameters() -> None:
    for dtype in LOW:
        small = np.ones(10, dtype)
        assert lrfast.state_like(small).dtype == np.float32
        large = np.ones(1 << 20, dtype)
        state = lrfast.state_like(large, 1, 0.5)
        assert state.dtype == np.float32 and state.shape == large.shape and np.all(state == 0.5)
        assert lrfast.state_like(large, dtype=dtype).dtype == dtype
    assert lrfast.state_like(np.ones(3)).dtype == np.float64
    assert lrfast.is_low_precision(np.float16) and lrfast.is_low_precision(ml_dtypes.bfloat16)
    assert not lrfast.is_low_precision(np.float32)


def test_hypergradient_optimizers_refuse_16_bit_parameters() -> None:
    for cls in (lrfast.SGDHD, lrfast.AdamHD):
        with pytest.raises(TypeError, match="float16"):
            cls([np.ones(4, np.float16)])
