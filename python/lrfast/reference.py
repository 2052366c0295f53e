"""Plain NumPy implementations of every lrfast kernel, written to be read.

Each function has the same signature as its fast twin in :mod:`lrfast` and updates the arrays in
place, but it is written straight from the formulas of PyTorch's ``torch.optim`` (single-tensor
path), one NumPy expression per line of the math. The tests compare the Rust kernels with these
functions; users can read them to see exactly what a kernel does.

Arithmetic stays in the arrays' dtype: Python floats combined with a float32 array give float32
(NumPy's promotion rules), and the per-step scalars (bias corrections, powers ``beta**t``) are
Python floats, that is float64, as in PyTorch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

__all__ = [
    "sgd_step",
    "adagrad_step",
    "rmsprop_step",
    "adadelta_step",
    "adam_step",
    "adamw_step",
    "adamax_step",
    "nadam_step",
    "radam_step",
    "mixed_step",
    "dynamic_map",
    "quantize_blocks",
    "dequantize_blocks",
    "quantized_step",
]


def _effective_grad(
    param: np.ndarray, grad: np.ndarray, weight_decay: float, maximize: bool, grad_scale: float
) -> np.ndarray:
    """The gradient an update uses: scaled by ``grad_scale`` (clipping), negated to maximize,
    plus L2 weight decay."""
    g = grad * (-grad_scale if maximize else grad_scale)
    if weight_decay != 0:
        g = g + weight_decay * param
    return g


def _decayed_grad(
    param: np.ndarray,
    grad: np.ndarray,
    lr: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    grad_scale: float,
) -> np.ndarray:
    """Weight decay as Adam's family applies it: decoupled (AdamW's), the parameter shrunk by
    ``1 − lr·weight_decay`` in place first; else L2, added to the gradient. Returns the
    gradient the update uses."""
    if decoupled:
        param[...] = param * (1 - lr * weight_decay)
        return _effective_grad(param, grad, 0.0, maximize, grad_scale)
    return _effective_grad(param, grad, weight_decay, maximize, grad_scale)


def _update_moments(
    exp_avg: np.ndarray, exp_avg_sq: np.ndarray, g: np.ndarray, beta1: float, beta2: float
) -> None:
    """``m ← β1·m + (1 − β1)·g`` and ``v ← β2·v + (1 − β2)·g²``, in place."""
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * g
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * g * g


def sgd_step(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buffer: Optional[np.ndarray] = None,
    *,
    step: int,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: float = 1.0,
) -> None:
    g = _effective_grad(param, grad, weight_decay, maximize, grad_scale)
    if momentum != 0:
        assert momentum_buffer is not None
        if step == 1:
            momentum_buffer[...] = g
        else:
            momentum_buffer[...] = momentum * momentum_buffer + (1 - dampening) * g
        direction = g + momentum * momentum_buffer if nesterov else momentum_buffer
    else:
        direction = g
    param[...] = param - lr * direction


def adagrad_step(
    param: np.ndarray,
    grad: np.ndarray,
    state_sum: np.ndarray,
    *,
    step: int,
    lr: float = 0.01,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    grad_scale: float = 1.0,
) -> None:
    g = _effective_grad(param, grad, weight_decay, maximize, grad_scale)
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum[...] = state_sum + g * g
    param[...] = param - clr * g / (np.sqrt(state_sum) + eps)


def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: Optional[np.ndarray] = None,
    grad_avg: Optional[np.ndarray] = None,
    *,
    step: int,
    lr: float = 0.01,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
) -> None:
    g = _effective_grad(param, grad, weight_decay, maximize, grad_scale)
    square_avg[...] = alpha * square_avg + (1 - alpha) * g * g
    if centered:
        assert grad_avg is not None
        grad_avg[...] = alpha * grad_avg + (1 - alpha) * g
        den = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        den = np.sqrt(square_avg) + eps
    if momentum > 0:
        assert momentum_buffer is not None
        momentum_buffer[...] = momentum * momentum_buffer + g / den
        param[...] = param - lr * momentum_buffer
    else:
        param[...] = param - lr * g / den


def adadelta_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    acc_delta: np.ndarray,
    *,
    step: int,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: float = 1.0,
) -> None:
    g = _effective_grad(param, grad, weight_decay, maximize, grad_scale)
    square_avg[...] = rho * square_avg + (1 - rho) * g * g
    delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * g
    acc_delta[...] = rho * acc_delta + (1 - rho) * delta * delta
    param[...] = param - lr * delta


def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: Optional[np.ndarray] = None,
    *,
    step: int,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    decoupled: bool = False,
) -> None:
    """Adam; with ``decoupled`` (AdamW) the weight decay shrinks the parameter instead."""
    beta1, beta2 = betas
    g = _decayed_grad(param, grad, lr, weight_decay, decoupled, maximize, grad_scale)
    _update_moments(exp_avg, exp_avg_sq, g, beta1, beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    second = exp_avg_sq
    if amsgrad:
        assert max_exp_avg_sq is not None
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)  # NaN-propagating
        second = max_exp_avg_sq
    denom = np.sqrt(second) / math.sqrt(bias_correction2) + eps
    param[...] = param - (lr / bias_correction1) * exp_avg / denom


def adamw_step(*args: Any, weight_decay: float = 0.01, **kwargs: Any) -> None:
    """AdamW: :func:`adam_step` with decoupled weight decay, 0.01 by default."""
    adam_step(*args, weight_decay=weight_decay, decoupled=True, **kwargs)


def adamax_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_inf: np.ndarray,
    *,
    step: int,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: float = 1.0,
) -> None:
    beta1, beta2 = betas
    g = _effective_grad(param, grad, weight_decay, maximize, grad_scale)
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * g
    exp_inf[...] = np.maximum(beta2 * exp_inf, np.abs(g) + eps)  # NaN-propagating
    param[...] = param - (lr / (1 - beta1**step)) * exp_avg / exp_inf


def nadam_mu(step: int, beta1: float, momentum_decay: float) -> float:
    """NAdam's momentum coefficient of update ``step``."""
    return beta1 * (1.0 - 0.5 * math.pow(0.96, step * momentum_decay))


