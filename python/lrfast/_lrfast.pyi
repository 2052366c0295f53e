"""Type stubs for lrfast's compiled extension. ``step`` (behind every ``lrfast.*_step``)
updates its arrays in place.

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
    "__version__",
    "QUANTIZATION_BLOCK",
    "step",
    "optimizer_specs",
    "check_hyperparameter",
    "first_overlap",
    "quantize_blocks",
    "dequantize_blocks",
    "code_map",
    "torch_step",
    "simd_level",
    "set_num_threads",
    "get_num_threads",
    "clip_grad_norm",
    "clip_grad_value",
    "grad_norm",
    "_memory_floor_step",
    "_set_simd_level",
]

__version__: str
QUANTIZATION_BLOCK: int
"""Values per block of an 8-bit state (each block has its own scale)."""

def step(
    name: str,
    param: _Array,
    grad: _Array,
    states: tuple[Any, ...],
    master: Optional[_Array],
    step: int,
    lr: _LearningRate,
    hyperparameters: tuple[Any, ...],
    grad_scale: float,
    carried: Optional[float],
) -> Optional[float]:
    """One update in place with the optimizer ``name`` (``"adam"``, ...): ``states`` in slot
    order (None where not given), ``hyperparameters`` the spec's kernel hyperparameters after
    ``lr``, in order. Returns the carried scalar (NAdam's ``mu_product``) after the update, or
    None. ``lrfast.adam_step`` and the rest call this; see :mod:`lrfast.kernels`."""

def optimizer_specs() -> list[dict[str, Any]]:
    """Every optimizer's spec (names, hyperparameters, slots, rule) as plain Python data."""

def check_hyperparameter(optimizer: str, name: str, value: Any) -> None:
    """Checks ``value`` for hyperparameter ``name`` of ``optimizer`` by its spec (the kernels'
    check and message), for the values only the optimizer classes read."""

def first_overlap(
    arrays: Sequence[npt.NDArray[Any]], written: Sequence[bool]
) -> Optional[tuple[int, int]]:
    """The indices of two C-contiguous ``arrays`` whose bytes overlap where at least one is
    ``written``, or None (the optimizer classes check a whole step with this)."""

def torch_step(
    groups: Sequence[tuple[str, list[Any], bool, Any, tuple[Any, ...]]],
    state: dict[Any, Any],
    master_weights: bool,
    fresh: Sequence[tuple[int, int]],
) -> list[tuple[int, int]]:
    """lrfast.torch's whole step: each group is ``(kernel, params, counted, lr,
    hyperparameters)``. Finds every parameter's gradient and state (torch's keys) in
    ``state``, checks every tensor, runs the kernels and counts the steps; returns the
    ``(group, index)`` of parameters whose state is missing, with nothing written (``[]``
    once the step ran). ``fresh`` lists those whose state was just created."""

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

def quantize_blocks(
    values: npt.NDArray[np.float32], signed: bool
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]: ...
def dequantize_blocks(
    codes: npt.NDArray[np.uint8], absmax: npt.NDArray[np.float32], signed: bool
) -> npt.NDArray[np.float32]: ...
def code_map(signed: bool) -> npt.NDArray[np.float32]: ...
