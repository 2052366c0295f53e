"""Property tests: every kernel against the plain NumPy reference, over several steps."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, note
from hypothesis.extra import numpy as hnp

from kernels import KERNELS, Kernel

# Sizes around the SIMD widths (4, 8, 16 lanes), odd sizes, and sizes around the point where the
# kernels split the work over threads (131,072 elements).
SIZES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 129]),
    st.integers(0, 300),
    st.sampled_from([131_071, 131_072, 131_073, 300_001]),
)

# Tolerance, in units of the dtype's machine epsilon, relative to the size of the values involved.
# The kernels and the reference compute the same formulas in the same precision but not always in
# the same order of operations (and the reference rounds the intermediate `lr*...` products
# differently), so each step may differ by a few roundings; over several steps these compound
# through the state. Measured worst cases are far below this bound (see the README).
TOLERANCE_EPS = 64


def shaped(size: int) -> st.SearchStrategy[tuple[int, ...]]:
    if size == 1:
        return st.sampled_from([(), (1,), (1, 1)])
    return st.sampled_from([(size,), (1, size)])


def values(dtype: Any, shape: tuple[int, ...], big: float) -> st.SearchStrategy[np.ndarray]:
    """Finite values with mixed magnitudes: zeros, tiny, ordinary and large numbers.

    Small arrays are drawn element by element, so hypothesis can shrink them; large ones come from
    a seeded generator with the same mix of magnitudes (drawing 70,000 elements one by one would
    take minutes).
    """
    size = int(np.prod(shape))
    if size > 64:
        return st.integers(0, 2**32 - 1).map(lambda seed: _mixed(seed, dtype, shape, big))
    magnitude = st.one_of(
        st.just(0.0),
        st.floats(-1.0, 1.0),
        st.floats(-big, big),
        st.sampled_from([1e-12, -1e-12, 1e-6, -3e-7, big, -big]),
    )
    return hnp.arrays(dtype, shape, elements=magnitude.map(lambda x: float(dtype(x))))


def _mixed(seed: int, dtype: Any, shape: tuple[int, ...], big: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    exponent = rng.uniform(-12, np.log10(big), size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    out = sign * 10.0**exponent
    out[rng.random(shape) < 0.05] = 0.0
    return out.astype(dtype)


def error_in_eps(fast: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> float:
    """max |fast - ref| / (eps * scale), elementwise scale; NaN/Inf must agree exactly."""
    assert np.array_equal(np.isnan(fast), np.isnan(ref)), "NaN in different places"
    finite = np.isfinite(ref)
    assert np.array_equal(fast[~finite], ref[~finite], equal_nan=True)
    if not finite.any():
        return 0.0
    eps = np.finfo(ref.dtype).eps
    err = np.abs(fast[finite].astype(np.float64) - ref[finite]) / (
        eps * np.maximum(scale[finite], np.finfo(ref.dtype).tiny)
    )
    return float(err.max())


WORST: dict[tuple[str, str], float] = {}


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@given(data=st.data())
def test_kernel_matches_reference(kernel: Kernel, dtype: Any, data: st.DataObject) -> None:
    hyper = data.draw(kernel.hyperparameters(), label="hyperparameters")
    size = data.draw(SIZES, label="size")
    shape = data.draw(shaped(size), label="shape")
    steps = data.draw(st.integers(1, 4), label="steps")
    first_step = data.draw(st.sampled_from([1, 1, 2, 1000, 10**9]), label="first_step")
    big = 1e6 if dtype == np.float32 else 1e12
    param0 = data.draw(values(dtype, shape, big), label="param")
    needs = kernel.needs(hyper)

    fast_p, ref_p = param0.copy(), param0.copy()
    fast_s = {n: np.zeros_like(param0) for n in needs}
    ref_s = {n: np.zeros_like(param0) for n in needs}
    if first_step > 1:  # resume mid-run: start the state from plausible non-zero values
        for n in needs:
            start = np.abs(data.draw(values(dtype, shape, big), label=n))
            fast_s[n][...] = start
            ref_s[n][...] = start
    # NAdam's running product: computed from scratch by both (None) for a run from the start,
    # given when resuming late (a product over 10**9 steps is not something to recompute).
    mu_fast = mu_ref = None if first_step < 1000 else data.draw(st.floats(0.0, 1.0), label="mu")
    # 0/0 and overflow are legitimate (eps = 0 with a zero gradient gives NaN, as in PyTorch);
    # the comparison below requires NaN and Inf in the same places.
    # The scale of the parameter's rounding errors: its start plus every step's change (two steps
    # that cancel leave a small parameter that carries the rounding of the large steps).
    scale = np.abs(param0).astype(np.float64)
    with np.errstate(all="ignore"):
        for t in range(first_step, first_step + steps):
            before = ref_p.astype(np.float64)
            grad = data.draw(values(dtype, shape, big), label=f"grad{t}")
            if kernel.name == "nadam":
                mu_fast = kernel.fast(fast_p, grad, **fast_s, step=t, **hyper, mu_product=mu_fast)
                mu_ref = kernel.reference(ref_p, grad, **ref_s, step=t, **hyper, mu_product=mu_ref)
                assert mu_fast == pytest.approx(mu_ref, rel=1e-14, abs=1e-300)
            else:
                assert kernel.fast(fast_p, grad, **fast_s, step=t, **hyper) is None
                kernel.reference(ref_p, grad, **ref_s, step=t, **hyper)
            assert fast_p.dtype == dtype
            scale += np.abs(ref_p - before)

    with np.errstate(all="ignore"):
        worst = error_in_eps(fast_p, ref_p, scale)
    for n in needs:
        worst = max(worst, error_in_eps(fast_s[n], ref_s[n], np.abs(ref_s[n]).astype(np.float64)))
    note(f"worst error {worst:.2f} eps")
    key = (kernel.name, np.dtype(dtype).name)
    WORST[key] = max(WORST.get(key, 0.0), worst)
    assert worst <= TOLERANCE_EPS
