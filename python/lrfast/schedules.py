"""Learning-rate schedules, evaluated in Rust.

A schedule is the learning rate as a function of the scheduler step ``t``, counted from 0:
``schedule(0)`` is the first rate. Every schedule

- is called as ``schedule(step) -> float`` (one Rust call) and evaluated over an array of steps
  with :meth:`Schedule.evaluate` (one Rust call, threads for long arrays);
- can be passed as ``lr=`` to any ``lrfast.*_step`` kernel or optimizer class, which evaluates it
  inside the same Rust call at ``step - 1`` (update 1 uses ``schedule(0)``);
- is a value: ``==``, a ``repr`` that reads as its constructor call, :meth:`Schedule.to_dict` /
  :func:`from_dict` and pickling.

PyTorch's schedules keep PyTorch's names (``StepLR``, ``CosineAnnealingLR``, ...) and argument
names, with the base rate given directly as ``base_lr`` (PyTorch takes it from the optimizer);
Keras' keep Keras' (``ExponentialDecay``, ``CosineDecay``, ...). Each class states its formula;
invalid parameters raise ``ValueError`` naming the parameter.

Composition: :class:`Warmup` puts a linear warmup in front of any schedule, :class:`SequentialLR`
switches between schedules at milestones, :class:`Product` (or ``a * b``, ``0.5 * a``) multiplies
rates, and :class:`LambdaLR` takes any Python callable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, ClassVar, Optional, Union

import numpy as np

from . import _lrfast

__all__ = [
    "Schedule",
    "from_dict",
    "Constant",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "InverseTimeLR",
    "LinearLR",
    "ConstantLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "OneCycleLR",
    "ExponentialDecay",
    "InverseTimeDecay",
    "PolynomialDecay",
    "PiecewiseConstantDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    "Warmup",
    "SequentialLR",
    "Product",
    "LambdaLR",
]


class Schedule(_lrfast.Schedule):
    """Base class: a learning-rate schedule evaluated in Rust.

    Subclasses store their constructor arguments with :meth:`_setup`, which builds and validates
    the Rust schedule named by the class's ``kind``. Each schedule class of this module is its
    own kind; a subclass defined elsewhere (``class MyCosine(CosineAnnealingLR)``) keeps its
    parent's, so it evaluates as its parent does.
    """

    _registry: ClassVar[dict[str, type[Schedule]]] = {}
    kind: ClassVar[str] = ""
    _params: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:
            cls.kind = cls.__name__
        Schedule._registry[cls.__name__] = cls

    def _setup(self, **params: Any) -> None:
        self._params = params
        if not self.kind:
            raise TypeError(f"{type(self).__name__} derives from no schedule kind")
        self._build(self.kind, params)

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments (a copy)."""
        return dict(self._params)

    def evaluate(self, steps: Any) -> np.ndarray:
        """The rates at every step of an integer array (any shape), in one Rust call.

        ``schedule.evaluate(np.arange(10**7))`` computes ten million rates in a few tens of
        milliseconds, for plotting or inspecting a whole run.
        """
        array = np.asarray(steps)
        if array.size == 0:
            return np.empty(array.shape, dtype=np.float64)
        if array.dtype.kind not in "iu":  # not bool, and not timedelta64 (a NumPy integer)
            raise TypeError(f"steps must be integers, got dtype {array.dtype}")
        low = array.min()
        if low < 0:
            raise ValueError(f"steps must be >= 0, got {low}")
        flat = np.ascontiguousarray(array).reshape(-1)
        # Non-negative int64 (NumPy's default) is read as uint64 in place, without a copy.
        flat = flat.view(np.uint64) if flat.dtype == np.int64 else flat.astype(np.uint64)
        return self._evaluate(flat).reshape(array.shape)

    # -- values --------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        assert isinstance(other, Schedule)
        return self._params == other._params

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={_repr(value)}" for name, value in self._params.items())
        return f"{type(self).__name__}({args})"

    def to_dict(self) -> dict[str, Any]:
        """A plain description, ``{"type": class name, **arguments}``, nested for composites.

        JSON-serializable unless the schedule holds a :class:`LambdaLR`'s callable.
        """
        return {"type": type(self).__name__, **{k: _encode(v) for k, v in self._params.items()}}

    def __reduce__(self) -> tuple[Any, ...]:
        return (from_dict, (self.to_dict(),))

    # -- composition ---------------------------------------------------------------------
    def __mul__(self, other: Union[Schedule, float]) -> Product:
        return Product([self, _as_schedule(other)])

    def __rmul__(self, other: Union[Schedule, float]) -> Product:
        return Product([_as_schedule(other), self])


def _as_schedule(value: Union[Schedule, float]) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Constant(float(value))
    raise TypeError(f"cannot multiply a schedule by {type(value).__name__}")


