"""Stateful optimizers over NumPy arrays, with ``torch.optim``'s names and defaults.

Each class holds a list of parameter arrays and updates them in place with the matching fused
kernel. State arrays are created on the first :meth:`Optimizer.step`; the step count is kept by
the optimizer. ``state_dict()`` / ``load_state_dict()`` and ``save()`` / ``load()`` (``.npz``)
round-trip bit-exactly, so training resumed from a checkpoint matches training that never stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Callable, ClassVar, Optional, Union

import numpy as np

from . import _lrfast
from ._lrfast import grad_norm
from .schedules import Constant, Product, Schedule, from_dict

__all__ = [
    "state_like",
    "is_low_precision",
    "Optimizer",
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
]

Params = Union[np.ndarray, Sequence[np.ndarray]]
LearningRate = Union[float, Schedule]


def _as_list(arrays: Params, what: str) -> list[np.ndarray]:
    if isinstance(arrays, np.ndarray):
        return [arrays]
    items = list(arrays)
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            raise TypeError(f"{what}[{i}] must be a numpy.ndarray, got {type(item).__name__}")
    return items


# Arrays this large get a staggered start address (see `state_like`).
_STAGGER_MIN_BYTES = 1 << 20


def is_low_precision(dtype: Any) -> bool:
    """Whether ``dtype`` is float16 or bfloat16 (``ml_dtypes.bfloat16``): parameters the kernels
    update in mixed precision, with float32 state and an optional float32 master copy."""
    resolved = np.dtype(dtype)
    return bool(resolved == np.float16 or (resolved.name == "bfloat16" and resolved.itemsize == 2))


def _state_dtype(param: np.ndarray) -> np.dtype[Any]:
    return np.dtype(np.float32) if is_low_precision(param.dtype) else param.dtype


def state_like(
    param: np.ndarray, slot: int = 0, fill: float = 0.0, dtype: Any = None
) -> np.ndarray:
    """A new C-contiguous array shaped like ``param``, filled with ``fill``, for optimizer state.

    Its dtype is ``dtype`` if given, else the state dtype the kernels expect for ``param``:
    ``param``'s own, or float32 for float16 and bfloat16 parameters (mixed precision).

    Large arrays start at an address offset by ``(slot + 1) * 1024`` bytes, modulo 4 KiB, from
    ``param``'s. Arrays NumPy allocates alone all start at the same offset within a 4 KiB page,
    and an update streaming through several of them then loses a quarter of its memory
    bandwidth (measured: Adam at 2^24 elements, 20.0 ms with every array at one offset, 15.7 ms
    with the states staggered). ``slot`` numbers the state arrays of one parameter.
    """
    dtype = _state_dtype(param) if dtype is None else np.dtype(dtype)
    nbytes = param.size * dtype.itemsize
    if nbytes < _STAGGER_MIN_BYTES:
        return np.full(param.shape, fill, dtype=dtype)
    buffer = np.empty(nbytes + 4096, dtype=np.uint8)
    target = param.ctypes.data + (slot + 1) * 1024
    start = (target - buffer.ctypes.data) % 4096
    out: np.ndarray = buffer[start : start + nbytes].view(dtype).reshape(param.shape)
    out.fill(fill)
    return out


class Optimizer:
    """Base class: a kernel, its hyperparameters, the parameters and their state.

    Parameters may be float32, float64, float16 or bfloat16 (``ml_dtypes``); those of one dtype
    are updated by one kernel call. float16 and bfloat16 parameters keep float32 state (mixed
    precision, as DeepSpeed's CPU Adam); with ``master_weights=True`` they also keep a float32
    master copy (``state[i]["master"]``) that the updates accumulate into, the parameter being
    its rounding. Without it, an update smaller than half the parameter's spacing is lost (a
    float16 1.0 ignores any step below 4.9e-4).

    Subclasses set ``_kernel`` (the functional ``*_step``), ``_defaults`` (hyperparameters and
    their defaults, in PyTorch's names) and :meth:`_state_names`.
    """

    _kernel: ClassVar[Callable[..., Any]]
    _defaults: ClassVar[dict[str, Any]]
    # The hyperparameter a cycling schedule's momentum drives ("momentum", or "betas" whose
    # first entry is Adam's beta1); None where the optimizer has no momentum.
    _momentum_name: ClassVar[Optional[str]] = None

    def __init__(
        self,
        params: Params,
        *,
        max_grad_norm: Optional[float] = None,
        grad_norm_type: float = 2.0,
        cycle_momentum: bool = False,
        master_weights: bool = False,
        **hyperparameters: Any,
    ) -> None:
        unknown = set(hyperparameters) - set(self._defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected hyperparameter(s) {sorted(unknown)}"
            )
        self.params = _as_list(params, "params")
        for i, p in enumerate(self.params):
            if p.dtype not in (np.float32, np.float64) and not is_low_precision(p.dtype):
                raise TypeError(
                    f"params[{i}] must have dtype float32, float64, float16 or bfloat16, "
                    f"got {p.dtype}"
                )
        self.master_weights = bool(master_weights)
        self.defaults = {**self._defaults, **hyperparameters}
        if "betas" in self.defaults:
            self.defaults["betas"] = tuple(float(b) for b in self.defaults["betas"])
        self.step_count = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        if max_grad_norm is not None and not (np.isfinite(max_grad_norm) and max_grad_norm >= 0):
            raise ValueError(f"max_grad_norm must be finite and >= 0, got {max_grad_norm}")
        self.max_grad_norm = max_grad_norm
        self.grad_norm_type = grad_norm_type
        self.last_grad_norm: Optional[float] = None
        self.lr_scale = 1.0
        self._scaled: Optional[tuple[float, Schedule, Schedule]] = None
        self.cycle_momentum = cycle_momentum
        self._check_hyperparameters()
        self._check_cycle_momentum()

    @property
    def lr(self) -> float:
        """The learning rate the next update uses: the schedule's rate at this step (if ``lr`` is
        a schedule), times ``lr_scale`` (which :class:`lrfast.ReduceLROnPlateau` adjusts)."""
        lr = self.defaults["lr"]
        rate = lr(self.step_count) if isinstance(lr, Schedule) else float(lr)
        return self.lr_scale * rate

    @lr.setter
    def lr(self, value: LearningRate) -> None:
        """Sets the rate (a float or a schedule) and resets ``lr_scale`` to 1."""
        previous = self.defaults["lr"]
        self.defaults["lr"] = value
        try:
            self._check_hyperparameters()
            self._check_cycle_momentum()
        except Exception:
            self.defaults["lr"] = previous
            raise
        self.lr_scale = 1.0

    @property
    def schedule(self) -> Optional[Schedule]:
        """The learning-rate schedule, or None for a fixed rate."""
        lr = self.defaults["lr"]
        return lr if isinstance(lr, Schedule) else None

    def _kernel_lr(self) -> LearningRate:
        """``lr`` as the kernels take it: the schedule itself (evaluated inside the kernel call),
        scaled in Rust when ``lr_scale`` is not 1."""
        lr = self.defaults["lr"]
        if self.lr_scale == 1.0:
            return lr  # type: ignore[no-any-return]
        if not isinstance(lr, Schedule):
            return self.lr_scale * float(lr)
        if self._scaled is None or self._scaled[:2] != (self.lr_scale, lr):
            self._scaled = (self.lr_scale, lr, Product([Constant(self.lr_scale), lr]))
        return self._scaled[2]

    def _check_cycle_momentum(self) -> None:
        if not self.cycle_momentum:
            return
        name = type(self)._momentum_name
        if name is None:
            raise ValueError(f"{type(self).__name__} has no momentum to cycle")
        lr = self.defaults["lr"]
        if not isinstance(lr, Schedule) or lr.momentum(0) is None:
            raise ValueError("cycle_momentum needs lr to be a CyclicLR or OneCycleLR schedule")
        if name == "momentum" and self.defaults["momentum"] == 0:
            raise ValueError("cycle_momentum needs momentum > 0 (it sets the momentum buffer up)")

    # -- what subclasses describe ----------------------------------------------------------
    def _state_names(self) -> tuple[str, ...]:
        """The state arrays the kernel needs under the current hyperparameters."""
        raise NotImplementedError

    def _initial_state(self, name: str, param: np.ndarray) -> np.ndarray:
        return state_like(param, self._state_names().index(name))

    def _has_master(self, param: np.ndarray) -> bool:
        return self.master_weights and is_low_precision(param.dtype)

    def _kernel_kwargs(self) -> dict[str, Any]:
        return dict(self.defaults)

    def _after_step(self, result: Any) -> None:
        """Receives the kernel's return value (NAdam's running product)."""

    # -- the update --------------------------------------------------------------------------
    def _check_hyperparameters(self) -> None:
        # An update of empty arrays runs every hyperparameter check of the kernel and writes
        # nothing, so a bad value fails here, when it is set, with the kernel's own message.
        empty = np.empty(0)
        names = self._state_names()
        type(self)._kernel(
            empty, empty, **{n: np.empty(0) for n in names}, step=1, **self._kernel_kwargs()
        )

    def _check_grads(self, grads: Params) -> list[np.ndarray]:
        grads = _as_list(grads, "grads")
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}")
            if not g.flags.c_contiguous:
                raise ValueError(f"grads[{i}] must be C-contiguous")
        for i, p in enumerate(self.params):
            if not p.flags.writeable:
                raise ValueError(f"params[{i}] is read-only")
            if not p.flags.c_contiguous:
                raise ValueError(f"params[{i}] must be C-contiguous")
        return grads

    def step(self, grads: Params) -> None:
        """Applies one update to every parameter, in place.

        ``grads`` matches ``params`` in count, shape and dtype; it is checked as a whole before
        any parameter changes. With ``max_grad_norm``, the update uses the gradients clipped to
        that global norm, fused into the kernels (``grad_scale``) so the gradients themselves are
        not written; the parameters come out bit-identical to ``clip_grad_norm`` followed by a
        step (as ``torch.nn.utils.clip_grad_norm_`` then ``step()``). The norm before clipping is
        kept in ``last_grad_norm``.
        """
        grads = self._check_grads(grads)
        grad_scale = 1.0
        if self.max_grad_norm is not None:
            norm = grad_norm(grads, norm_type=self.grad_norm_type)
            self.last_grad_norm = norm
            coefficient = self.max_grad_norm / (norm + 1e-6)
            grad_scale = 1.0 if coefficient > 1.0 else coefficient  # NaN stays NaN, as in torch
        self._create_missing_state()
        names = self._state_names()
        step = self.step_count + 1
        kwargs = self._kernel_kwargs()
        kwargs["lr"] = self._kernel_lr()
        if self.cycle_momentum:
            # The schedule itself: a scaled copy (lr_scale != 1) is a product, without momentum.
            momentum = self.defaults["lr"].momentum(step - 1)
            if self._momentum_name == "betas":
                kwargs["betas"] = (momentum, kwargs["betas"][1])
            else:
                kwargs["momentum"] = momentum
        result = None
        # One kernel call per dtype updates all its parameters at once, spread over threads.
        for group in self._dtype_groups:
            if self._has_master(self.params[group[0]]):
                kwargs["master"] = [self.state[i]["master"] for i in group]
            else:
                kwargs.pop("master", None)
            result = type(self)._kernel(
                [self.params[i] for i in group],
                [grads[i] for i in group],
                **{n: [self.state[i][n] for i in group] for n in names},
                step=step,
                grad_scale=grad_scale,
                **kwargs,
            )
        self.step_count = step
        self._after_step(result)

    def _create_missing_state(self) -> None:
        """Creates, on first use, the state arrays the current hyperparameters need."""
        names = self._state_names()
        for p, s in zip(self.params, self.state):
            for name in names:
                if name not in s:
                    s[name] = self._initial_state(name, p)
            if self._has_master(p) and "master" not in s:
                # The float32 master copy starts as the parameter, widened exactly.
                s["master"] = state_like(p, len(names))
                np.copyto(s["master"], p)

    @property
    def _dtype_groups(self) -> list[list[int]]:
        groups: dict[np.dtype[Any], list[int]] = {}
        for i, p in enumerate(self.params):
            groups.setdefault(p.dtype, []).append(i)
        return list(groups.values())

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A copy of everything needed to resume: hyperparameters, step count, state arrays."""
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": dict(self.defaults),
            "step": self.step_count,
            "scalars": {"lr_scale": self.lr_scale, **self._scalar_state()},
            "state": [{k: v.copy() for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`; state arrays are copied, shapes and dtypes checked."""
        name = state_dict.get("optimizer")
        if name != type(self).__name__:
            raise ValueError(f"state_dict is for {name}, not {type(self).__name__}")
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(
                f"state_dict has state for {len(states)} parameters, optimizer has "
                f"{len(self.params)}"
            )
        for i, (p, s) in enumerate(zip(self.params, states)):
            for key, value in s.items():
                if value.shape != p.shape or value.dtype != _state_dtype(p):
                    raise ValueError(
                        f"state {key!r} of parameter {i} has shape {value.shape} and dtype "
                        f"{value.dtype}; it must have {p.shape} and {_state_dtype(p)} "
                        f"(the parameter is {p.dtype})"
                    )
        hyperparameters = dict(state_dict["hyperparameters"])
        if "betas" in hyperparameters:
            hyperparameters["betas"] = tuple(hyperparameters["betas"])
        previous = self.defaults
        self.defaults = {**self._defaults, **hyperparameters}
        try:
            self._check_hyperparameters()
        except Exception:
            self.defaults = previous
            raise
        self.step_count = int(state_dict["step"])
        scalars = dict(state_dict.get("scalars", {}))
        self.lr_scale = float(scalars.pop("lr_scale", 1.0))
        self._load_scalar_state(scalars)
        self.state = [
            {k: self._copy_state(k, p, v) for k, v in s.items()}
            for p, s in zip(self.params, states)
        ]

    def _copy_state(self, name: str, param: np.ndarray, value: np.ndarray) -> np.ndarray:
        names = self._state_names()
        out = state_like(param, names.index(name) if name in names else 0)
        np.copyto(out, value)
        return out

    def _scalar_state(self) -> dict[str, float]:
        return {}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        pass

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes :meth:`state_dict` to a ``.npz`` file (no pickling)."""
        sd = self.state_dict()
        meta = {k: sd[k] for k in ("optimizer", "hyperparameters", "step", "scalars")}
        lr = meta["hyperparameters"]["lr"]
        if isinstance(lr, Schedule):
            meta["hyperparameters"] = {**meta["hyperparameters"], "lr": {"schedule": lr.to_dict()}}
        meta["state_names"] = [sorted(s) for s in sd["state"]]
        arrays = {
            f"state/{i}/{name}": value
            for i, s in enumerate(sd["state"])
            for name, value in s.items()
        }
        np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)

    def load(self, path: Union[str, os.PathLike[str]]) -> None:
        """Restores a state written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            lr = meta["hyperparameters"]["lr"]
            if isinstance(lr, dict):
                meta["hyperparameters"]["lr"] = from_dict(lr["schedule"])
            state = [
                {name: data[f"state/{i}/{name}"] for name in names}
                for i, names in enumerate(meta["state_names"])
            ]
        self.load_state_dict({**meta, "state": state})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{type(self).__name__}(<{len(self.params)} params>, {args})"


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum; see :func:`lrfast.sgd_step`."""

    _kernel = _lrfast.sgd_step
    _momentum_name = "momentum"
    _defaults = {
        "lr": 1e-3,
        "momentum": 0.0,
        "dampening": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "maximize": False,
    }

    def _state_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.defaults["momentum"] != 0 else ()


class Adagrad(Optimizer):
    """Adagrad; see :func:`lrfast.adagrad_step`. ``initial_accumulator_value`` starts the sum."""

    _kernel = _lrfast.adagrad_step
    _defaults = {
        "lr": 1e-2,
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
        "maximize": False,
    }

    def _state_names(self) -> tuple[str, ...]:
        return ("state_sum",)

    def _initial_state(self, name: str, param: np.ndarray) -> np.ndarray:
        return state_like(param, 0, self.defaults["initial_accumulator_value"])

    def _check_hyperparameters(self) -> None:
        value = self.defaults["initial_accumulator_value"]
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"initial_accumulator_value must be finite and >= 0, got {value}")
        super()._check_hyperparameters()

    def _kernel_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.defaults)
        del kwargs["initial_accumulator_value"]
        return kwargs


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum; see :func:`lrfast.rmsprop_step`."""

    _kernel = _lrfast.rmsprop_step
    _momentum_name = "momentum"
    _defaults = {
        "lr": 1e-2,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
        "maximize": False,
    }

    def _state_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("square_avg",)
        if self.defaults["momentum"] != 0:
            names += ("momentum_buffer",)
        if self.defaults["centered"]:
            names += ("grad_avg",)
        return names


class Adadelta(Optimizer):
    """Adadelta; see :func:`lrfast.adadelta_step`."""

    _kernel = _lrfast.adadelta_step
    _defaults = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "maximize": False}

    def _state_names(self) -> tuple[str, ...]:
        return ("square_avg", "acc_delta")


class Adam(Optimizer):
    """Adam, optionally AMSGrad; see :func:`lrfast.adam_step`."""

    _kernel = _lrfast.adam_step
    _momentum_name = "betas"
    _defaults = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
        "maximize": False,
    }

    def _state_names(self) -> tuple[str, ...]:
        names = ("exp_avg", "exp_avg_sq")
        return (*names, "max_exp_avg_sq") if self.defaults["amsgrad"] else names


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay; see :func:`lrfast.adamw_step`."""

    _kernel = _lrfast.adamw_step
    _defaults = {**Adam._defaults, "weight_decay": 1e-2}


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm); see :func:`lrfast.adamax_step`."""

    _kernel = _lrfast.adamax_step
    _momentum_name = "betas"
    _defaults = {
        "lr": 2e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "maximize": False,
    }

    def _state_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_inf")


class NAdam(Optimizer):
    """NAdam; see :func:`lrfast.nadam_step`. Keeps the running ``mu_product`` in float64."""

    _kernel = _lrfast.nadam_step
    _momentum_name = "betas"
    _defaults = {
        "lr": 2e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum_decay": 4e-3,
        "decoupled_weight_decay": False,
        "maximize": False,
    }

    def __init__(self, params: Params, **hyperparameters: Any) -> None:
        self.mu_product = 1.0
        super().__init__(params, **hyperparameters)

    def _state_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _kernel_kwargs(self) -> dict[str, Any]:
        return {**self.defaults, "mu_product": self.mu_product}

    def _after_step(self, result: Any) -> None:
        if result is not None:
            self.mu_product = float(result)

    def _scalar_state(self) -> dict[str, float]:
        return {"mu_product": self.mu_product}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        self.mu_product = float(scalars.get("mu_product", 1.0))


class RAdam(Optimizer):
    """RAdam (rectified Adam); see :func:`lrfast.radam_step`."""

    _kernel = _lrfast.radam_step
    _momentum_name = "betas"
    _defaults = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
        "maximize": False,
    }

    def _state_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")
