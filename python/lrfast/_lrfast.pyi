"""Type stubs for lrfast's compiled extension. Every ``*_step`` updates its arrays in place.

Every kernel also takes ``grad_scale`` (default 1): a factor fused into the update,
``g ← grad_scale·g`` before anything else, which clips gradients to a global norm without
writing them (see ``grad_norm``); the result is bit-identical to clipping in place and then
updating.

All arrays of one call share shape and dtype (float32 or float64) and are C-contiguous; every
array but ``grad`` must be writeable, and no two may share memory.

Mixed precision: ``param`` and ``grad`` may instead be float16, or bfloat16 (``ml_dtypes``), with
float32 state arrays. The update widens them exactly, computes in float32 (the float32 kernel,
bit for bit) and rounds the new parameter to nearest-even. ``master``, a float32 array (or list)
shaped like ``param``, is the parameter's master copy: the update reads it instead of ``param``
and writes both, so steps smaller than the 16-bit spacing accumulate instead of vanishing.

``step`` is the 1-based number of this update. Bad input raises ``TypeError`` / ``ValueError``
naming the argument, before any array is written.

``lr`` is a float or a schedule (``lrfast.schedules``): a schedule is evaluated inside the same
call at scheduler step ``step - 1``, so update 1 uses ``schedule(0)``.
"""

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

# One array, or a list of arrays updated together (params, grads and states as equal-length lists).
_Array = Union[npt.NDArray[np.floating], Sequence[npt.NDArray[np.floating]]]

_LearningRate = Union[float, "Schedule"]

__all__ = [
    "Schedule",
    "adadelta_step",
    "adagrad_step",
    "adam_step",
    "adamax_step",
    "adamw_step",
    "nadam_step",
    "radam_step",
    "rmsprop_step",
    "sgd_step",
    "simd_level",
    "set_num_threads",
    "get_num_threads",
    "clip_grad_norm",
    "clip_grad_value",
    "grad_norm",
    "_memory_floor_step",
    "_set_simd_level",
]