def _repr(value: Any) -> str:
    # A function reads as its name, as it would be written in the constructor call.
    if callable(value) and not isinstance(value, Schedule) and hasattr(value, "__qualname__"):
        return str(value.__qualname__)
    return repr(value)


def _encode(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        return from_dict(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def from_dict(description: dict[str, Any]) -> Schedule:
    """Rebuilds a schedule from :meth:`Schedule.to_dict`'s description."""
    if not isinstance(description, dict):
        raise TypeError(f"a schedule description must be a dict, got {type(description).__name__}")
    params = dict(description)
    name = params.pop("type", None)
    cls = Schedule._registry.get(str(name))
    if cls is None:
        raise ValueError(f"unknown schedule type {name!r}")
    return cls(**{k: _decode(v) for k, v in params.items()})


def _counts(values: Sequence[int]) -> list[Any]:
    """A list of step counts, NumPy integers made plain (checked in Rust)."""
    return [int(v) if isinstance(v, np.integer) else v for v in values]


# -- PyTorch's schedules --------------------------------------------------------------------
class Constant(Schedule):
    """``lr`` at every step."""

    def __init__(self, lr: float) -> None:
        self._setup(lr=lr)


class StepLR(Schedule):
    """``base_lr * gamma ** (t // step_size)`` (``torch.optim.lr_scheduler.StepLR``)."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self._setup(base_lr=base_lr, step_size=step_size, gamma=gamma)


class MultiStepLR(Schedule):
    """``base_lr * gamma ** (number of milestones <= t)``; milestones strictly increasing."""

    def __init__(self, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> None:
        self._setup(base_lr=base_lr, milestones=_counts(milestones), gamma=gamma)


class ExponentialLR(Schedule):
    """``base_lr * gamma ** t``."""

    def __init__(self, base_lr: float, gamma: float) -> None:
        self._setup(base_lr=base_lr, gamma=gamma)


class InverseTimeLR(Schedule):
    """``base_lr / (1 + gamma * t)``: the classic time-based decay (Keras 2's ``decay``)."""

    def __init__(self, base_lr: float, gamma: float) -> None:
        self._setup(base_lr=base_lr, gamma=gamma)


class LinearLR(Schedule):
    """``base_lr * (s + (e - s) * min(t, total_iters) / total_iters)``, then held.

    Decays (or rises) linearly from ``start_factor * base_lr`` to ``end_factor * base_lr`` over
    ``total_iters`` steps and stays there: "decay linearly until τ, then constant".
    """

    def __init__(
        self,
        base_lr: float,
        start_factor: float = 1.0 / 3.0,
        end_factor: float = 1.0,
        total_iters: int = 5,
    ) -> None:
        self._setup(
            base_lr=base_lr,
            start_factor=start_factor,
            end_factor=end_factor,
            total_iters=total_iters,
        )


class ConstantLR(Schedule):
    """``base_lr * factor`` while ``t < total_iters``, then ``base_lr`` (constant-then-base)."""

    def __init__(self, base_lr: float, factor: float = 1.0 / 3.0, total_iters: int = 5) -> None:
        self._setup(base_lr=base_lr, factor=factor, total_iters=total_iters)


class PolynomialLR(Schedule):
    """``base_lr * (1 - min(t, total_iters) / total_iters) ** power``."""

    def __init__(self, base_lr: float, total_iters: int = 5, power: float = 1.0) -> None:
        self._setup(base_lr=base_lr, total_iters=total_iters, power=power)


class CosineAnnealingLR(Schedule):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    As PyTorch's, it keeps following the cosine past ``T_max`` (back up to ``base_lr`` at
    ``2 * T_max``); compose with :class:`SequentialLR` to hold a floor instead.
    """

    def __init__(self, base_lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self._setup(base_lr=base_lr, T_max=T_max, eta_min=eta_min)


class CosineAnnealingWarmRestarts(Schedule):
    """SGDR: cosine annealing restarted at the end of each period (``T_0``, ``T_mult``).

    ``decay`` (lrfast's addition, 1 = PyTorch's behaviour) multiplies the peak rate at each
    restart: the peak of period ``i`` is ``base_lr * decay ** i``.
    """

    def __init__(
        self,
        base_lr: float,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        decay: float = 1.0,
    ) -> None:
        self._setup(base_lr=base_lr, T_0=T_0, T_mult=T_mult, eta_min=eta_min, decay=decay)


class CyclicLR(Schedule):
    """Cyclical learning rates (Smith 2017) between ``base_lr`` and ``max_lr``.

    ``mode`` is ``"triangular"``, ``"triangular2"`` (amplitude halved each cycle) or
    ``"exp_range"`` (amplitude scaled by ``gamma ** t``). :meth:`momentum` gives the momentum
    cycled inversely between ``max_momentum`` and ``base_momentum`` (used by the optimizers'
    ``cycle_momentum=True``).
    """

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        step_size_up: int = 2000,
        step_size_down: Optional[int] = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
    ) -> None:
        self._setup(
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            gamma=gamma,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
        )


class OneCycleLR(Schedule):
    """One-cycle (Smith & Topin 2018): ``max_lr / div_factor`` up to ``max_lr``, then down to
    ``max_lr / div_factor / final_div_factor`` at step ``total_steps - 1`` (held after it, where
    PyTorch raises). ``three_phase`` comes back to the initial rate before the final descent;
    ``anneal_strategy`` is ``"cos"`` or ``"linear"``. Momentum cycles inversely
    (:meth:`momentum`).
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ) -> None:
        self._setup(
            max_lr=max_lr,
            total_steps=total_steps,
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
        )


# -- Keras' schedules -----------------------------------------------------------------------
class ExponentialDecay(Schedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored if ``staircase``)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
    ) -> None:
        self._setup(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            decay_rate=decay_rate,
            staircase=staircase,
        )


