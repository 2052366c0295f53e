"""Stateful optimizers over NumPy arrays, with ``torch.optim``'s names and defaults.

Each class holds a list of parameter arrays and updates them in place with the matching fused
kernel. State arrays are created on the first :meth:`Optimizer.step`; the step count is kept by
the optimizer. ``state_dict()`` / ``load_state_dict()`` and ``save()`` / ``load()`` (``.npz``)
round-trip bit-exactly, so training resumed from a checkpoint matches training that never stopped.
"""

from __future__ import annotations

import json
import math
import operator
import os
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from typing import Any, Callable, ClassVar, Optional, Protocol, Union

import numpy as np

from . import _lrfast, kernels, specs
from ._lrfast import grad_norm
from .checks import real_number
from .quantized import QuantizedState
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
# An array, a list of arrays, or a list of parameter groups: {"params": ..., hyperparameters}.
ParamsOrGroups = Union[np.ndarray, Sequence[np.ndarray], Sequence[dict[str, Any]]]
# One state of one parameter: an array, or its 8-bit form.
State = Union[np.ndarray, QuantizedState]
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


MIN_8BIT_SIZE = 4096
"""The default ``min_8bit_size``: with ``state_bits=8``, parameters smaller than this keep
float32 state, where the saving is a few kilobytes (bitsandbytes' default)."""


StepHook = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]


class HookHandle:
    """What ``register_step_*_hook`` returns: ``remove()`` unregisters the hook."""

    _next = 0

    def __init__(self, hooks: dict[int, StepHook], hook: StepHook) -> None:
        HookHandle._next += 1
        self._key, self._hooks = HookHandle._next, hooks
        hooks[self._key] = hook

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


def check_state_bits(state_bits: Any, min_8bit_size: Any) -> None:
    """Refuses a ``state_bits`` other than 32 or 8 and a ``min_8bit_size`` below 0, by name."""
    if isinstance(state_bits, bool) or state_bits not in (8, 32):
        raise ValueError(f"state_bits must be 32 or 8, got {state_bits!r}")
    if (
        isinstance(min_8bit_size, bool)
        or not isinstance(min_8bit_size, (int, np.integer))
        or min_8bit_size < 0
    ):
        raise ValueError(f"min_8bit_size must be an integer >= 0, got {min_8bit_size!r}")


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


