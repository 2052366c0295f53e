"""Logs of a training loop you can watch: the learning rate of every group, the loss, the global
gradient norm and the update-to-parameter ratio, to TensorBoard, CSV and JSON lines.

::

    log = lrfast.TrainingLogger(tensorboard="runs/adamw", csv="runs/adamw.csv")
    optimizer = lrfast.AdamW(params, lr=1e-3)      # or any torch.optim / lrfast.torch optimizer
    log.attach(optimizer)                          # each step: lr/group0, grad_norm, update_ratio
    for batch in batches:
        loss, grads = model.loss_and_grads(batch)
        optimizer.step(grads)
        log.log(loss=loss)                         # any scalars, at the optimizer's step
    log.close()

Each record is a scalar ``tag`` with a ``step`` (the attached optimizer's step count) and the
wall time. TensorBoard gets them through ``torch.utils.tensorboard`` or ``tensorboardX``,
whichever is installed (no TensorFlow; the ``tensorboard`` extra installs tensorboardX); CSV
files (columns ``step,wall_time,tag,value``) and JSON lines (one object with those keys per
line) need nothing. ``tensorboard --logdir runs`` shows the event files.

What ``attach`` records, per step it logs (every ``every``-th):

- ``lr/group{g}``: the rate group ``g``'s update used;
- ``grad_norm``: the global L2 norm of all gradients, in float64 (before any clipping);
- ``update_ratio``: ``||p_after - p_before|| / ||p_before||`` over all parameters, in float64:
  around 1e-3 is the usual healthy range; far above, the rate is likely too high. It needs a
  copy of the parameters before the step, so it costs one read and write of them per logged
  step (``update_ratio=False`` skips it).
"""

from __future__ import annotations

import csv as csv_format  # `csv` is TrainingLogger's argument
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .extras import install_hint

__all__ = ["TrainingLogger", "summary_writer"]

PathLike = Union[str, "os.PathLike[str]"]


def summary_writer(backend: str) -> Any:
    """The ``SummaryWriter`` class of ``torch.utils.tensorboard`` or of ``tensorboardX``
    (``backend``: ``"auto"``, the first installed, ``"torch"`` or ``"tensorboardX"``); an
    ImportError that names the extra when neither is installed."""
    errors = []
    if backend in ("auto", "torch"):
        try:
            from torch.utils.tensorboard import SummaryWriter

            return SummaryWriter
        except ImportError as error:  # torch, or the tensorboard package it writes with, missing
            errors.append(str(error))
    if backend in ("auto", "tensorboardX"):
        try:
            from tensorboardX import SummaryWriter  # type: ignore[import-untyped,no-redef]

            return SummaryWriter
        except ImportError as error:
            errors.append(str(error))
    raise ImportError(
        f"TrainingLogger(tensorboard=...) needs torch.utils.tensorboard or tensorboardX: "
        f"{install_hint('tensorboard')} ({'; '.join(errors)})"
    )