class InverseTimeDecay(Schedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored if
    ``staircase``)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
    ) -> None:
        self._setup(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            decay_rate=decay_rate,
            staircase=staircase,
        )


class PolynomialDecay(Schedule):
    """``(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``.

    With ``cycle``, ``decay_steps`` grows to the next multiple of itself past ``step`` instead.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
    ) -> None:
        self._setup(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            end_learning_rate=end_learning_rate,
            power=power,
            cycle=cycle,
        )


class PiecewiseConstantDecay(Schedule):
    """``values[i]`` for the first ``boundaries[i] >= step``, else ``values[-1]``."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]) -> None:
        self._setup(boundaries=_counts(boundaries), values=[float(v) for v in values])


class CosineDecay(Schedule):
    """Cosine decay to ``alpha * peak`` over ``decay_steps``, after an optional linear warmup
    from ``initial_learning_rate`` to ``warmup_target`` (the peak) over ``warmup_steps``."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        warmup_target: Optional[float] = None,
        warmup_steps: int = 0,
    ) -> None:
        self._setup(
            initial_learning_rate=initial_learning_rate,
            decay_steps=decay_steps,
            alpha=alpha,
            warmup_target=warmup_target,
            warmup_steps=warmup_steps,
        )


class CosineDecayRestarts(Schedule):
    """Cosine decay with restarts (Keras): periods grow by ``t_mul`` (>= 1; Keras' formula gives
    NaN once shrinking periods run out), peaks are scaled by ``m_mul`` at each restart."""

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
    ) -> None:
        self._setup(
            initial_learning_rate=initial_learning_rate,
            first_decay_steps=first_decay_steps,
            t_mul=t_mul,
            m_mul=m_mul,
            alpha=alpha,
        )


# -- composition ----------------------------------------------------------------------------
class Warmup(Schedule):
    """Linear warmup in front of ``schedule``: ``r0 * (s + (1 - s) * t / steps)`` for
    ``t < steps`` (``r0 = schedule(0)``, ``s = start_factor``), then ``schedule(t - steps)``.

    The wrapped schedule is shifted, not cut: it starts its own step 0 after the warmup, so
    ``Warmup(CosineAnnealingLR(0.1, T_max=10_000), steps=500)`` reaches the cosine's end at step
    10,500. To end at the same total, give the inner schedule ``total - steps`` steps."""

    def __init__(self, schedule: Schedule, steps: int, start_factor: float = 0.0) -> None:
        self._setup(schedule=schedule, steps=steps, start_factor=start_factor)


class SequentialLR(Schedule):
    """``schedules[0]`` until ``milestones[0]``, then ``schedules[1]`` (counting its own steps
    from 0), and so on; ``len(milestones) == len(schedules) - 1``."""

    def __init__(self, schedules: Sequence[Schedule], milestones: Sequence[int]) -> None:
        self._setup(schedules=list(schedules), milestones=_counts(milestones))


class Product(Schedule):
    """The product of several schedules' rates: chaining. Give the shaping factors a base of 1,
    e.g. ``CosineAnnealingLR(0.1, 1000) * ExponentialLR(1.0, 0.999)``, or scale a schedule by a
    constant: ``0.5 * schedule``."""

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self._setup(schedules=list(schedules))


class LambdaLR(Schedule):
    """``base_lr * lr_lambda(t)`` for any Python callable: the escape hatch.

    Evaluated by calling back into Python (still usable as a kernel's ``lr=``). Equal when the
    callables are the same object; pickles when the callable does (a module-level function).
    """

    def __init__(self, base_lr: float, lr_lambda: Callable[[int], float]) -> None:
        self._setup(base_lr=base_lr, lr_lambda=lr_lambda)
