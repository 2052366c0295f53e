"""Stateful optimizers over NumPy arrays, with ``torch.optim``'s names and defaults.

Each class holds a list of parameter arrays and updates them in place with the matching fused
kernel. State arrays are created on the first :meth:`Optimizer.step`; the step count is kept by
the optimizer. ``state_dict()`` / ``load_state_dict()`` and ``save()`` / ``load()`` (``.npz``)
round-trip bit-exactly, so training resumed from a checkpoint matches training that never stopped.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, Callable, ClassVar, Optional, Protocol, Union

import numpy as np

from . import kernels, specs
from ._lrfast import grad_norm
from .schedules import Constant, Product, Schedule, from_dict
from .specs import OptimizerSpec

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


def as_array_list(arrays: Params, what: str) -> list[np.ndarray]:
    """``arrays`` (one array or a sequence of them) as a list, each checked to be an ndarray;
    ``what`` names the argument in errors."""
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


def _byte_range(array: np.ndarray) -> tuple[int, int]:
    start = int(array.__array_interface__["data"][0])
    return start, start + array.nbytes


def _write_atomically(path: Union[str, os.PathLike[str]], write: Callable[[Any], None]) -> None:
    """Writes a file through ``write(file)`` into a temporary file in ``path``'s folder, then
    renames it to ``path``: readers see the old file or the new one, never a partial one."""
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"path {target!r} is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(target))
    handle, temporary = tempfile.mkstemp(prefix=".lrfast-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _shared_memory(
    arrays: list[tuple[str, np.ndarray, bool]],
) -> Optional[tuple[str, str]]:
    """The names of two arrays of ``(name, array, written)`` whose bytes overlap where at least
    one of them is written, or None. Sorted by start, an overlap is a range that starts before
    the furthest end so far: O(n log n) for calls with thousands of arrays."""
    ranges = sorted(
        (*_byte_range(a), order, name, written)
        for order, (name, a, written) in enumerate(arrays)
        if a.size
    )
    furthest_end, furthest_name, furthest_written = -1, "", False
    for start, end, _, name, written in ranges:
        if start < furthest_end and (written or furthest_written):
            return furthest_name, name
        if end > furthest_end:
            furthest_end, furthest_name, furthest_written = end, name, written
    return None


def _check_disjoint(
    read: list[tuple[str, np.ndarray]], written: list[tuple[str, np.ndarray]]
) -> None:
    """Refuses an array of ``read`` that shares memory with one of ``written``, naming both."""
    pair = _shared_memory([(n, a, False) for n, a in read] + [(n, a, True) for n, a in written])
    if pair is not None:
        raise ValueError(
            f"{pair[0]} and {pair[1]} share memory; a gradient must not be an array the update "
            "writes"
        )


def _check_params(params: list[np.ndarray]) -> None:
    """Refuses, naming ``params[i]``, a parameter the kernels cannot update in place: of another
    dtype, non-contiguous, read-only, or sharing memory with another parameter (the same array
    twice, or two views of one buffer)."""
    for i, p in enumerate(params):
        if p.dtype not in (np.float32, np.float64) and not is_low_precision(p.dtype):
            raise TypeError(
                f"params[{i}] must have dtype float32, float64, float16 or bfloat16, got {p.dtype}"
            )
        if not p.flags.c_contiguous:
            raise ValueError(f"params[{i}] must be C-contiguous (the update writes it in place)")
        if not p.flags.writeable:
            raise ValueError(f"params[{i}] is read-only; the update writes it in place")
    pair = _shared_memory([(f"params[{i}]", p, True) for i, p in enumerate(params)])
    if pair is not None:
        raise ValueError(
            f"{pair[0]} and {pair[1]} share memory; each parameter must be its own array"
        )


class Optimizer:
    """Base class: a kernel, its hyperparameters, the parameters and their state.

    Parameters may be float32, float64, float16 or bfloat16 (``ml_dtypes``); those of one dtype
    are updated by one kernel call. float16 and bfloat16 parameters keep float32 state (mixed
    precision, as DeepSpeed's CPU Adam); with ``master_weights=True`` they also keep a float32
    master copy (``state[i]["master"]``) that the updates accumulate into, the parameter being
    its rounding. Without it, an update smaller than half the parameter's spacing is lost (a
    float16 1.0 ignores any step below 4.9e-4).

    Each optimizer class is this class with a ``spec`` (its definition, see
    :func:`lrfast.optimizers`) and a constructor generated from it.
    """

    spec: ClassVar[OptimizerSpec]

    def __init__(
        self,
        params: Params,
        hyperparameters: dict[str, Any],
        *,
        max_grad_norm: Optional[float] = None,
        grad_norm_type: float = 2.0,
        cycle_momentum: bool = False,
        master_weights: bool = False,
    ) -> None:
        self.params = as_array_list(params, "params")
        _check_params(self.params)
        self.master_weights = bool(master_weights)
        self.defaults = {**self._default_values(), **hyperparameters}
        if "betas" in self.defaults:
            self.defaults["betas"] = tuple(float(b) for b in self.defaults["betas"])
        self.step_count = 0
        self._stepping = threading.Lock()
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        # The carried scalar (NAdam's mu_product) before the next update.
        self.carried = 1.0
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
        name = self.spec.momentum
        if name is None:
            raise ValueError(f"{type(self).__name__} has no momentum to cycle")
        lr = self.defaults["lr"]
        if not isinstance(lr, Schedule) or lr.momentum(0) is None:
            raise ValueError("cycle_momentum needs lr to be a CyclicLR or OneCycleLR schedule")
        if name == "momentum" and self.defaults["momentum"] == 0:
            raise ValueError("cycle_momentum needs momentum > 0 (it sets the momentum buffer up)")

    # -- what the spec describes -------------------------------------------------------------
    def _default_values(self) -> dict[str, Any]:
        return self.spec.defaults

    @property
    def _kernel(self) -> Callable[..., Any]:
        kernel: Callable[..., Any] = getattr(kernels, self.spec.function_name)
        return kernel

    def _state_names(self) -> tuple[str, ...]:
        """The state arrays the kernel needs under the current hyperparameters."""
        return self.spec.needed_slots(self.defaults)

    def _initial_state(self, name: str, param: np.ndarray) -> np.ndarray:
        slot = next((s for s in self.spec.slots if s.name == name), None)
        fill = 0.0 if slot is None or slot.initial is None else float(self.defaults[slot.initial])
        return state_like(param, self._state_names().index(name), fill)

    def _has_master(self, param: np.ndarray) -> bool:
        return self.master_weights and is_low_precision(param.dtype)

    def _kernel_kwargs(self) -> dict[str, Any]:
        kwargs = {h.name: self.defaults[h.name] for h in self.spec.kernel_hyperparameters}
        if self.spec.carried is not None:
            kwargs[self.spec.carried[0]] = self.carried
        return kwargs

    def _after_step(self, result: Any) -> None:
        """Receives the kernel's return value: the carried scalar, if the optimizer has one."""
        if self.spec.carried is not None and result is not None:
            self.carried = float(result)

    # -- the update --------------------------------------------------------------------------
    def _check_hyperparameters(self) -> None:
        # Values only the class reads (the initial state) are checked here; an update of empty
        # arrays runs every check of the kernel and writes nothing, so a bad value fails when it
        # is set, with the kernel's own message.
        for h in self.spec.hyperparameters:
            value = self.defaults[h.name]
            if not h.kernel and not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{h.name} must be {h.range_text}, got {value}")
        empty = np.empty(0)
        names = self._state_names()
        self._kernel(
            empty, empty, **{n: np.empty(0) for n in names}, step=1, **self._kernel_kwargs()
        )

    def _check_grads(self, grads: Params) -> list[np.ndarray]:
        grads = as_array_list(grads, "grads")
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}")
            if not g.flags.c_contiguous:
                raise ValueError(f"grads[{i}] must be C-contiguous")
            if not g.flags.aligned:
                raise ValueError(f"grads[{i}] is not aligned to its dtype")
        for i, p in enumerate(self.params):
            if not p.flags.writeable:
                raise ValueError(f"params[{i}] is read-only")
            if not p.flags.c_contiguous:
                raise ValueError(f"params[{i}] must be C-contiguous")
        # What the kernels would refuse midway, checked for every dtype group before any runs:
        # a gradient sharing memory with an array the update writes.
        written = [(f"params[{i}]", p) for i, p in enumerate(self.params)]
        written += [
            (f"state[{i}][{name!r}]", a) for i, s in enumerate(self.state) for name, a in s.items()
        ]
        _check_disjoint([(f"grads[{i}]", g) for i, g in enumerate(grads)], written)
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
        if not self._stepping.acquire(blocking=False):
            raise RuntimeError(
                f"{type(self).__name__}.step is running in another thread; one optimizer "
                "updates its parameters from one thread at a time"
            )
        try:
            self._step(grads)
        finally:
            self._stepping.release()

    def _step(self, grads: Params) -> None:
        grads = self._check_grads(grads)
        grad_scale = 1.0
        if self.max_grad_norm is not None:
            norm = self._global_norm(grads)
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
            if self.spec.momentum == "betas":
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
            result = self._kernel(
                [self.params[i] for i in group],
                [grads[i] for i in group],
                **{n: [self.state[i][n] for i in group] for n in names},
                step=step,
                grad_scale=grad_scale,
                **kwargs,
            )
        self.step_count = step
        self._after_step(result)

    def _global_norm(self, grads: list[np.ndarray]) -> float:
        """The ``grad_norm_type``-norm of all gradients, whatever their dtypes: one norm per
        dtype (as lrfast.grad_norm computes it), combined."""
        norms = [
            grad_norm([grads[i] for i in group], norm_type=self.grad_norm_type)
            for group in self._dtype_groups
        ]
        if len(norms) == 1:
            return norms[0]
        if math.isinf(self.grad_norm_type):
            return max(norms) if not any(math.isnan(n) for n in norms) else math.nan
        p = self.grad_norm_type
        return float(sum(n**p for n in norms) ** (1.0 / p))

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
        """Restores a :meth:`state_dict`, atomically: every key is checked first (the optimizer
        it is for, the step count, the scalars, every state array's name, shape and dtype, the
        hyperparameters), and the optimizer changes only if all are valid. Arrays are copied."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        for key in ("optimizer", "hyperparameters", "step", "state"):
            if key not in state_dict:
                raise ValueError(f"state_dict has no {key!r}")
        name = state_dict["optimizer"]
        if name != type(self).__name__:
            raise ValueError(f"state_dict is for {name}, not {type(self).__name__}")
        step = state_dict["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"state_dict['step'] must be an integer, got {step!r}")
        if not 0 <= int(step) < 2**63:
            raise ValueError(f"state_dict['step'] must be in [0, 2**63), got {step}")
        scalars = state_dict.get("scalars", {})
        if not isinstance(scalars, dict):
            raise TypeError(f"state_dict['scalars'] must be a dict, got {type(scalars).__name__}")
        known_scalars = {"lr_scale", *self._scalar_state()}
        for key, value in scalars.items():
            if key not in known_scalars:
                raise ValueError(f"state_dict['scalars'] has an unknown key {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise TypeError(f"state_dict['scalars'][{key!r}] must be a number, got {value!r}")
            low_ok = value > 0 if key == "lr_scale" else value >= 0
            high_ok = value <= 1 if self.spec.carried and key == self.spec.carried[0] else True
            if not (math.isfinite(value) and low_ok and high_ok):
                raise ValueError(f"state_dict['scalars'][{key!r}] is out of range: {value!r}")
        hyperparameters = state_dict["hyperparameters"]
        if not isinstance(hyperparameters, dict):
            raise TypeError("state_dict['hyperparameters'] must be a dict")
        unknown = set(hyperparameters) - set(self._default_values())
        if unknown:
            raise ValueError(f"state_dict['hyperparameters'] has unknown keys {sorted(unknown)}")
        hyperparameters = dict(hyperparameters)
        if "betas" in hyperparameters:
            hyperparameters["betas"] = tuple(hyperparameters["betas"])
        previous = self.defaults
        self.defaults = {**self._default_values(), **hyperparameters}
        try:
            self._check_hyperparameters()
            needed = set(self._state_names())
        finally:
            new_defaults, self.defaults = self.defaults, previous
        self._check_states(state_dict["state"], needed)
        # Everything is valid: apply.
        self.defaults = new_defaults
        self.step_count = int(step)
        scalars = dict(scalars)
        self.lr_scale = float(scalars.pop("lr_scale", 1.0))
        self._load_scalar_state(scalars)
        self.state = [
            {k: self._copy_state(k, p, v) for k, v in s.items()}
            for p, s in zip(self.params, state_dict["state"])
        ]

    def _check_states(self, states: Any, needed: set[str]) -> None:
        """Checks a state dict's ``state``: one dict per parameter, empty (not created yet) or
        holding every array the hyperparameters need, no unknown name, each shaped like its
        parameter in the state dtype."""
        if not isinstance(states, (list, tuple)):
            raise TypeError(f"state_dict['state'] must be a list, got {type(states).__name__}")
        if len(states) != len(self.params):
            raise ValueError(
                f"state_dict has state for {len(states)} parameters, optimizer has "
                f"{len(self.params)}"
            )
        known = {slot.name for slot in self.spec.slots} | needed | {"master"}
        for i, (p, s) in enumerate(zip(self.params, states)):
            where = f"state_dict['state'][{i}]"
            if not isinstance(s, dict):
                raise TypeError(f"{where} must be a dict, got {type(s).__name__}")
            if not s:
                continue
            wanted = needed | ({"master"} if self._has_master(p) else set())
            for key in sorted(wanted - set(s)):
                raise ValueError(f"{where} has no {key!r} (parameter {i} needs it)")
            for key, value in s.items():
                if key not in known:
                    raise ValueError(f"{where} has an unknown key {key!r}")
                if key == "master" and not self._has_master(p):
                    raise ValueError(
                        f"{where}['master'] is only for 16-bit parameters with master_weights"
                    )
                if not isinstance(value, np.ndarray):
                    raise TypeError(
                        f"{where}[{key!r}] must be a numpy.ndarray, got {type(value).__name__}"
                    )
                if value.shape != p.shape or value.dtype != _state_dtype(p):
                    raise ValueError(
                        f"{where}[{key!r}] has shape {value.shape} and dtype {value.dtype}; it "
                        f"must have {p.shape} and {_state_dtype(p)} (the parameter is {p.dtype})"
                    )

    def _copy_state(self, name: str, param: np.ndarray, value: np.ndarray) -> np.ndarray:
        names = self._state_names()
        out = state_like(param, names.index(name) if name in names else 0)
        np.copyto(out, value)
        return out

    def _scalar_state(self) -> dict[str, float]:
        return {} if self.spec.carried is None else {self.spec.carried[0]: self.carried}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        if self.spec.carried is not None:
            self.carried = float(scalars.get(self.spec.carried[0], 1.0))

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes :meth:`state_dict` to ``path`` (the ``.npz`` format, no pickling; the name is
        used as given). The file is written beside ``path`` and renamed into place, so a failed
        save leaves any previous checkpoint intact.

        It holds the optimizer's state (hyperparameters, step count, state arrays), not the
        parameters, as ``torch.optim.Optimizer.state_dict`` does: save those yourself."""
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
        _write_atomically(
            path, lambda f: np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
        )

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