class TrainingLogger:
    """Writes scalars of a training run to TensorBoard, CSV and/or JSON lines (see the module).

    Args:
        tensorboard: a log directory for TensorBoard event files, or None.
        csv: a CSV file (appended to; a header when new), or None.
        jsonl: a JSON-lines file (appended to), or None.
        every: :meth:`attach` records every ``every``-th step (1: all of them).
        update_ratio: whether :meth:`attach` records the update-to-parameter ratio.
        backend: ``"auto"`` (torch.utils.tensorboard, else tensorboardX), ``"torch"`` or
            ``"tensorboardX"``.
    """

    def __init__(
        self,
        tensorboard: Optional[PathLike] = None,
        csv: Optional[PathLike] = None,
        jsonl: Optional[PathLike] = None,
        *,
        every: int = 1,
        update_ratio: bool = True,
        backend: str = "auto",
    ) -> None:
        if tensorboard is None and csv is None and jsonl is None:
            raise ValueError("give at least one of tensorboard, csv and jsonl")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if backend not in ("auto", "torch", "tensorboardX"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'tensorboardX', got {backend!r}")
        writer_class = summary_writer(backend) if tensorboard is not None else None
        for path in (csv, jsonl):
            if path is not None and Path(path).is_dir():
                raise ValueError(f"{os.fspath(path)!r} is a folder, not a file to log to")
        self.every = every
        self.update_ratio = bool(update_ratio)
        self.step = 0
        """The step new records get: the attached optimizer's step count, or what
        :meth:`log` was given last."""
        self._writer = None
        if writer_class is not None and tensorboard is not None:
            self._writer = writer_class(os.fspath(tensorboard))
        self._csv = None
        if csv is not None:
            fresh = not Path(csv).exists() or Path(csv).stat().st_size == 0
            self._csv = open(csv, "a", newline="", buffering=1)
            self._csv_writer = csv_format.writer(self._csv)
            if fresh:
                self._csv_writer.writerow(["step", "wall_time", "tag", "value"])
        self._jsonl = None if jsonl is None else open(jsonl, "a", buffering=1)
        self._attached: list[Any] = []
        self._before: Optional[list[Any]] = None
        self._rates: list[float] = []

    # -- writing -----------------------------------------------------------------------------
    def log(self, step: Optional[int] = None, **scalars: float) -> None:
        """Records each scalar (``loss=0.31, accuracy=0.9``) at ``step`` (default: the
        attached optimizer's step count). Values are checked before any is written."""
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"step must be an integer >= 0, got {step!r}")
            self.step = int(step)
        values = {}
        for tag, value in scalars.items():
            try:
                values[tag] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"{tag} must be a real number, got {value!r}") from None
        wall_time = time.time()
        for tag, value in values.items():
            self._write(tag, value, wall_time)

    def _write(self, tag: str, value: float, wall_time: float) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, self.step, walltime=wall_time)
        if self._csv is not None:
            self._csv_writer.writerow([self.step, f"{wall_time:.6f}", tag, repr(value)])
        if self._jsonl is not None:
            record = {"step": self.step, "wall_time": wall_time, "tag": tag,
                      "value": value if math.isfinite(value) else repr(value)}  # fmt: skip
            self._jsonl.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        """Writes what is buffered (TensorBoard buffers its events)."""
        if self._writer is not None:
            self._writer.flush()
        for file in (self._csv, self._jsonl):
            if file is not None:
                file.flush()

    def close(self) -> None:
        """Detaches from every optimizer and closes the files (again: nothing)."""
        for handles in self._attached:
            for handle in handles:
                handle.remove()
        self._attached = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for name in ("_csv", "_jsonl"):
            file = getattr(self, name)
            if file is not None:
                file.close()
                setattr(self, name, None)

    def __enter__(self) -> TrainingLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- feeding from an optimizer -------------------------------------------------------------
    def attach(self, optimizer: Any) -> None:
        """Records ``lr/group{g}``, ``grad_norm`` and ``update_ratio`` at every ``every``-th
        step of ``optimizer`` (an lrfast optimizer, or a ``torch.optim`` one: lrfast.torch's
        or torch's own), through its step hooks, and keeps :attr:`step` at its step count."""
        if not hasattr(optimizer, "register_step_post_hook"):
            raise TypeError(
                f"optimizer must be an lrfast or torch.optim optimizer, got "
                f"{type(optimizer).__name__}"
            )
        framework = _framework(optimizer)
        count = [0]

        def before(opt: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            logged = (count[0] + 1) % self.every == 0
            self._rates = framework.rates(opt) if logged else []
            self._before = framework.copy(opt) if logged and self.update_ratio else None

        def after(opt: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            count[0] += 1
            self.step = count[0]
            if not self._rates:
                return
            wall_time = time.time()
            for g, rate in enumerate(self._rates):
                self._write(f"lr/group{g}", rate, wall_time)
            self._write("grad_norm", framework.grad_norm(opt, args), wall_time)
            if self._before is not None:
                self._write("update_ratio", framework.ratio(opt, self._before), wall_time)
                self._before = None

        handles = (optimizer.register_step_pre_hook(before),
                   optimizer.register_step_post_hook(after))  # fmt: skip
        self._attached.append(handles)


class _NumPyOptimizer:
    """How ``attach`` reads an lrfast (NumPy) optimizer: arrays, rates from ``group_lr``."""

    @staticmethod
    def rates(opt: Any) -> list[float]:
        return [opt.group_lr(g) for g in range(len(opt.param_groups))]

    @staticmethod
    def copy(opt: Any) -> list[np.ndarray]:
        return [p.astype(np.float64) for p in opt.params]

    @staticmethod
    def grad_norm(opt: Any, args: tuple[Any, ...]) -> float:
        from ._lrfast import grad_norm

        grads = args[0]
        if isinstance(grads, np.ndarray):
            grads = [grads]
        norms = [grad_norm(np.ascontiguousarray(g)) for g in grads]
        return math.sqrt(sum(n * n for n in norms))

    @staticmethod
    def ratio(opt: Any, before: list[np.ndarray]) -> float:
        moved = sum(
            float(np.sum((p.astype(np.float64) - b) ** 2)) for p, b in zip(opt.params, before)
        )
        size = sum(float(np.sum(b**2)) for b in before)
        return math.sqrt(moved) / math.sqrt(size) if size > 0 else math.inf


class _TorchOptimizer:
    """How ``attach`` reads a torch.optim optimizer: its tensors, rates from the groups (an
    lrfast schedule evaluated at the group's next step)."""

    @staticmethod
    def _params(opt: Any) -> list[Any]:
        return [p for group in opt.param_groups for p in group["params"]]

    @staticmethod
    def rates(opt: Any) -> list[float]:
        from .schedules import Schedule

        rates = []
        for group in opt.param_groups:
            lr = group["lr"]
            if isinstance(lr, Schedule):
                steps = [
                    opt.state[p]["step"] for p in group["params"] if "step" in opt.state.get(p, {})
                ]
                lr = lr(int(float(steps[0])) if steps else 0)
            rates.append(float(lr))
        return rates

    @classmethod
    def copy(cls, opt: Any) -> list[Any]:
        import torch

        return [p.detach().to(torch.float64, copy=True) for p in cls._params(opt)]

    @classmethod
    def grad_norm(cls, opt: Any, args: tuple[Any, ...]) -> float:
        import torch

        grads = [p.grad for p in cls._params(opt) if p.grad is not None]
        if not grads:
            return 0.0
        norms = torch.stack([torch.linalg.vector_norm(g.detach().to(torch.float64)) for g in grads])
        return float(torch.linalg.vector_norm(norms))

    @classmethod
    def ratio(cls, opt: Any, before: list[Any]) -> float:
        import torch

        moved = sum(float(torch.sum((p.detach().to(torch.float64) - b) ** 2))
                    for p, b in zip(cls._params(opt), before))  # fmt: skip
        size = sum(float(torch.sum(b**2)) for b in before)
        return math.sqrt(moved) / math.sqrt(size) if size > 0 else math.inf


def _framework(optimizer: Any) -> Any:
    from .optim import Optimizer

    return _NumPyOptimizer if isinstance(optimizer, Optimizer) else _TorchOptimizer
