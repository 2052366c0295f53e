"""lrfast: the fastest correct optimizer updates on the CPU, and tools for the learning rate.

Functional kernels update a parameter array and its state arrays in place, in one fused pass,
with PyTorch's ``torch.optim`` semantics::

    import numpy as np, lrfast
    p = np.zeros(1000, np.float32); g = np.ones_like(p)
    m = np.zeros_like(p); v = np.zeros_like(p)
    lrfast.adam_step(p, g, m, v, step=1, lr=1e-3)

Every kernel also takes lists of arrays (params, grads and each state as lists of equal length)
and updates them all in one call. float16 and bfloat16 (``ml_dtypes``) parameters and gradients
are updated in mixed precision: float32 state, computed in float32, with an optional float32
master copy (``master=``). The optimizer classes (:class:`Adam`, :class:`SGD`, ...) keep
the state for you, and :mod:`lrfast.reference` holds a plain NumPy version of every kernel.

Learning-rate schedules live in :mod:`lrfast.schedules` (``lr=`` of any kernel or optimizer
accepts one); :class:`ReduceLROnPlateau` and :class:`EarlyStopping` react to the loss;
:mod:`lrfast.plot` draws schedules. To choose the rate: :func:`lr_range_test`,
:func:`sensitivity`, :func:`diagnose`, and the hypergradient optimizers :class:`SGDHD` and
:class:`AdamHD`; ``python -m lrfast demo`` runs them all on real data.
"""

# The kernels, the optimizer classes and the tuning tools are re-exported by their modules'
# own __all__ (one list each; the kernels' is generated from the specs).
from . import kernels, optim, plot, quantized, reference, schedules, tuning
from ._lrfast import (
    __version__,
    clip_grad_norm,
    clip_grad_value,
    get_num_threads,
    grad_norm,
    set_num_threads,
    simd_level,
)
from .kernels import *  # noqa: F403
from .monitor import EarlyStopping, ReduceLROnPlateau
from .optim import *  # noqa: F403
from .quantized import QuantizedState
from .specs import OptimizerSpec, optimizers, spec
from .threads import threads
from .tracking import TrainingLogger
from .tuning import *  # noqa: F403

__all__ = ["__version__", "optimizers", "spec", "OptimizerSpec"]
__all__ += kernels.__all__
__all__ += [
    "simd_level",
    "clip_grad_norm",
    "clip_grad_value",
    "grad_norm",
    "set_num_threads",
    "get_num_threads",
    "threads",
]
__all__ += optim.__all__
__all__ += ["QuantizedState", "quantized"]
__all__ += ["schedules", "plot", "reference", "ReduceLROnPlateau", "EarlyStopping"]
__all__ += ["TrainingLogger"]
__all__ += tuning.__all__
