"""Reacting to the loss: plateau reduction of the learning rate, and early stopping."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from .checks import real_number
from .optim import Optimizer

__all__ = ["ReduceLROnPlateau", "EarlyStopping"]


def _check_mode(mode: str) -> None:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


class ReduceLROnPlateau:
    """Lowers the learning rate when a metric stops improving (PyTorch's semantics and names).

    ``target`` is an lrfast optimizer or a plain float rate (for functional users, who read
    :attr:`lr` after each :meth:`step`). Call ``step(metric)`` once per evaluation (an epoch).

    A metric improves when (``mode``, ``threshold_mode``) = (min, rel): ``x < best * (1 -
    threshold)``; (min, abs): ``x < best - threshold``; (max, rel): ``x > best * (1 +
    threshold)``; (max, abs): ``x > best + threshold``. After more than ``patience`` evaluations
    without improvement, the rate becomes ``max(lr * factor, min_lr)`` (applied only if it moves
    by more than ``eps``), followed by ``cooldown`` evaluations that do not count.

    Unlike PyTorch's, it composes with schedules: on an optimizer it changes
    ``optimizer.lr_scale``, a factor applied on top of the optimizer's ``lr`` (a float or any
    schedule), so warmup followed by plateau reduction, or plateau reduction of a cosine
    schedule, both work; ``min_lr`` bounds the rate in force at the moment of the reduction.

    ``factor > 1`` gives the opposite policy some authors recommend: raise the rate again after a
    plateau, to escape it, up to ``max_lr`` (required then): the new rate is
    ``min(lr * factor, max_lr)``.
    """

    def __init__(
        self,
        target: Union[Optimizer, float],
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        max_lr: Optional[float] = None,
    ) -> None:
        _check_mode(mode)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not (math.isfinite(factor) and factor > 0 and factor != 1):
            raise ValueError(f"factor must be finite, > 0 and != 1, got {factor!r}")
        if factor > 1 and max_lr is None:
            raise ValueError("factor > 1 raises the rate: give max_lr, the cap")
        if max_lr is not None:
            _check_non_negative("max_lr", max_lr)
        _check_count("patience", patience)
        _check_count("cooldown", cooldown)
        _check_non_negative("threshold", threshold)
        _check_non_negative("min_lr", min_lr)
        _check_non_negative("eps", eps)
        if isinstance(target, (int, float)) and not isinstance(target, bool):
            _check_non_negative("lr", float(target))
            self.optimizer: Optional[Optimizer] = None
            self._lr = float(target)
        elif isinstance(target, Optimizer):
            self.optimizer = target
            self._lr = math.nan
        else:
            raise TypeError(f"target must be an lrfast optimizer or a float, got {target!r}")
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.eps = eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self.num_changes = 0

    @property
    def lr(self) -> float:
        """The rate in force (the optimizer's, if there is one)."""
        return self.optimizer.lr if self.optimizer is not None else self._lr

    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` under the mode and threshold."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return current < best * (1 - self.threshold)
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (1 + self.threshold)
        return current > best + self.threshold

    def step(self, metric: float) -> float:
        """Records one evaluation of the metric; returns the rate in force afterwards."""
        current = real_number(metric, "metric")
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._change_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def _change_lr(self) -> None:
        old = self.lr
        if self.factor < 1:
            new = max(old * self.factor, self.min_lr)
            moved = old - new > self.eps
        else:
            assert self.max_lr is not None
            new = min(old * self.factor, self.max_lr)
            moved = new - old > self.eps
        if not moved:
            return
        self.num_changes += 1
        if self.optimizer is None:
            self._lr = new
            return
        opt = self.optimizer
        if old > 0:
            opt.lr_scale *= new / old
        else:  # a schedule at zero right now (warmup's first step): scale by the factor
            opt.lr_scale *= self.factor

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (the optimizer's ``lr_scale`` is in its own state)."""
        return {
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            "last_epoch": self.last_epoch,
            "num_changes": self.num_changes,
            "lr": self._lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`."""
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.last_epoch = int(state["last_epoch"])
        self.num_changes = int(state["num_changes"])
        self._lr = float(state["lr"])

    def __repr__(self) -> str:
        target = f"<{type(self.optimizer).__name__}>" if self.optimizer is not None else self._lr
        return (
            f"ReduceLROnPlateau({target}, mode={self.mode!r}, factor={self.factor!r}, "
            f"patience={self.patience!r}, threshold={self.threshold!r}, "
            f"threshold_mode={self.threshold_mode!r}, cooldown={self.cooldown!r}, "
            f"min_lr={self.min_lr!r}, eps={self.eps!r}, max_lr={self.max_lr!r}) "
            f"# best={self.best!r}, bad epochs={self.num_bad_epochs}"
        )


class EarlyStopping:
    """Stops training when a metric has not improved for ``patience`` evaluations.

    ``step(metric)`` returns True when training should stop. An improvement is ``x < best -
    min_delta`` (``mode="min"``) or ``x > best + min_delta`` (``"max"``); a NaN metric never
    improves. With ``restore_best=True`` and ``params`` (arrays, or an lrfast optimizer whose
    parameters to watch), a copy of the parameters is kept at each improvement and copied back in
    place when the stop is signalled (Keras' ``restore_best_weights``); :meth:`restore` does it
    on demand.
    """

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best: bool = False,
        params: Union[Optimizer, Sequence[np.ndarray], None] = None,
    ) -> None:
        _check_mode(mode)
        _check_count("patience", patience)
        _check_non_negative("min_delta", min_delta)
        if restore_best and params is None:
            raise ValueError("restore_best needs params: the arrays (or optimizer) to restore")
        self.params: list[np.ndarray] = []
        if params is not None:
            if isinstance(params, Optimizer):
                self.params = list(params.params)
            elif isinstance(params, np.ndarray):
                self.params = [params]
            else:
                self.params = list(params)
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best = restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_step: Optional[int] = None
        self.wait = 0
        self.step_count = 0
        self.stopped = False
        self.best_params: Optional[list[np.ndarray]] = None

    def _improves(self, current: float) -> bool:
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def step(self, metric: float) -> bool:
        """Records one evaluation; True when training should stop (parameters restored then,
        with ``restore_best``)."""
        current = real_number(metric, "metric")
        self.step_count += 1
        if self._improves(current):
            self.best = current
            self.best_step = self.step_count
            self.wait = 0
            if self.restore_best:
                self._keep()
        else:
            self.wait += 1
        if self.wait >= self.patience and not self.stopped:
            self.stopped = True
            if self.restore_best:
                self.restore()
        return self.stopped

    def _keep(self) -> None:
        if self.best_params is None:
            self.best_params = [p.copy() for p in self.params]
        else:
            for kept, p in zip(self.best_params, self.params):
                np.copyto(kept, p)

    def restore(self) -> None:
        """Copies the best parameters seen back into the arrays, in place."""
        if self.best_params is None:
            raise RuntimeError("no best parameters kept yet (restore_best and one step needed)")
        for p, kept in zip(self.params, self.best_params):
            np.copyto(p, kept)

    def state_dict(self) -> dict[str, Any]:
        """Counters, best value and (copies of) the best parameters."""
        return {
            "best": self.best,
            "best_step": self.best_step,
            "wait": self.wait,
            "step_count": self.step_count,
            "stopped": self.stopped,
            "best_params": None
            if self.best_params is None
            else [p.copy() for p in self.best_params],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`."""
        self.best = float(state["best"])
        self.best_step = state["best_step"]
        self.wait = int(state["wait"])
        self.step_count = int(state["step_count"])
        self.stopped = bool(state["stopped"])
        kept = state["best_params"]
        self.best_params = None if kept is None else [np.array(p, copy=True) for p in kept]

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience!r}, min_delta={self.min_delta!r}, "
            f"mode={self.mode!r}, restore_best={self.restore_best!r}, "
            f"params=<{len(self.params)} arrays>) # best={self.best!r}"
        )
