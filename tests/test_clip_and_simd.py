"""Gradient clipping against a NumPy reference, and SIMD levels giving identical bits."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lrfast
from kernels import DEFAULTS, KERNELS, Kernel
from lrfast import _lrfast


def grads(dtype: type = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.standard_normal(n).astype(dtype) for n in (3, 1000, 200_001, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
def test_clip_grad_norm_matches_numpy(dtype: type, norm_type: float) -> None:
    gs = grads(dtype)
    flat = np.concatenate([g.astype(np.float64) for g in gs])
    expected = (
        np.abs(flat).max()
        if norm_type == math.inf
        else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    )
    max_norm = float(expected) / 4
    before = [g.copy() for g in gs]
    norm = lrfast.clip_grad_norm(gs, max_norm, norm_type=norm_type)
    assert norm == pytest.approx(expected, rel=1e-12)
    coef = max_norm / (norm + 1e-6)  # the scaling, given the norm lrfast computed
    for g, b in zip(gs, before):
        np.testing.assert_array_equal(g, b * dtype(coef))
    # Already small enough: nothing changes.
    again = [g.copy() for g in gs]
    lrfast.clip_grad_norm(gs, 1e9, norm_type=norm_type)
    for g, a in zip(gs, again):
        np.testing.assert_array_equal(g, a)


def test_clip_grad_norm_is_the_same_with_any_thread_count() -> None:
    norms = []
    for count in (1, 2, 3):
        with lrfast.threads(count):
            norms.append(lrfast.clip_grad_norm(grads(), 1e9))
    assert norms[0] == norms[1] == norms[2]


def test_clip_grad_norm_nonfinite() -> None:
    gs = grads()
    gs[1][7] = np.inf
    before = [g.copy() for g in gs]
    with pytest.raises(RuntimeError, match="non-finite"):
        lrfast.clip_grad_norm(gs, 1.0, error_if_nonfinite=True)
    for g, b in zip(gs, before):
        np.testing.assert_array_equal(g, b)
    assert lrfast.clip_grad_norm(gs, 1.0) == math.inf


def test_clip_grad_norm_bad_input() -> None:
    g = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="max_norm"):
        lrfast.clip_grad_norm([g], -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        lrfast.clip_grad_norm([g], 1.0, norm_type=0.0)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        lrfast.clip_grad_norm([g, g], 1.0)
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        lrfast.clip_grad_norm([g, np.ones(4)], 1.0)
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        lrfast.clip_grad_norm(ro, 1.0)
    np.testing.assert_array_equal(g, 1.0)


def test_clip_grad_value_keeps_nan() -> None:
    g = np.array([-5.0, -0.5, np.nan, 0.5, 5.0], np.float32)
    lrfast.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g, np.array([-1.0, -0.5, np.nan, 0.5, 1.0], np.float32))
    assert lrfast.clip_grad_norm([], 1.0) == 0.0


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_simd_level_gives_the_same_bits(kernel: Kernel, dtype: type) -> None:
    best = _lrfast._set_simd_level("best")
    results = []
    try:
        for level in ("baseline", "avx2", "avx512"):
            used = _lrfast._set_simd_level(level)
            rng = np.random.default_rng(9)
            hyper = DEFAULTS[kernel.name]
            needs = kernel.needs({"momentum": 0.0, "centered": False, "amsgrad": False, **hyper})
            p = rng.standard_normal(1003).astype(dtype)
            s = {n: np.abs(rng.standard_normal(1003)).astype(dtype) for n in needs}
            for t in (1, 2, 3):
                g = rng.standard_normal(1003).astype(dtype)
                kernel.fast(p, g, **s, step=t, **hyper)
            results.append((used, p.tobytes()))
    finally:
        _lrfast._set_simd_level(best)
    assert lrfast.simd_level() == best
    assert all(r[1] == results[0][1] for r in results), [r[0] for r in results]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_fused_grad_scale_equals_clipping_then_updating(kernel: Kernel) -> None:
    rng = np.random.default_rng(3)
    hyper = DEFAULTS[kernel.name]
    needs = kernel.needs({"momentum": 0.0, "centered": False, "amsgrad": False, **hyper})
    p0 = rng.standard_normal(301).astype(np.float32)
    fused_p, clipped_p = p0.copy(), p0.copy()
    fused_s = {n: np.zeros_like(p0) for n in needs}
    clipped_s = {n: np.zeros_like(p0) for n in needs}
    for t in (1, 2, 3):
        g = (rng.standard_normal(301) * 10).astype(np.float32)
        g.flags.writeable = False  # the fused path only reads the gradient
        norm = lrfast.grad_norm(g)
        scale = min(1.0, 2.0 / (norm + 1e-6))
        kernel.fast(fused_p, g, **fused_s, step=t, grad_scale=scale, **hyper)
        g_copy = g.copy()
        assert lrfast.clip_grad_norm(g_copy, 2.0) == norm
        kernel.fast(clipped_p, g_copy, **clipped_s, step=t, **hyper)
    assert fused_p.tobytes() == clipped_p.tobytes()


def test_grad_norm_reads_only_and_checks_its_input() -> None:
    gs = grads()
    for g in gs:
        g.flags.writeable = False
    assert lrfast.grad_norm(gs) == lrfast.clip_grad_norm([g.copy() for g in gs], 1e300)
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        lrfast.grad_norm([gs[0], gs[1].astype(np.float64)])
    with pytest.raises(ValueError, match="norm_type"):
        lrfast.grad_norm(gs, norm_type=-1.0)
    with pytest.raises(ValueError, match="grad_scale"):
        lrfast.sgd_step(np.zeros(3), np.zeros(3), step=1, lr=0.1, grad_scale=-1.0)