def _constructor(spec: OptimizerSpec) -> Callable[..., None]:
    """An ``__init__`` with PyTorch's parameter names and defaults for ``spec``'s optimizer: the
    hyperparameters in torch's order (``lr`` may be positional), ``maximize`` and lrfast's own
    options keyword-only."""
    positional = [h for h in spec.hyperparameters if h.name != "maximize"]
    keyword = [h for h in spec.hyperparameters if h.name == "maximize"]
    arguments = ["self", "params: Params"]
    arguments += [f"{h.name}: {specs.annotation(h)} = {h.default!r}" for h in positional]
    arguments += ["*"] + [f"{h.name}: bool = {h.default!r}" for h in keyword]
    arguments += [
        "max_grad_norm: Optional[float] = None",
        "grad_norm_type: float = 2.0",
        "cycle_momentum: bool = False",
        "master_weights: bool = False",
    ]
    names = ", ".join(f"{h.name!r}: {h.name}" for h in spec.hyperparameters)
    source = (
        "from __future__ import annotations\n"
        f"def __init__({', '.join(arguments)}) -> None:\n"
        f"    Optimizer.__init__(self, params, {{{names}}}, max_grad_norm=max_grad_norm,\n"
        "        grad_norm_type=grad_norm_type, cycle_momentum=cycle_momentum,\n"
        "        master_weights=master_weights)\n"
    )
    namespace: dict[str, Any] = {"Optimizer": Optimizer}
    exec(compile(source, f"<lrfast.{spec.torch_name}.__init__>", "exec"), namespace)
    init: Callable[..., None] = namespace["__init__"]
    return init