def nadam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: int,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    mu_product: Optional[float] = None,
) -> float:
    beta1, beta2 = betas
    if mu_product is None:  # the product of the mu's of the updates before this one
        mu_product = 1.0
        for t in range(1, step):
            mu_product *= nadam_mu(t, beta1, momentum_decay)
            if mu_product == 0.0:  # underflowed: it stays zero
                break
    g = _decayed_grad(param, grad, lr, weight_decay, decoupled_weight_decay, maximize, grad_scale)
    mu = nadam_mu(step, beta1, momentum_decay)
    mu_next = nadam_mu(step + 1, beta1, momentum_decay)
    mu_product = mu_product * mu
    _update_moments(exp_avg, exp_avg_sq, g, beta1, beta2)
    denom = np.sqrt(exp_avg_sq / (1 - beta2**step)) + eps
    param[...] = param - lr * (1 - mu) / (1 - mu_product) * g / denom
    param[...] = param - lr * mu_next / (1 - mu_product * mu_next) * exp_avg / denom
    return float(mu_product)


def radam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: int,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
) -> None:
    beta1, beta2 = betas
    g = _decayed_grad(param, grad, lr, weight_decay, decoupled_weight_decay, maximize, grad_scale)
    _update_moments(exp_avg, exp_avg_sq, g, beta1, beta2)
    bias_correction2 = 1 - beta2**step
    m_hat = exp_avg / (1 - beta1**step)
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2**step / bias_correction2
    if rho_t > 5:
        rect = math.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        adaptive_lr = math.sqrt(bias_correction2) / (np.sqrt(exp_avg_sq) + eps)
        param[...] = param - m_hat * lr * adaptive_lr * rect
    else:
        param[...] = param - lr * m_hat


def mixed_step(
    step_fn: Callable[..., Any],
    param: np.ndarray,
    grad: np.ndarray,
    *states: Optional[np.ndarray],
    master: Optional[np.ndarray] = None,
    **hyperparameters: Any,
) -> Any:
    """A mixed-precision update with the float32 reference ``step_fn`` (one of the above).

    ``param`` and ``grad`` are float16 or bfloat16, ``states`` float32: the gradient and the
    parameter (or its float32 ``master`` copy) are widened to float32, updated by ``step_fn``,
    and the new value is rounded back into ``param`` (to nearest, ties to even: NumPy's cast).
    """
    work = param.astype(np.float32) if master is None else master
    result = step_fn(work, grad.astype(np.float32), *states, **hyperparameters)
    param[...] = work.astype(param.dtype)
    return result


# -- 8-bit state (block-wise quantization, Dettmers et al. 2022) --------------------------------

QUANTIZATION_BLOCK = 256


