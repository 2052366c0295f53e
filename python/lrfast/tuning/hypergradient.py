"""Hypergradient descent (Baydin et al., 2018, "Online Learning Rate Adaptation with
Hypergradient Descent"): the rate learns itself.

Each step first moves the rate along the hypergradient, the dot product of this step's gradient
with the previous update direction (over all parameters together), then takes the usual step:

- SGD-HD: ``α_t = α_{t−1} + β·⟨g_t, d_{t−1}⟩``, ``d`` the SGD direction (the momentum buffer with
  momentum, else the gradient), then the SGD step with ``α_t``;
- Adam-HD: ``α_t = α_{t−1} + β·⟨g_t, u_{t−1}⟩``, ``u_{t−1} = m̂/(√v̂ + eps)`` of the previous
  step, then the Adam step with ``α_t``.

``β`` is ``hypergrad_lr``. The published method has no guard against the rate running away;
lrfast clamps ``α`` to ``[lr_min, lr_max]``. The dot product is accumulated in float64 by
NumPy's pairwise summation, on one thread, so it gives the same bits with any thread count; the
update itself is lrfast's fused kernel. ``g`` is the gradient as the step uses it (after
``maximize`` and weight decay).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Union, cast

import numpy as np

from .. import _lrfast, kernels, specs
from ..checks import real_number
from ..optim import Optimizer, Params, as_array_list, is_low_precision

__all__ = ["sgd_hd_step", "adam_hd_step", "SGDHD", "AdamHD"]

Arrays = Union[np.ndarray, Sequence[np.ndarray]]


def _check(
    lr: float, hypergrad_lr: float, lr_min: float, lr_max: float, step: int, **others: float
) -> None:  # fmt: skip
    """Checks everything the hypergradient uses before any array is read or written (the kernel
    then checks the rest of its own arguments, before it writes)."""
    named = (("lr", lr), ("hypergrad_lr", hypergrad_lr), ("lr_min", lr_min), *others.items())
    for name, value in named:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    if not (lr_max >= lr_min):
        raise ValueError(f"lr_max must be >= lr_min, got lr_max={lr_max} and lr_min={lr_min}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")


def _lists(**arrays: Arrays) -> dict[str, list[np.ndarray]]:
    """Each argument as a list, checked for matching count, shape and dtype against param."""
    # Subclasses (np.matrix) are viewed as plain arrays: the dot products and the update are
    # elementwise, as the kernels treat them.
    out = {
        name: [a.view(np.ndarray) for a in as_array_list(value, name)]
        for name, value in arrays.items()
    }
    params = out["param"]
    for name, items in out.items():
        if len(items) != len(params):
            raise ValueError(f"{name} has {len(items)} arrays but param has {len(params)}")
        for i, (a, p) in enumerate(zip(items, params)):
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError(
                    f"{name}[{i}] has shape {a.shape} and dtype {a.dtype}; param[{i}] has "
                    f"{p.shape} and {p.dtype}"
                )
    return out


def _effective_grad(
    g: np.ndarray, p: np.ndarray, weight_decay: float, maximize: bool
) -> np.ndarray:  # fmt: skip
    g64 = -g.astype(np.float64) if maximize else g.astype(np.float64)
    if weight_decay:
        g64 += weight_decay * p.astype(np.float64)
    return g64


def _dot(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Σ a·b over every pair, in float64, pairwise, on one thread: deterministic."""
    return float(sum(float(np.sum(a.ravel() * b.ravel())) for a, b in pairs))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _check_before_writing(arrays: dict[str, list[np.ndarray]], step: int, alpha: float) -> None:
    """Refuses, before ``direction`` is written, what the SGD kernel would refuse after: the step
    and the new rate (by the kernel's own checks, on empty arrays), parameters of two dtypes,
    arrays it cannot read or write in place, and any written array sharing memory with another
    array of the call."""
    kernels.sgd_step(np.empty(0), np.empty(0), step=step, lr=alpha)
    params = arrays["param"]
    for i, p in enumerate(params):
        if p.dtype not in (np.float32, np.float64):
            raise TypeError(f"param[{i}] has dtype {p.dtype}; SGD-HD updates float32 and float64")
        if p.dtype != params[0].dtype:
            raise TypeError(
                f"param[{i}] has dtype {p.dtype} but param[0] has {params[0].dtype}; one call "
                "updates parameters of one dtype"
            )
    named = [
        (f"{name}[{i}]", a, name != "grad")
        for name, items in arrays.items()
        for i, a in enumerate(items)
    ]
    for label, a, written in named:
        if not (a.flags.c_contiguous and a.flags.aligned):
            raise ValueError(f"{label} must be C-contiguous and aligned")
        if written and not a.flags.writeable:
            raise ValueError(f"{label} is read-only; the update writes it")
    pair = _lrfast.first_overlap([a for _, a, _ in named], [w for _, _, w in named])
    if pair is not None:
        raise ValueError(
            f"{named[pair[0]][0]} and {named[pair[1]][0]} share memory; the update writes one of "
            "them"
        )