def _class_doc(spec: OptimizerSpec) -> str:
    lines = [
        f"{spec.summary[0].upper()}{spec.summary[1:]}, over NumPy arrays "
        f"(``torch.optim.{spec.torch_name}``'s arguments and defaults).",
        "",
        f"Each :meth:`step` runs :func:`lrfast.{spec.function_name}` once per dtype over every "
        "parameter; its docstring gives the update rule. State: "
        + ", ".join(f"``{slot.name}``" for slot in spec.slots)
        + ".",
        "",
        "Args:",
        "    params: an array or a list of arrays, updated in place.",
        *(
            f"    {h.name}: {h.doc}; {h.range_text}, default ``{h.default!r}``."
            for h in spec.hyperparameters
        ),
        "    max_grad_norm: clip the gradients to this global norm in each step (fused).",
        "    grad_norm_type: the norm's order for ``max_grad_norm``.",
        "    cycle_momentum: drive the momentum from a cycling ``lr`` schedule.",
        "    master_weights: keep float32 master copies of float16/bfloat16 parameters.",
    ]
    return "\n".join(lines)


class OptimizerClass(Protocol):
    """What type checkers know of a generated optimizer class: it builds an :class:`Optimizer`.
    At run time each is a real subclass, with the signature of its spec (``inspect.signature``
    and ``help()`` show it)."""

    spec: OptimizerSpec

    def __call__(self, params: Params, *args: Any, **kwargs: Any) -> Optimizer: ...


def _optimizer_class(name: str) -> OptimizerClass:
    spec = specs.spec(name)
    namespace = {
        "spec": spec,
        "__init__": _constructor(spec),
        "__doc__": _class_doc(spec),
        "__module__": "lrfast",
        "__qualname__": spec.torch_name,
    }
    cls: OptimizerClass = type(spec.torch_name, (Optimizer,), namespace)  # type: ignore[assignment]
    return cls


SGD = _optimizer_class("sgd")
Adagrad = _optimizer_class("adagrad")
RMSprop = _optimizer_class("rmsprop")
Adadelta = _optimizer_class("adadelta")
Adam = _optimizer_class("adam")
AdamW = _optimizer_class("adamw")
Adamax = _optimizer_class("adamax")
NAdam = _optimizer_class("nadam")
RAdam = _optimizer_class("radam")