def _write_atomically(path: Union[str, os.PathLike[str]], write: Callable[[Any], None]) -> None:
    """Writes a file through ``write(file)`` into a temporary file in ``path``'s folder, then
    renames it to ``path``: readers see the old file or the new one, never a partial one."""
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"path {target!r} is a directory; give a file name")
    # A symlink's file is replaced, not the link; a device or a pipe is refused, as renaming
    # over it would replace the node itself (save("/dev/full") must not remove /dev/full).
    target = os.path.realpath(target)
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"path {os.fspath(path)!r} is not a regular file")
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
    one of them is written, or None (the kernels' own sweep, O(n log n))."""
    pair = _lrfast.first_overlap([a for _, a, _ in arrays], [w for _, _, w in arrays])
    return None if pair is None else (arrays[pair[0]][0], arrays[pair[1]][0])


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


def _check_params(named: list[tuple[str, np.ndarray]]) -> None:
    """Refuses, by the name given with it, a parameter the kernels cannot update in place: of
    another dtype, non-contiguous, read-only, or sharing memory with another parameter (the same
    array twice, or two views of one buffer)."""
    for name, p in named:
        if p.dtype not in (np.float32, np.float64) and not is_low_precision(p.dtype):
            raise TypeError(
                f"{name} must have dtype float32, float64, float16 or bfloat16, got {p.dtype}"
            )
        if not p.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (the update writes it in place)")
        if not p.flags.writeable:
            raise ValueError(f"{name} is read-only; the update writes it in place")
    pair = _shared_memory([(name, p, True) for name, p in named])
    if pair is not None:
        raise ValueError(
            f"{pair[0]} and {pair[1]} share memory; each parameter must be its own array, in "
            "one group"
        )


def _group_sizes_text(sizes: list[int]) -> str:
    return "[" + ", ".join(str(n) for n in sizes) + "]"


class _GroupCounters:
    """What a param group carries from step to step besides its arrays: its own step count
    (a group added by :meth:`Optimizer.add_param_group` starts at 0, as in torch) and the
    carried scalar (NAdam's ``mu_product``)."""

    __slots__ = ("carried", "step")

    def __init__(self, step: int = 0, carried: float = 1.0) -> None:
        self.step = step
        self.carried = carried


class Optimizer:
    """Base class: a kernel, its parameter groups (parameters and hyperparameters), their state.

    ``params`` is an array, a list of arrays, or a list of parameter groups as in ``torch.optim``:
    dicts with ``"params"`` (an array or a list) and any hyperparameters that group overrides,
    the constructor's values (:attr:`defaults`) filling in the rest::

        lrfast.SGD([{"params": weights, "weight_decay": 1e-4}, {"params": biases}],
                   lr=0.1, momentum=0.9)

    Each group may have its own ``lr`` (a float or a schedule). ``param_groups`` holds the
    groups (change their hyperparameters there, as torch's schedulers do; the next step checks
    them); ``params`` and ``state`` are the parameters of every group in order and their state,
    and ``step(grads)`` takes one gradient per entry of ``params``.

    Parameters may be float32, float64, float16 or bfloat16 (``ml_dtypes``); those of one group
    and dtype are updated by one kernel call. float16 and bfloat16 parameters keep float32 state
    (mixed precision, as DeepSpeed's CPU Adam); with ``master_weights=True`` they also keep a
    float32 master copy (``state[i]["master"]``) that the updates accumulate into, the parameter
    being its rounding. Without it, an update smaller than half the parameter's spacing is lost
    (a float16 1.0 ignores any step below 4.9e-4).

    Each optimizer class is this class with a ``spec`` (its definition, see
    :func:`lrfast.optimizers`) and a constructor generated from it.
    """

    spec: ClassVar[OptimizerSpec]

    def __init__(
        self,
        params: ParamsOrGroups,
        defaults: dict[str, Any],
        *,
        max_grad_norm: Optional[float] = None,
        grad_norm_type: float = 2.0,
        cycle_momentum: bool = False,
        master_weights: bool = False,
        state_bits: int = 32,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ) -> None:
        check_state_bits(state_bits, min_8bit_size)
        self.state_bits = int(state_bits)
        """32, or 8: the state of float32 parameters of at least ``min_8bit_size`` elements is
        then :class:`lrfast.QuantizedState` (block-wise 8-bit, a quarter of the memory); other
        parameters keep their usual state."""
        self.min_8bit_size = int(min_8bit_size)
        if max_grad_norm is not None:
            max_grad_norm = real_number(max_grad_norm, "max_grad_norm")
            if not (math.isfinite(max_grad_norm) and max_grad_norm >= 0):
                raise ValueError(f"max_grad_norm must be finite and >= 0, got {max_grad_norm}")
            try:
                grad_norm([], norm_type=grad_norm_type)  # the kernels' check of the order
            except (TypeError, ValueError) as e:
                raise type(e)(str(e).replace("norm_type", "grad_norm_type", 1)) from None
        self.defaults: dict[str, Any] = _normalized({**self._default_values(), **defaults})
        """The constructor's hyperparameters: what a group that does not set a value gets."""
        self._hyperparameter_values = operator.itemgetter(*self._default_values())
        self.master_weights = bool(master_weights)
        self.max_grad_norm = max_grad_norm
        self.grad_norm_type = grad_norm_type
        self.cycle_momentum = bool(cycle_momentum)
        self.last_grad_norm: Optional[float] = None
        self.lr_scale = 1.0
        self.step_count = 0
        """How many steps this optimizer has taken."""
        self.param_groups: list[dict[str, Any]] = []
        self.state: list[dict[str, State]] = []
        self._counters: list[_GroupCounters] = []
        # Per group: the hyperparameter values last checked, so a step re-checks only a group
        # whose values changed (a scheduler writing param_groups[i]["lr"]).
        self._checked: list[tuple[Any, ...]] = []
        self._scaled: dict[int, tuple[float, Schedule, Schedule]] = {}
        # The state names of a step that is one kernel call (one group, one dtype, state
        # created, values as checked), or None: see _one_call_step.
        self._one_call: Optional[tuple[str, ...]] = None
        self._stepping = threading.Lock()
        self._step_hooks: tuple[dict[int, StepHook], dict[int, StepHook]] = ({}, {})
        for group in self._new_groups(params):
            self._append_group(group)

    # -- parameter groups --------------------------------------------------------------------
    def _new_groups(self, params: ParamsOrGroups) -> list[dict[str, Any]]:
        """``params`` as complete, checked groups, every parameter named as the caller wrote it
        (``params[i]`` or ``params[g]['params'][i]``)."""
        if isinstance(params, np.ndarray):
            entries: list[Any] = [params]
        elif isinstance(params, (dict, str, bytes)):
            raise TypeError(
                "params must be an array, a list of arrays or a list of parameter groups (dicts), "
                f"got {type(params).__name__}"
            )
        else:
            entries = list(params)
        if entries and all(isinstance(e, dict) for e in entries):
            groups = [self._complete_group(e, f"params[{g}]") for g, e in enumerate(entries)]
            named = [
                (f"params[{g}]['params'][{i}]", p)
                for g, group in enumerate(groups)
                for i, p in enumerate(group["params"])
            ]
        elif any(isinstance(e, dict) for e in entries):
            raise TypeError("params must be all arrays or all parameter groups (dicts), not both")
        else:
            arrays = as_array_list(entries, "params")
            groups = [self._complete_group({"params": arrays}, None)]
            named = [(f"params[{i}]", p) for i, p in enumerate(arrays)]
        _check_params(named)
        return groups

    def _complete_group(self, given: dict[str, Any], where: Optional[str]) -> dict[str, Any]:
        """A group from ``given`` (``"params"`` and the hyperparameters it overrides) with
        :attr:`defaults` filling in the rest, checked; ``where`` names it in errors (None for the
        one group of a list of arrays, whose values are the constructor's arguments)."""
        if "params" not in given:
            raise ValueError(f"{where} has no 'params'")
        unknown = sorted(set(given) - {"params"} - set(self._default_values()))
        if unknown:
            raise ValueError(
                f"{where} has unknown keys {unknown}; a group takes 'params' and "
                f"{sorted(self._default_values())}"
            )
        arrays = given["params"]
        if isinstance(arrays, dict):
            raise TypeError(f"{where}['params'] must be an array or a list of arrays")
        values = _normalized({**self.defaults, **given})
        del values["params"]
        group = {"params": as_array_list(arrays, f"{where}['params']" if where else "params"),
                 **values}  # fmt: skip
        try:
            self._check_group(group)
        except (TypeError, ValueError) as e:
            if where is None:
                raise
            raise type(e)(f"{where}: {e}") from None
        return group

    def _append_group(self, group: dict[str, Any]) -> None:
        self.param_groups.append(group)
        self.state += [{} for _ in group["params"]]
        self._counters.append(_GroupCounters())
        self._checked.append(self._checked_values(group))
        self._one_call = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group of parameters, as ``torch.optim.Optimizer.add_param_group``: a dict with
        ``"params"`` and the hyperparameters it overrides (:attr:`defaults` fill in the rest).
        Its parameters must not be in another group; its step count starts at 0 (its first
        update is step 1, with step 1's bias correction)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = self._complete_group(param_group, "param_group")
        named = [
            (f"param_groups[{g}]['params'][{i}]", p)
            for g, existing in enumerate(self.param_groups)
            for i, p in enumerate(existing["params"])
        ]
        named += [(f"param_group['params'][{i}]", p) for i, p in enumerate(group["params"])]
        _check_params(named)
        self._append_group(group)

    @property
    def params(self) -> list[np.ndarray]:
        """The parameters of every group, in order: ``step(grads)`` takes a gradient for each,
        and ``state[i]`` is the state of ``params[i]``."""
        return [p for group in self.param_groups for p in group["params"]]

    def _group_slices(self) -> list[range]:
        """For each group, the indices of its parameters in :attr:`params`."""
        slices, start = [], 0
        for group in self.param_groups:
            slices.append(range(start, start + len(group["params"])))
            start += len(group["params"])
        return slices

    # -- the learning rate -------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate the next update of the first group uses: the schedule's rate at
        its step (if ``lr`` is a schedule), times ``lr_scale`` (which
        :class:`lrfast.ReduceLROnPlateau` adjusts). Setting it sets every group's ``lr`` (a
        float or a schedule) and resets ``lr_scale`` to 1."""
        return self.group_lr(0)

    @lr.setter
    def lr(self, value: LearningRate) -> None:
        for g, group in enumerate(self.param_groups):
            trial = {**group, "lr": value}
            try:
                self._check_group(trial)
            except (TypeError, ValueError) as e:
                raise type(e)(f"param_groups[{g}]: {e}") from None
        for g, group in enumerate(self.param_groups):
            group["lr"] = value
            self._checked[g] = self._checked_values(group)
        self._one_call = None
        self.lr_scale = 1.0

    def group_lr(self, g: int) -> float:
        """The learning rate the next update of group ``g`` uses (see :attr:`lr`)."""
        lr = self.param_groups[g]["lr"]
        rate = lr(self._counters[g].step) if isinstance(lr, Schedule) else float(lr)
        return self.lr_scale * rate

    @property
    def schedule(self) -> Optional[Schedule]:
        """The first group's learning-rate schedule, or None for a fixed rate."""
        lr = self.param_groups[0]["lr"]
        return lr if isinstance(lr, Schedule) else None

    def _kernel_lr(self, g: int) -> LearningRate:
        """Group ``g``'s ``lr`` as the kernels take it: the schedule itself (evaluated inside the
        kernel call), scaled in Rust when ``lr_scale`` is not 1."""
        lr = self.param_groups[g]["lr"]
        if self.lr_scale == 1.0:
            return lr  # type: ignore[no-any-return]
        if not isinstance(lr, Schedule):
            return self.lr_scale * float(lr)
        cached = self._scaled.get(g)
        if cached is None or cached[:2] != (self.lr_scale, lr):
            cached = (self.lr_scale, lr, Product([Constant(self.lr_scale), lr]))
            self._scaled[g] = cached
        return cached[2]

    # -- what the spec describes -------------------------------------------------------------
    def _default_values(self) -> dict[str, Any]:
        return self.spec.defaults

    @property
    def _kernel(self) -> Callable[..., Any]:
        kernel: Callable[..., Any] = getattr(kernels, self.spec.function_name)
        return kernel

    def _state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state arrays the kernel needs under ``group``'s hyperparameters."""
        return self.spec.needed_slots(group)

    def _initial_state(self, name: str, param: np.ndarray, group: dict[str, Any]) -> State:
        slot = next((s for s in self.spec.slots if s.name == name), None)
        fill = 0.0 if slot is None or slot.initial is None else float(group[slot.initial])
        if slot is not None and self._quantizes(param):
            if fill == 0.0:
                return QuantizedState.zeros(param.shape, signed=slot.signed)
            return QuantizedState.from_array(np.full(param.shape, fill), signed=slot.signed)
        return state_like(param, self._state_names(group).index(name), fill)

    def _quantizes(self, param: np.ndarray) -> bool:
        """Whether ``param``'s state is 8-bit."""
        return (
            self.state_bits == 8 and param.dtype == np.float32 and param.size >= self.min_8bit_size
        )

    def _has_master(self, param: np.ndarray) -> bool:
        return self.master_weights and is_low_precision(param.dtype)

    def _kernel_kwargs(self, g: int, step: int) -> dict[str, Any]:
        """The kernel's keyword arguments for group ``g``'s update number ``step``."""
        group = self.param_groups[g]
        kwargs = {h.name: group[h.name] for h in self.spec.kernel_hyperparameters}
        if self.spec.carried is not None:
            kwargs[self.spec.carried[0]] = self._counters[g].carried
        kwargs["lr"] = self._kernel_lr(g)
        if self.cycle_momentum:
            # The schedule itself: a scaled copy (lr_scale != 1) is a product, without momentum.
            momentum = group["lr"].momentum(step - 1)
            if self.spec.momentum == "betas":
                kwargs["betas"] = (momentum, kwargs["betas"][1])
            else:
                kwargs["momentum"] = momentum
        return kwargs

    # -- checks ------------------------------------------------------------------------------
    def _checked_values(self, group: dict[str, Any]) -> tuple[Any, ...]:
        """The group's hyperparameter values, to tell whether they changed since checked."""
        try:
            return self._hyperparameter_values(group)  # type: ignore[no-any-return]
        except KeyError as e:
            raise ValueError(f"a parameter group has no {e.args[0]!r}") from None

    def _check_group(self, group: dict[str, Any]) -> None:
        """Checks a group's hyperparameters, with the kernel's own messages: an update of empty
        arrays runs every check of the kernel and writes nothing. Values only the class reads
        (the initial state) are checked by their spec."""
        check_hyperparameters(self.spec, group)
        if self.cycle_momentum:
            self._check_cycle_momentum(group)
        if self.state_bits == 8:
            for slot in self.spec.slots:
                if slot.full_precision and slot.name in self._state_names(group):
                    raise ValueError(
                        f"state_bits=8: {slot.name} cannot be stored in 8 bits: "
                        f"{slot.full_precision}"
                    )

    def _check_cycle_momentum(self, group: dict[str, Any]) -> None:
        name = self.spec.momentum
        if name is None:
            raise ValueError(f"{type(self).__name__} has no momentum to cycle")
        lr = group["lr"]
        if not isinstance(lr, Schedule) or lr.momentum(0) is None:
            raise ValueError("cycle_momentum needs lr to be a CyclicLR or OneCycleLR schedule")
        if name == "momentum" and group["momentum"] == 0:
            raise ValueError("cycle_momentum needs momentum > 0 (it sets the momentum buffer up)")

    def _check_groups_unchanged(self) -> None:
        """Re-checks every group whose hyperparameters were changed in ``param_groups`` since
        they were last checked, and refuses groups whose parameter lists were changed."""
        if len(self.state) != sum(len(group["params"]) for group in self.param_groups):
            raise ValueError(
                "the parameter lists of param_groups were changed; add parameters with "
                "add_param_group"
            )
        for g, group in enumerate(self.param_groups):
            try:
                values = self._checked_values(group)
            except ValueError as e:
                raise ValueError(f"param_groups[{g}]: {e}") from None
            if values != self._checked[g]:
                try:
                    self._check_group(group)
                except (TypeError, ValueError) as e:
                    raise type(e)(f"param_groups[{g}]: {e}") from None
                self._checked[g] = values
                self._one_call = None

    def _check_grads(self, grads: Params) -> list[np.ndarray]:
        self._check_groups_unchanged()
        params = self.params
        grads = as_array_list(grads, "grads")
        if len(grads) != len(params):
            raise ValueError(f"expected {len(params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(params, grads)):
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}")
            if not g.flags.c_contiguous:
                raise ValueError(f"grads[{i}] must be C-contiguous")
            if not g.flags.aligned:
                raise ValueError(f"grads[{i}] is not aligned to its dtype")
        for i, p in enumerate(params):
            if not p.flags.writeable:
                raise ValueError(f"params[{i}] is read-only")
            if not p.flags.c_contiguous:
                raise ValueError(f"params[{i}] must be C-contiguous")
        # What the kernels would refuse midway, checked for every call before any runs: a
        # gradient sharing memory with an array the update writes.
        written = [(f"params[{i}]", p) for i, p in enumerate(params)]
        written += [
            (f"state[{i}][{name!r}]{part}", array)
            for i, s in enumerate(self.state)
            for name, a in s.items()
            for part, array in _state_arrays(a)
        ]
        _check_disjoint([(f"grads[{i}]", g) for i, g in enumerate(grads)], written)
        return grads

    # -- the update --------------------------------------------------------------------------
    def step(self, grads: Params) -> None:
        """Applies one update to every parameter, in place.

        ``grads`` matches :attr:`params` in count, shape and dtype; it and every group are
        checked as a whole before any parameter changes. With ``max_grad_norm``, the update uses
        the gradients clipped to that global norm (over all groups), fused into the kernels
        (``grad_scale``) so the gradients themselves are not written; the parameters come out
        bit-identical to ``clip_grad_norm`` followed by a step (as
        ``torch.nn.utils.clip_grad_norm_`` then ``step()``). The norm before clipping is kept in
        ``last_grad_norm``.
        """
        if not self._stepping.acquire(blocking=False):
            raise RuntimeError(
                f"{type(self).__name__}.step is running in another thread; one optimizer "
                "updates its parameters from one thread at a time"
            )
        try:
            for hook in list(self._step_hooks[0].values()):
                hook(self, (grads,), {})
            self._step(grads)
            for hook in list(self._step_hooks[1].values()):
                hook(self, (grads,), {})
        finally:
            self._stepping.release()

    def register_step_pre_hook(self, hook: StepHook) -> HookHandle:
        """Calls ``hook(optimizer, args, kwargs)`` before each step (``args`` is ``(grads,)``),
        as ``torch.optim.Optimizer.register_step_pre_hook`` does (its return value is
        ignored); ``handle.remove()`` takes it away. :class:`lrfast.TrainingLogger` uses it."""
        return HookHandle(self._step_hooks[0], hook)

    def register_step_post_hook(self, hook: StepHook) -> HookHandle:
        """Calls ``hook(optimizer, args, kwargs)`` after each step that updated the
        parameters (not after a refused one); ``handle.remove()`` takes it away."""
        return HookHandle(self._step_hooks[1], hook)

    def _step(self, grads: Params) -> None:
        if self._one_call_step(grads):
            return
        grads = self._check_grads(grads)
        params = self.params
        grad_scale = 1.0
        if self.max_grad_norm is not None:
            norm = self._global_norm(grads)
            self.last_grad_norm = norm
            coefficient = self.max_grad_norm / (norm + 1e-6)
            grad_scale = 1.0 if coefficient > 1.0 else coefficient  # NaN stays NaN, as in torch
        self._create_missing_state()
        results, calls = [], 0
        for g, indices in enumerate(self._group_slices()):
            step = self._counters[g].step + 1
            kwargs = self._kernel_kwargs(g, step)
            names = self._state_names(self.param_groups[g])
            result = None
            # One kernel call per dtype (and 8-bit or not) updates all its parameters at once,
            # spread over threads.
            for same_dtype in _by_dtype(params, indices, self._quantizes):
                if self._has_master(params[same_dtype[0]]):
                    kwargs["master"] = [self.state[i]["master"] for i in same_dtype]
                else:
                    kwargs.pop("master", None)
                result = self._kernel(
                    [params[i] for i in same_dtype],
                    [grads[i] for i in same_dtype],
                    **{n: [self.state[i][n] for i in same_dtype] for n in names},
                    step=step,
                    grad_scale=grad_scale,
                    **kwargs,
                )
                calls += 1
            results.append(result)
        for counters, result in zip(self._counters, results):
            counters.step += 1
            if self.spec.carried is not None and result is not None:
                counters.carried = float(result)
        self.step_count += 1
        if calls == 1 and len(self.param_groups) == 1:
            self._one_call = names  # the next steps may take _one_call_step

    def _one_call_step(self, grads: Params) -> bool:
        """The step as one kernel call, without the Python checks, when that is all a step is:
        one group of one dtype, its state created, its values as last checked, no clipping.
        The kernel checks every argument before it writes any; if it refuses, nothing changed
        and False sends the step through the full checks, which name the argument at fault
        (``grads[i]``, as the caller wrote it). Returns whether the step was taken."""
        names = self._one_call
        if names is None or self.max_grad_norm is not None:
            return False
        if isinstance(grads, np.ndarray):
            grads = [grads]
        elif not isinstance(grads, (list, tuple)):
            return False  # an iterator is read once, by the full checks
        group = self.param_groups[0]
        params = group["params"]
        try:
            if len(params) != len(self.state) or self._checked_values(group) != self._checked[0]:
                return False
        except ValueError:
            return False
        step = self._counters[0].step + 1
        kwargs = self._kernel_kwargs(0, step)
        if self._has_master(params[0]):
            kwargs["master"] = [s["master"] for s in self.state]
        try:
            states = {n: [s[n] for s in self.state] for n in names}
            result = self._kernel(params, grads, **states, step=step, **kwargs)
        except (KeyError, TypeError, ValueError):
            return False
        counters = self._counters[0]
        counters.step = step
        if self.spec.carried is not None and result is not None:
            counters.carried = float(result)
        self.step_count += 1
        return True

    def _global_norm(self, grads: list[np.ndarray]) -> float:
        """The ``grad_norm_type``-norm of all gradients, whatever their dtypes: one norm per
        dtype (as lrfast.grad_norm computes it), combined."""
        norms = [
            grad_norm([grads[i] for i in same_dtype], norm_type=self.grad_norm_type)
            for same_dtype in _by_dtype(grads, range(len(grads)))
        ]
        if not norms:
            return 0.0
        if len(norms) == 1:
            return norms[0]
        if math.isinf(self.grad_norm_type):
            return max(norms) if not any(math.isnan(n) for n in norms) else math.nan
        p = self.grad_norm_type
        return float(sum(n**p for n in norms) ** (1.0 / p))

    def _create_missing_state(self) -> None:
        """Creates, on first use, the state arrays the current hyperparameters need."""
        params = self.params
        for group, indices in zip(self.param_groups, self._group_slices()):
            names = self._state_names(group)
            for i in indices:
                p, s = params[i], self.state[i]
                for name in names:
                    if name not in s:
                        s[name] = self._initial_state(name, p, group)
                if self._has_master(p) and "master" not in s:
                    # The float32 master copy starts as the parameter, widened exactly.
                    master = state_like(p, len(names))
                    np.copyto(master, p)
                    s["master"] = master

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A copy of everything needed to resume: each group's hyperparameters, step count and
        parameter indices (into :attr:`params`), the state arrays. Like torch's, it holds no
        parameters."""
        groups = []
        for group, indices, counters in zip(
            self.param_groups, self._group_slices(), self._counters
        ):
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(indices)
            entry["step"] = counters.step
            if self.spec.carried is not None:
                entry[self.spec.carried[0]] = counters.carried
            groups.append(entry)
        return {
            "optimizer": type(self).__name__,
            "step": self.step_count,
            "scalars": {"lr_scale": self.lr_scale, **self._scalar_state()},
            "param_groups": groups,
            "state": [{k: v.copy() for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`, atomically: every key is checked first (the optimizer
        it is for, the step counts, the scalars, every group's hyperparameters and size, every
        state array's name, shape and dtype), and the optimizer changes only if all are valid.
        The groups must hold as many parameters as this optimizer's. Arrays are copied."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        for key in ("optimizer", "step", "param_groups", "state"):
            if key not in state_dict:
                raise ValueError(f"state_dict has no {key!r}")
        unknown = sorted(
            set(state_dict) - {"optimizer", "step", "scalars", "param_groups", "state"}
        )
        if unknown:
            raise ValueError(f"state_dict has unknown keys {unknown}")
        name = state_dict["optimizer"]
        if name != type(self).__name__:
            raise ValueError(f"state_dict is for {name}, not {type(self).__name__}")
        step = _checked_step(state_dict["step"], "state_dict['step']")
        scalars = state_dict.get("scalars", {})
        if not isinstance(scalars, dict):
            raise TypeError(f"state_dict['scalars'] must be a dict, got {type(scalars).__name__}")
        known_scalars = {"lr_scale", *self._scalar_state()}
        for key, value in scalars.items():
            if key not in known_scalars:
                raise ValueError(f"state_dict['scalars'] has an unknown key {key!r}")
            where = f"state_dict['scalars'][{key!r}]"
            _checked_real(value, where, low_open=key == "lr_scale")
        groups, counters = self._checked_groups(state_dict["param_groups"])
        needed = [set(self._state_names(group)) for group in groups for _ in group["params"]]
        self._check_states(state_dict["state"], needed)
        # Everything is valid: apply.
        self.param_groups = groups
        self._counters = counters
        self._checked = [self._checked_values(group) for group in groups]
        self._one_call = None
        self._scaled = {}
        self.step_count = step
        scalars = dict(scalars)
        self.lr_scale = float(scalars.pop("lr_scale", 1.0))
        self._load_scalar_state(scalars)
        params = self.params
        self.state = [
            {k: self._copy_state(k, params[i], v, group) for k, v in state_dict["state"][i].items()}
            for group, indices in zip(groups, self._group_slices())
            for i in indices
        ]

    def _checked_groups(self, given: Any) -> tuple[list[dict[str, Any]], list[_GroupCounters]]:
        """A state dict's ``param_groups``, checked against this optimizer's groups, as new
        groups (this optimizer's parameters, the saved hyperparameters) and their counters."""
        if not isinstance(given, (list, tuple)):
            raise TypeError(
                f"state_dict['param_groups'] must be a list, got {type(given).__name__}"
            )
        sizes = [len(group["params"]) for group in self.param_groups]
        if len(given) != len(sizes) or any(
            not isinstance(entry, dict) or entry.get("params") != list(indices)
            for entry, indices in zip(given, self._group_slices())
        ):
            saved = [
                len(e["params"])
                if isinstance(e, dict) and isinstance(e.get("params"), list)
                else "?"
                for e in given
            ]
            raise ValueError(
                f"state_dict['param_groups'] holds groups of {saved} parameters (each listing "
                f"its indices in order); this optimizer's groups hold {_group_sizes_text(sizes)}"
            )
        carried = self.spec.carried[0] if self.spec.carried is not None else None
        counter_keys = {"params", "step"} | ({carried} if carried else set())
        groups, counters = [], []
        for g, (entry, current) in enumerate(zip(given, self.param_groups)):
            where = f"state_dict['param_groups'][{g}]"
            names = set(self._default_values())
            unknown = sorted(set(entry) - names - counter_keys)
            if unknown:
                raise ValueError(f"{where} has unknown keys {unknown}")
            missing = sorted(names - set(entry))
            if missing:
                raise ValueError(f"{where} has no {missing}")
            step = _checked_step(entry.get("step"), f"{where}['step']")
            carry = 1.0
            if carried is not None and carried in entry:
                carry = _checked_real(entry[carried], f"{where}[{carried!r}]", high=1.0)
            values = _normalized({k: v for k, v in entry.items() if k in names})
            group = {"params": current["params"], **values}
            try:
                self._check_group(group)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{where}: {e}") from None
            groups.append(group)
            counters.append(_GroupCounters(step, carry))
        return groups, counters

    def _check_states(self, states: Any, needed: list[set[str]]) -> None:
        """Checks a state dict's ``state``: one dict per parameter, empty (not created yet) or
        holding every array its group's hyperparameters need (``needed[i]``), no unknown name,
        each shaped like its parameter in the state dtype."""
        params = self.params
        if not isinstance(states, (list, tuple)):
            raise TypeError(f"state_dict['state'] must be a list, got {type(states).__name__}")
        if len(states) != len(params):
            raise ValueError(
                f"state_dict has state for {len(states)} parameters, optimizer has {len(params)}"
            )
        slots = {slot.name for slot in self.spec.slots} | {"master"}
        for i, (p, s, wanted) in enumerate(zip(params, states, needed)):
            where = f"state_dict['state'][{i}]"
            if not isinstance(s, dict):
                raise TypeError(f"{where} must be a dict, got {type(s).__name__}")
            if not s:
                continue
            wanted = wanted | ({"master"} if self._has_master(p) else set())
            for key in sorted(wanted - set(s)):
                raise ValueError(f"{where} has no {key!r} (parameter {i} needs it)")
            for key, value in s.items():
                if key not in slots | wanted:
                    raise ValueError(f"{where} has an unknown key {key!r}")
                if key == "master" and not self._has_master(p):
                    raise ValueError(
                        f"{where}['master'] is only for 16-bit parameters with master_weights"
                    )
                if isinstance(value, QuantizedState) and key != "master":
                    signed = next(slot.signed for slot in self.spec.slots if slot.name == key)
                    if value.shape != p.shape or value.signed != signed:
                        raise ValueError(
                            f"{where}[{key!r}] is a {'signed' if value.signed else 'unsigned'} "
                            f"8-bit state of shape {value.shape}; it must be "
                            f"{'signed' if signed else 'unsigned'} of shape {p.shape}"
                        )
                    if p.dtype != np.float32:
                        raise ValueError(
                            f"{where}[{key!r}] is 8-bit, but parameter {i} is {p.dtype}: "
                            "8-bit state is for float32 parameters"
                        )
                    continue
                if not isinstance(value, np.ndarray):
                    raise TypeError(
                        f"{where}[{key!r}] must be a numpy.ndarray or an lrfast.QuantizedState, "
                        f"got {type(value).__name__}"
                    )
                if value.shape != p.shape or value.dtype != _state_dtype(p):
                    raise ValueError(
                        f"{where}[{key!r}] has shape {value.shape} and dtype {value.dtype}; it "
                        f"must have {p.shape} and {_state_dtype(p)} (the parameter is {p.dtype})"
                    )

    def _copy_state(
        self, name: str, param: np.ndarray, value: State, group: dict[str, Any]
    ) -> State:
        """A copy of a checked state for ``param``, 8-bit if this optimizer keeps it so: a
        float32 state loaded into an 8-bit optimizer is quantized, an 8-bit one loaded into a
        32-bit optimizer decoded."""
        if name != "master" and self._quantizes(param):
            if isinstance(value, QuantizedState):
                return value.copy()
            signed = next(slot.signed for slot in self.spec.slots if slot.name == name)
            return QuantizedState.from_array(value, signed=signed)
        if isinstance(value, QuantizedState):
            value = value.dequantize()
        names = self._state_names(group)
        out = state_like(param, names.index(name) if name in names else 0)
        np.copyto(out, value)
        return out

    def _scalar_state(self) -> dict[str, float]:
        """Scalars of the whole optimizer a subclass keeps, besides ``lr_scale``."""
        return {}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        pass

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes :meth:`state_dict` to ``path`` (the ``.npz`` format, no pickling; the name is
        used as given). The file is written beside ``path`` and renamed into place, so a failed
        save leaves any previous checkpoint intact.

        It holds the optimizer's state (each group's hyperparameters and step count, the state
        arrays), not the parameters, as ``torch.optim.Optimizer.state_dict`` does: save those
        yourself."""
        sd = self.state_dict()
        meta = {k: sd[k] for k in ("optimizer", "step", "scalars")}
        meta["param_groups"] = [
            {**group, "lr": {"schedule": group["lr"].to_dict()}}
            if isinstance(group["lr"], Schedule)
            else group
            for group in sd["param_groups"]
        ]
        meta["state_names"] = [sorted(s) for s in sd["state"]]
        # 8-bit states: their codes and scales as two arrays, their map here.
        meta["quantized"] = [
            {name: value.signed for name, value in s.items() if isinstance(value, QuantizedState)}
            for s in sd["state"]
        ]
        # np.savez's keyword arguments are the arrays (its stubs name only allow_pickle).
        arrays: dict[str, Any] = {
            f"state/{i}/{name}{part}": array
            for i, s in enumerate(sd["state"])
            for name, value in s.items()
            for part, array in _state_arrays(value, "/")
        }
        _write_atomically(
            path, lambda f: np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
        )

    def load(self, path: Union[str, os.PathLike[str]]) -> None:
        """Restores a state written by :meth:`save`, atomically (see :meth:`load_state_dict`);
        a file that is not such a checkpoint is a ``ValueError`` naming what is wrong."""
        with open(path, "rb") as file:
            try:
                data = np.load(file, allow_pickle=False)
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
                raise ValueError(f"{os.fspath(path)!r} is not a readable checkpoint: {e}") from None
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError(f"{os.fspath(path)!r} is not an lrfast checkpoint (not .npz)")
            self._load_npz(data, path)

    def _load_npz(self, data: Any, path: Union[str, os.PathLike[str]]) -> None:
        with data:
            if "__meta__" not in data.files:
                raise ValueError(f"{os.fspath(path)!r} is not an lrfast checkpoint (no __meta__)")
            try:
                meta = json.loads(str(data["__meta__"]))
            except (ValueError, RecursionError) as e:
                raise ValueError(f"the checkpoint's metadata is not valid: {e}") from None
            groups, names, quantized = _checkpoint_layout(meta)
            for g, group in enumerate(groups):
                if isinstance(group.get("lr"), dict):
                    try:
                        group["lr"] = from_dict(group["lr"].get("schedule"))
                    except (TypeError, ValueError, RecursionError) as e:
                        raise ValueError(
                            f"the checkpoint's param_groups[{g}]['lr'] is not a schedule: {e}"
                        ) from None
            state = []
            for i, entry in enumerate(names):
                eight_bit = quantized[i] if i < len(quantized) else {}
                parts = {
                    name: ["/codes", "/absmax"] if name in eight_bit else [""] for name in entry
                }
                keys = [f"state/{i}/{name}{part}" for name in entry for part in parts[name]]
                missing = [key for key in keys if key not in data.files]
                if missing:
                    raise ValueError(f"the checkpoint has no array {missing[0]!r}")
                try:
                    loaded: dict[str, State] = {}
                    for name in entry:
                        if name in eight_bit:
                            codes, absmax = (data[f"state/{i}/{name}{p}"] for p in parts[name])
                            loaded[name] = QuantizedState(codes, absmax, eight_bit[name])
                        else:
                            loaded[name] = data[f"state/{i}/{name}"]
                    state.append(loaded)
                except (TypeError, ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
                    raise ValueError(f"the checkpoint's state/{i} is not readable: {e}") from None
        del meta["state_names"]
        meta.pop("quantized", None)
        self.load_state_dict({**meta, "state": state})

    def __repr__(self) -> str:
        def values(group: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v!r}" for k, v in group.items() if k != "params")

        if len(self.param_groups) == 1:
            group = self.param_groups[0]
            return f"{type(self).__name__}(<{len(group['params'])} params>, {values(group)})"
        lines = [f"{type(self).__name__}("]
        lines += [
            f"    group {g}: <{len(group['params'])} params>, {values(group)}"
            for g, group in enumerate(self.param_groups)
        ]
        return "\n".join([*lines, ")"])


def check_hyperparameters(spec: OptimizerSpec, values: dict[str, Any]) -> None:
    """Checks ``values`` (every hyperparameter of ``spec``, by name) with the kernel's own
    messages: an update of empty arrays runs every check of the kernel and writes nothing.
    Values only the classes read (the initial state) are checked by their spec."""
    for h in spec.hyperparameters:
        if not h.kernel:
            _lrfast.check_hyperparameter(spec.name, h.name, values[h.name])
    empty = np.empty(0)
    kernel = getattr(kernels, spec.function_name)
    kwargs = {h.name: values[h.name] for h in spec.kernel_hyperparameters}
    states = {n: empty for n in spec.needed_slots(values)}
    kernel(empty, empty, **states, step=1, **kwargs)


def _checkpoint_layout(
    meta: Any,
) -> tuple[list[dict[str, Any]], list[list[str]], list[dict[str, bool]]]:
    """The groups, the state names and the 8-bit states' maps (per parameter, ``{name:
    signed}``; absent in checkpoints without 8-bit state) of a checkpoint's metadata, checked
    for the shape :meth:`Optimizer.load` reads (the values are
    :meth:`Optimizer.load_state_dict`'s to check)."""
    if not isinstance(meta, dict):
        raise ValueError("the checkpoint's metadata must be a JSON object")
    groups, names = meta.get("param_groups"), meta.get("state_names")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError("the checkpoint's param_groups must be a list of objects")
    if not isinstance(names, list) or not all(
        isinstance(entry, list) and all(isinstance(n, str) for n in entry) for entry in names
    ):
        raise ValueError("the checkpoint's state_names must be a list of lists of names")
    quantized = meta.get("quantized", [])
    if not isinstance(quantized, list) or not all(
        isinstance(entry, dict) and all(isinstance(v, bool) for v in entry.values())
        for entry in quantized
    ):
        raise ValueError("the checkpoint's quantized must be a list of {name: signed} objects")
    return groups, names, quantized


def _by_dtype(
    arrays: list[np.ndarray],
    indices: range,
    quantized: Callable[[np.ndarray], bool] = lambda array: False,
) -> list[list[int]]:
    """``indices`` split by the dtype of ``arrays[i]`` (and by whether ``quantized`` says its
    state is 8-bit), in order of first appearance."""
    split: dict[tuple[np.dtype[Any], bool], list[int]] = {}
    for i in indices:
        split.setdefault((arrays[i].dtype, quantized(arrays[i])), []).append(i)
    return list(split.values())


def _state_arrays(state: State, separator: str = ".") -> list[tuple[str, np.ndarray]]:
    """The arrays a state holds, with the suffix naming each: itself (``""``), or an 8-bit
    state's ``codes`` and ``absmax``."""
    if isinstance(state, QuantizedState):
        return [(f"{separator}codes", state.codes), (f"{separator}absmax", state.absmax)]
    return [("", state)]


def _normalized(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """``hyperparameters`` with ``betas`` as a tuple of floats, as the specs write it (a list
    from JSON or a caller compares equal after this)."""
    betas = hyperparameters.get("betas")
    if isinstance(betas, (list, tuple)) and not isinstance(betas, str):
        hyperparameters = {**hyperparameters, "betas": tuple(betas)}
    return hyperparameters


def _checked_step(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where} must be an integer, got {value!r}")
    if not 0 <= int(value) < 2**63:
        raise ValueError(f"{where} must be in [0, 2**63), got {value}")
    return int(value)


def _checked_real(
    value: Any, where: str, *, low_open: bool = False, high: float = math.inf
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{where} must be a number, got {value!r}")
    low_ok = value > 0 if low_open else value >= 0
    if not (math.isfinite(value) and low_ok and value <= high):
        raise ValueError(f"{where} is out of range: {value!r}")
    return float(value)


def _constructor(spec: OptimizerSpec) -> Callable[..., None]:
    """An ``__init__`` with PyTorch's parameter names and defaults for ``spec``'s optimizer: the
    hyperparameters in torch's order (``lr`` may be positional), ``maximize`` and lrfast's own
    options keyword-only."""
    positional = [h for h in spec.hyperparameters if h.name != "maximize"]
    keyword = [h for h in spec.hyperparameters if h.name == "maximize"]
    arguments = ["self", "params: ParamsOrGroups"]
    arguments += [f"{h.name}: {specs.annotation(h)} = {h.default!r}" for h in positional]
    arguments += ["*"] + [f"{h.name}: bool = {h.default!r}" for h in keyword]
    arguments += [
        "max_grad_norm: Optional[float] = None",
        "grad_norm_type: float = 2.0",
        "cycle_momentum: bool = False",
        "master_weights: bool = False",
        "state_bits: int = 32",
        f"min_8bit_size: int = {MIN_8BIT_SIZE}",
    ]
    names = ", ".join(f"{h.name!r}: {h.name}" for h in spec.hyperparameters)
    source = (
        "from __future__ import annotations\n"
        f"def __init__({', '.join(arguments)}) -> None:\n"
        f"    Optimizer.__init__(self, params, {{{names}}}, max_grad_norm=max_grad_norm,\n"
        "        grad_norm_type=grad_norm_type, cycle_momentum=cycle_momentum,\n"
        "        master_weights=master_weights, state_bits=state_bits,\n"
        "        min_8bit_size=min_8bit_size)\n"
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
        f"Each :meth:`step` runs :func:`lrfast.{spec.function_name}` once per parameter group and "
        "dtype over all their parameters; its docstring gives the update rule. State: "
        + ", ".join(f"``{slot.name}``" for slot in spec.slots)
        + ".",
        "",
        "Args:",
        "    params: an array, a list of arrays, or a list of parameter groups (dicts with",
        "        ``'params'`` and the hyperparameters that group overrides); updated in place.",
        *(
            f"    {h.name}: {h.doc}; {h.range_text}, default ``{h.default!r}``."
            for h in spec.hyperparameters
        ),
        "    max_grad_norm: clip the gradients to this global norm in each step (fused).",
        "    grad_norm_type: the norm's order for ``max_grad_norm``.",
        "    cycle_momentum: drive the momentum from a cycling ``lr`` schedule.",
        "    master_weights: keep float32 master copies of float16/bfloat16 parameters.",
        "    state_bits: 32, or 8 for block-wise 8-bit state (``lrfast.QuantizedState``) of",
        "        float32 parameters of at least ``min_8bit_size`` elements (a quarter the memory).",
        "    min_8bit_size: with ``state_bits=8``, smaller parameters keep float32 state.",
    ]
    return "\n".join(lines)


class OptimizerClass(Protocol):
    """What type checkers know of a generated optimizer class: it builds an :class:`Optimizer`.
    At run time each is a real subclass, with the signature of its spec (``inspect.signature``
    and ``help()`` show it)."""

    spec: OptimizerSpec

    def __call__(self, params: ParamsOrGroups, *args: Any, **kwargs: Any) -> Optimizer: ...


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