def sgd_hd_step(
    param: Arrays,
    grad: Arrays,
    direction: Arrays,
    *,
    step: int,
    lr: float,
    hypergrad_lr: float = 1e-3,
    lr_min: float = 0.0,
    lr_max: float = math.inf,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> float:
    """One SGD-HD update in place; returns the new rate ``α_t`` (pass it as ``lr`` next time).

    ``direction`` holds the previous update direction (zeros before the first step) and is
    updated to this step's: it is the momentum buffer when ``momentum > 0``.
    """
    _check(
        lr, hypergrad_lr, lr_min, lr_max, step,
        momentum=momentum, dampening=dampening, weight_decay=weight_decay,
    )  # fmt: skip
    arrays = _lists(param=param, grad=grad, direction=direction)
    hyper = _dot(
        [
            (_effective_grad(g, p, weight_decay, maximize), d.astype(np.float64))
            for p, g, d in zip(arrays["param"], arrays["grad"], arrays["direction"])
        ]
    )
    alpha = _clamp(lr + hypergrad_lr * hyper, lr_min, lr_max)
    if momentum > 0:
        kernels.sgd_step(
            arrays["param"], arrays["grad"], arrays["direction"], step=step, lr=alpha,
            momentum=momentum, dampening=dampening, weight_decay=weight_decay, maximize=maximize,
        )  # fmt: skip
        return alpha
    # Without momentum the direction is the effective gradient itself: it is written before the
    # kernel runs, so everything the kernel would refuse is checked first.
    _check_before_writing(arrays, step, alpha)
    for p, g, d in zip(arrays["param"], arrays["grad"], arrays["direction"]):
        np.negative(g, out=d) if maximize else np.copyto(d, g)
        if weight_decay:
            d += p * p.dtype.type(weight_decay)
    kernels.sgd_step(arrays["param"], arrays["direction"], step=step, lr=alpha)
    return alpha


def adam_hd_step(
    param: Arrays,
    grad: Arrays,
    exp_avg: Arrays,
    exp_avg_sq: Arrays,
    *,
    step: int,
    lr: float,
    hypergrad_lr: float = 1e-7,
    lr_min: float = 0.0,
    lr_max: float = math.inf,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> float:
    """One Adam-HD update in place; returns the new rate ``α_t``.

    ``u_{t−1}`` is recomputed from ``exp_avg`` and ``exp_avg_sq`` before they are updated (with
    the bias corrections of step ``t − 1``), so Adam-HD needs no state beyond Adam's.
    """
    _check(lr, hypergrad_lr, lr_min, lr_max, step, eps=eps, weight_decay=weight_decay)
    arrays = _lists(param=param, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    beta1, beta2 = betas
    for name, beta in (("betas[0]", beta1), ("betas[1]", beta2)):
        if not 0 <= beta < 1:
            raise ValueError(f"{name} must be in [0, 1), got {beta}")
    alpha = lr
    if step > 1:
        bc1, bc2 = 1 - beta1 ** (step - 1), 1 - beta2 ** (step - 1)
        hyper = _dot(
            [
                (
                    _effective_grad(g, p, weight_decay, maximize),
                    (m.astype(np.float64) / bc1) / (np.sqrt(v.astype(np.float64) / bc2) + eps),
                )
                for p, g, m, v in zip(
                    arrays["param"], arrays["grad"], arrays["exp_avg"], arrays["exp_avg_sq"]
                )
            ]
        )
        alpha = _clamp(lr + hypergrad_lr * hyper, lr_min, lr_max)
    kernels.adam_step(
        arrays["param"], arrays["grad"], arrays["exp_avg"], arrays["exp_avg_sq"], step=step,
        lr=alpha, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
    )  # fmt: skip
    return alpha


def check_group(spec: specs.OptimizerSpec, names: Collection[str], group: dict[str, Any]) -> None:
    """Checks a hypergradient optimizer's hyperparameters ``names`` in ``group`` as its step
    would: the values SGD's or Adam's own ``spec`` defines (momentum, betas, eps, maximize,
    ...) by that spec, and the rate's own (``lr``, ``hypergrad_lr``, ``lr_min``, ``lr_max``)."""
    spec_names = {h.name for h in spec.hyperparameters} - {"lr"}
    for name in spec_names & set(names):
        _lrfast.check_hyperparameter(spec.name, name, group[name])
    rate = {k: real_number(group[k], k) for k in names if k not in spec_names}
    _check(**rate, step=1)


def _arguments(local_names: dict[str, Any]) -> dict[str, Any]:
    """A constructor's hyperparameters: its arguments but ``self`` and ``params``."""
    return {k: v for k, v in local_names.items() if k not in ("self", "params", "__class__")}


class _HypergradientOptimizer(Optimizer):
    """Shared by SGDHD and AdamHD: the rate is state, learned each step, one rate for all the
    parameters (so one parameter group)."""

    _defaults: ClassVar[dict[str, Any]]
    """Every hyperparameter and its default: read from the subclass's ``__init__`` signature."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]
        cls._defaults = {p.name: p.default for p in parameters}

    def __init__(self, params: Params, hyperparameters: dict[str, Any]) -> None:
        super().__init__(as_array_list(params, "params"), hyperparameters)
        self.current_lr = float(self.param_groups[0]["lr"])
        for i, p in enumerate(self.params):
            if is_low_precision(p.dtype):
                raise TypeError(
                    f"params[{i}] has dtype {p.dtype}; {type(self).__name__} updates float32 "
                    "and float64 parameters only"
                )
        self.lr_history: list[float] = []

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Not supported: a hypergradient optimizer learns one rate for all its parameters."""
        raise TypeError(f"{type(self).__name__} learns one rate for all its parameters; it "
                        "takes no parameter groups")  # fmt: skip

    @property
    def lr(self) -> float:
        """The rate the last update used (the initial ``lr`` before the first)."""
        return self.current_lr

    @lr.setter
    def lr(self, value: Any) -> None:
        """Sets the current rate (a float: the rate is learned, so schedules do not apply)."""
        self.current_lr = float(value)

    def _default_values(self) -> dict[str, Any]:
        return self._defaults

    def _hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters the step function takes besides ``lr`` (the learned rate)."""
        group = self.param_groups[0]
        return {k: group[k] for k in self._defaults if k != "lr"}

    def _check_group(self, group: dict[str, Any]) -> None:
        check_group(self.spec, self._defaults, group)

    def _scalar_state(self) -> dict[str, float]:
        return {"current_lr": self.current_lr}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        self.current_lr = float(scalars.get("current_lr", self.param_groups[0]["lr"]))

    def _hd_step(self, grads: list[np.ndarray], step: int) -> float:
        raise NotImplementedError

    def _arrays(self, name: str) -> list[np.ndarray]:
        """State ``name`` of every parameter (always float arrays: these optimizers keep
        32-bit state)."""
        return [cast(np.ndarray, s[name]) for s in self.state]

    def _step(self, grads: Params) -> None:
        if self.max_grad_norm is not None:
            raise ValueError("max_grad_norm is not supported with hypergradient optimizers")
        grads = self._check_grads(grads)
        self._create_missing_state()
        step = self._counters[0].step + 1
        self.current_lr = self._hd_step(grads, step)
        self.lr_history.append(self.current_lr)
        self._counters[0].step = step
        self.step_count += 1


class SGDHD(_HypergradientOptimizer):
    """SGD-HD: SGD whose rate follows its hypergradient; each step is :func:`sgd_hd_step`.

    Args:
        params: an array or a list of arrays (float32 or float64), updated in place.
        lr: the initial rate ``α_0``.
        hypergrad_lr: ``β``, the rate at which ``α`` moves along its hypergradient.
        momentum, dampening, weight_decay, maximize: as :class:`lrfast.SGD`.
        lr_min, lr_max: the interval ``α`` is clamped to.
    """

    spec = specs.spec("sgd")

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        hypergrad_lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        lr_min: float = 0.0,
        lr_max: float = math.inf,
    ) -> None:
        super().__init__(params, _arguments(locals()))

    def _state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("direction",)

    def _hd_step(self, grads: list[np.ndarray], step: int) -> float:
        return sgd_hd_step(
            self.params, grads, self._arrays("direction"), step=step,
            lr=self.current_lr, **self._hyperparameters(),
        )  # fmt: skip


class AdamHD(_HypergradientOptimizer):
    """Adam-HD: Adam whose rate follows its hypergradient; each step is :func:`adam_hd_step`.

    Args:
        params: an array or a list of arrays (float32 or float64), updated in place.
        lr: the initial rate ``α_0``.
        hypergrad_lr: ``β``, the rate at which ``α`` moves along its hypergradient.
        betas, eps, weight_decay, maximize: as :class:`lrfast.Adam`.
        lr_min, lr_max: the interval ``α`` is clamped to.
    """

    spec = specs.spec("adam")

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        hypergrad_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        lr_min: float = 0.0,
        lr_max: float = math.inf,
    ) -> None:
        super().__init__(params, _arguments(locals()))

    def _state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _hd_step(self, grads: list[np.ndarray], step: int) -> float:
        return adam_hd_step(
            self.params, grads, self._arrays("exp_avg"), self._arrays("exp_avg_sq"), step=step,
            lr=self.current_lr,
            **self._hyperparameters(),
        )  # fmt: skip