def dynamic_map(signed: bool) -> np.ndarray:
    """The paper's dynamic map for 8 bits, 256 float32 entries ascending: for each decade
    ``i = 0..6``, the midpoints of ``linspace(0.1, 1, n + 1)`` scaled by ``10**(i - 6)``, with
    ``n = 2**i`` (and their negatives) when signed, ``n = 2**(i + 1)`` when not; then 0 and 1.
    Computed in float64, rounded to float32."""
    entries: list[float] = []
    for decade in range(7):
        items = 2**decade if signed else 2 ** (decade + 1)
        points = np.linspace(0.1, 1.0, items + 1)
        means = (points[:-1] + points[1:]) / 2
        scaled = (1.0 / float(10 ** (6 - decade))) * means
        entries += scaled.tolist()
        if signed:
            entries += (-scaled).tolist()
    entries += [0.0, 1.0]
    return np.sort(np.array(entries).astype(np.float32))


def _blocks(flat: np.ndarray) -> np.ndarray:
    """``flat`` padded with zeros to whole blocks, one block per row."""
    rows = -(-flat.size // QUANTIZATION_BLOCK)
    padded = np.zeros(rows * QUANTIZATION_BLOCK, flat.dtype)
    padded[: flat.size] = flat
    return padded.reshape(rows, QUANTIZATION_BLOCK)


def quantize_blocks(values: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (float32) as 8-bit codes (its shape) and one float32 scale per block of 256.

    A block's scale is its largest magnitude (NaN if it holds a NaN or ±∞; 0 if it is below
    float32's smallest normal number, 1.2e-38; either block stores the code of 0, as a block of
    zeros does). Each value's code is the index of the
    entry nearest to ``value · (1/absmax)`` (``1/absmax`` rounded to float32; a tie goes to the
    lower entry): the number of midpoints between entries, taken in float64, below it. In the
    unsigned map a positive value gets at least the smallest positive entry, never 0."""
    entries = dynamic_map(signed)
    midpoints = (entries[:-1].astype(np.float64) + entries[1:].astype(np.float64)) / 2
    zero = int(np.flatnonzero(entries == 0.0)[0])
    blocks = _blocks(np.asarray(values, np.float32).ravel())
    with np.errstate(invalid="ignore"):
        absmax = np.abs(blocks).max(axis=1, initial=np.float32(0))
    absmax[absmax < np.finfo(np.float32).tiny] = 0  # a reciprocal that would overflow
    absmax[~np.isfinite(absmax)] = np.nan
    usable = absmax > 0
    inverse = np.ones_like(absmax)
    inverse[usable] = np.float32(1) / absmax[usable]
    normalized = blocks * inverse[:, None]
    codes = np.searchsorted(midpoints, normalized.astype(np.float64), side="left")
    if not signed:
        # A positive second moment never becomes 0 (the update divides by it): it gets at
        # least the smallest positive entry.
        codes[(codes == zero) & (normalized > 0)] = zero + 1
    codes[~usable] = zero
    flat_codes = codes.astype(np.uint8).ravel()[: np.size(values)]
    return flat_codes.reshape(np.shape(values)), absmax.astype(np.float32)


def dequantize_blocks(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    """The float32 values of ``codes`` and ``absmax``: ``map[code] · absmax`` per block."""
    entries = dynamic_map(signed)
    blocks = _blocks(np.asarray(codes).ravel())
    values: np.ndarray = entries[blocks] * np.asarray(absmax, np.float32)[:, None]
    return values.ravel()[: np.size(codes)].reshape(np.shape(codes))


def quantized_step(
    step_fn: Callable[..., Any],
    param: np.ndarray,
    grad: np.ndarray,
    *states: Any,
    **hyperparameters: Any,
) -> Any:
    """An update with 8-bit states (``lrfast.QuantizedState``, or None for an unused slot)
    through the float32 update ``step_fn``: each state is decoded, the update runs on the
    float32 values (and the parameter, with the float32 state before rounding), and each
    state is encoded again with the scales of its new values. Every update is elementwise, so
    this whole-array version gives what the fused kernel gives block by block."""
    decoded = [
        None if s is None else dequantize_blocks(s.codes, s.absmax, s.signed) for s in states
    ]
    result = step_fn(param, grad, *decoded, **hyperparameters)
    for state, values in zip(states, decoded):
        if state is not None and values is not None:
            state.codes[...], state.absmax[...] = quantize_blocks(values, state.signed)
    return result