def sgd_step(
    param: _Array,
    grad: _Array,
    momentum_buffer: Optional[_Array] = None,
    *,
    step: int,
    lr: _LearningRate,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """SGD: ``b ← g`` (t = 1) or ``μ·b + (1 − dampening)·g``; ``d = g + μ·b`` (Nesterov) or
    ``b``; ``p ← p − lr·d``. ``momentum_buffer`` is required when ``momentum > 0``."""

def adagrad_step(
    param: _Array,
    grad: _Array,
    state_sum: _Array,
    *,
    step: int,
    lr: _LearningRate = 0.01,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """Adagrad: ``clr = lr/(1 + (t − 1)·lr_decay)``, ``s ← s + g²``,
    ``p ← p − clr·g/(√s + eps)``."""

def rmsprop_step(
    param: _Array,
    grad: _Array,
    square_avg: _Array,
    momentum_buffer: Optional[_Array] = None,
    grad_avg: Optional[_Array] = None,
    *,
    step: int,
    lr: _LearningRate = 0.01,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """RMSprop: ``v ← α·v + (1 − α)·g²``; centered ``a ← α·a + (1 − α)·g``, ``den = √(v − a²) +
    eps`` else ``√v + eps``; momentum ``b ← μ·b + g/den``, ``p ← p − lr·b``; else
    ``p ← p − lr·g/den``."""

def adadelta_step(
    param: _Array,
    grad: _Array,
    square_avg: _Array,
    acc_delta: _Array,
    *,
    step: int,
    lr: _LearningRate = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """Adadelta: ``v ← ρ·v + (1 − ρ)·g²``, ``Δ = √(u + eps)/√(v + eps)·g``,
    ``u ← ρ·u + (1 − ρ)·Δ²``, ``p ← p − lr·Δ``."""

def adam_step(
    param: _Array,
    grad: _Array,
    exp_avg: _Array,
    exp_avg_sq: _Array,
    max_exp_avg_sq: Optional[_Array] = None,
    *,
    step: int,
    lr: _LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """Adam: ``m ← β1·m + (1 − β1)·g``, ``v ← β2·v + (1 − β2)·g²``,
    ``p ← p − (lr/bc1)·m/(√v/√bc2 + eps)`` with ``bc_i = 1 − β_i^t``. ``amsgrad`` uses
    ``max_exp_avg_sq ← max(max_exp_avg_sq, v)`` (NaN kept) in place of ``v``.

    Keras puts ``eps`` differently (``√bc2/bc1 · m/(√v + eps)``, default ``epsilon=1e-7``)."""

def adamw_step(
    param: _Array,
    grad: _Array,
    exp_avg: _Array,
    exp_avg_sq: _Array,
    max_exp_avg_sq: Optional[_Array] = None,
    *,
    step: int,
    lr: _LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    amsgrad: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """AdamW: ``p ← p·(1 − lr·weight_decay)``, then Adam's update without an L2 term."""

def adamax_step(
    param: _Array,
    grad: _Array,
    exp_avg: _Array,
    exp_inf: _Array,
    *,
    step: int,
    lr: _LearningRate = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """Adamax: ``m ← β1·m + (1 − β1)·g``, ``u ← max(β2·u, |g| + eps)`` (NaN kept),
    ``p ← p − (lr/(1 − β1^t))·m/u``."""

def nadam_step(
    param: _Array,
    grad: _Array,
    exp_avg: _Array,
    exp_avg_sq: _Array,
    *,
    step: int,
    lr: _LearningRate = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    mu_product: Optional[float] = None,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> float:
    """NAdam (PyTorch's). ``mu_product`` is the product of the momentum coefficients of the
    updates before this one (computed from scratch when None); returns it after this update,
    to pass to the next call. Kept in float64 (PyTorch keeps it in float32)."""

def radam_step(
    param: _Array,
    grad: _Array,
    exp_avg: _Array,
    exp_avg_sq: _Array,
    *,
    step: int,
    lr: _LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    grad_scale: float = 1.0,
    master: Optional[_Array] = None,
) -> None:
    """RAdam: Adam's moments with the variance rectification of Liu et al. (2020)."""

def simd_level() -> str:
    """The instruction set the kernels run with: "avx512", "avx2", "sse2", "neon" or "scalar"."""

def set_num_threads(threads: int) -> None:
    """Sets how many threads the kernels may use (1 = the calling thread only)."""

def get_num_threads() -> int:
    """How many threads the kernels may use (``LRFAST_NUM_THREADS``, else the number of cores)."""

def _memory_floor_step(
    param: _Array, grad: _Array, *states: _Array, master: Optional[_Array] = None
) -> None:
    """Benchmark baseline: ``param += grad; state += grad`` for each state, one fused pass."""

def _set_simd_level(name: str) -> str:
    """Limits the SIMD level (tests and benchmarks); returns the level now in force."""

def clip_grad_norm(
    grads: _Array, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Scales ``grads`` in place so that their global norm is at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``: factor ``max_norm/(norm + 1e-6)`` when below 1).
    Returns the norm before clipping, computed in float64 and the same with any thread count."""

def clip_grad_value(grads: _Array, clip_value: float) -> None:
    """Clamps every element of ``grads`` to ``[-clip_value, clip_value]`` in place (NaN kept)."""

def grad_norm(grads: _Array, norm_type: float = 2.0) -> float:
    """The global ``norm_type``-norm of ``grads`` (only read), as ``clip_grad_norm`` computes
    it: in float64, the same with any thread count. With ``max_norm``,
    ``grad_scale = min(1, max_norm / (norm + 1e-6))`` fuses the clipping into a kernel."""

@disjoint_base
class Schedule:
    """Base class of ``lrfast.schedules.Schedule``: a schedule held in Rust."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> Schedule: ...
    def _build(self, kind: str, params: dict[str, Any]) -> None:
        """Builds the Rust schedule of class ``kind`` from its parameters, once."""
    def __call__(self, step: int) -> float:
        """The rate at scheduler step ``step`` (from 0)."""
    def momentum(self, step: int) -> Optional[float]:
        """The momentum a cycling schedule pairs with its rate at ``step``, else None."""
    def _evaluate(self, steps: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
        """The rates at every step of a 1-d uint64 array."""
