"""PyTorch's optimizers, running lrfast's kernels: swap ``torch.optim.AdamW`` for
``lrfast.torch.AdamW`` and nothing else in the training loop changes::

    import lrfast.torch
    optimizer = lrfast.torch.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

Each class is a subclass of ``torch.optim.Optimizer`` with the torch class's constructor
arguments, defaults and param-group keys (read from the installed torch), so closures,
``zero_grad``, step hooks, ``add_param_group``, every ``torch.optim.lr_scheduler``,
``torch.distributed.optim.ZeroRedundancyOptimizer`` and DeepSpeed's client optimizers work as
with the original. ``step()`` updates the CPU tensors in place through NumPy views of their
memory (read afresh each step: ZeRO and DeepSpeed rebind ``param.data``): one Rust call per
step finds, checks and updates every tensor of every group, with one kernel run per group, dtype
and step count, multithreaded, the GIL released.

float32 and float64 parameters keep state of their dtype; float16 and bfloat16 parameters keep
float32 state and, with ``master_weights=True``, a float32 master copy (``state[p]["master"]``)
that the updates accumulate into. ``state_dict()`` is torch's layout (``step`` a 0-d tensor,
``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``, ``sum``, ...), so a ``torch.optim`` checkpoint
loads into the lrfast class and back. ``foreach`` and ``fused`` are accepted and ignored (the
kernels are fused and multithreaded already); ``capturable`` and ``differentiable`` are refused,
as are CUDA tensors, sparse gradients, complex dtypes and non-contiguous parameters: the step
checks every tensor of every group before it writes any.

``state_bits=8`` keeps the state of float32 parameters of at least ``min_8bit_size`` (4,096)
elements in 8 bits per value (:class:`lrfast.QuantizedState`'s block-wise format): each slot is
then two tensors in the state dict in place of torch's one, ``{key}_codes`` (uint8, the
parameter's shape) and ``{key}_absmax`` (float32, one scale per block of 256), kept bit for bit
by ``state_dict``/``load_state_dict``. float32 state loaded into an 8-bit optimizer is encoded,
8-bit state loaded into a 32-bit one decoded (so a ``torch.optim`` state dict goes both ways
through a 32-bit lrfast.torch optimizer).

Beyond torch.optim: ``lr`` may be an lrfast schedule (:mod:`lrfast.schedules`), evaluated in
the kernel at each parameter's step (``SGD``, which torch gives no step count, then keeps a
``step`` too; torch.optim's SGD ignores it when it loads the state). ``SGDHD`` and ``AdamHD``
are lrfast's hypergradient optimizers (the rate learns itself, :mod:`lrfast.tuning.hypergradient`)
for float32 and float64 CPU tensors: each param group learns its own rate in ``group["lr"]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, Callable, ClassVar, Optional

import numpy as np

from .extras import install_hint

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised where torch is not installed
    raise ImportError(f"lrfast.torch needs PyTorch: {install_hint('torch')}") from error

from . import _lrfast, specs
from .optim import MIN_8BIT_SIZE, check_hyperparameters, check_state_bits
from .quantized import BLOCK, QuantizedState
from .schedules import Schedule
from .specs import OptimizerSpec
from .tuning import hypergradient

__all__ = [
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
    "SGDHD",
    "AdamHD",
]

# Accepted and ignored: the kernels are fused and multithreaded whatever these say.
_IGNORED = frozenset({"foreach", "fused"})
# Refused when true: the update runs in Rust on the CPU, outside autograd and CUDA graphs.
_REFUSED = frozenset({"capturable", "differentiable"})
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float32, torch.float64, *_LOW_PRECISION)


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives ``step`` and ``mu_product``: float64 when that is torch's
    default dtype, else float32 (``torch.optim.optimizer._get_scalar_dtype``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _counted(spec: OptimizerSpec, lr: Any) -> bool:
    """Whether the state counts steps in ``step``: torch's SGD keeps no count, unless its
    rate is an lrfast schedule, which is evaluated at each parameter's step."""
    return spec.name != "sgd" or isinstance(lr, Schedule)


def _loss(closure: Optional[Callable[[], Any]]) -> Any:
    """What ``closure`` returns, evaluated with gradients on (a step runs under no_grad)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _as_float(value: Any) -> Any:
    """A tensor hyperparameter (torch allows ``lr`` and ``betas`` as tensors) as a float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a tensor hyperparameter must have one element, got {value.shape}")
        return float(value.item())
    if isinstance(value, (tuple, list)):
        return tuple(_as_float(v) for v in value)
    return value


class Optimizer(torch.optim.Optimizer):
    """Base class: a ``torch.optim.Optimizer`` whose step is an lrfast kernel (see the module).

    Each optimizer class is this class with ``spec`` (lrfast's definition of the update) and
    ``torch_class`` (the ``torch.optim`` class whose arguments and group keys it takes).
    """

    spec: ClassVar[OptimizerSpec]
    torch_class: ClassVar[type[torch.optim.Optimizer]]
    # The torch class's defaults, as an instance holds them (every param-group key).
    _torch_defaults: ClassVar[dict[str, Any]]

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        master_weights: bool = False,
        state_bits: int = 32,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ) -> None:
        check_state_bits(state_bits, min_8bit_size)
        self.master_weights = bool(master_weights)
        self.state_bits = int(state_bits)
        self.min_8bit_size = int(min_8bit_size)
        # Per group (by identity): the values last checked, and what the kernel takes.
        self._checked: dict[int, tuple[tuple[Any, ...], OptimizerSpec, Any, tuple[Any, ...]]] = {}
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("master_weights", False)
        self.__dict__.setdefault("state_bits", 32)
        self.__dict__.setdefault("min_8bit_size", MIN_8BIT_SIZE)
        self.__dict__.setdefault("_checked", {})

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group, as ``torch.optim.Optimizer.add_param_group``; its hyperparameters and
        tensors are checked before it is added."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        where = f"param_groups[{len(getattr(self, 'param_groups', []))}]"
        self._kernel_values({**self.defaults, **param_group}, where)
        super().add_param_group(param_group)

    def _kernel_values(
        self, group: dict[str, Any], where: str
    ) -> tuple[OptimizerSpec, Any, tuple[Any, ...]]:
        """Checks ``group``'s hyperparameters; returns the spec of the kernel it runs, its
        ``lr`` and the kernel's other hyperparameters in spec order."""
        for name in _REFUSED:
            if group.get(name):
                raise ValueError(
                    f"{where}: {name}=True is not supported: lrfast updates CPU tensors in "
                    "Rust, outside autograd and CUDA graphs"
                )
        spec = self.spec
        if spec.name in ("adam", "adamw"):
            # torch's Adam(decoupled_weight_decay=True) is AdamW, and AdamW is Adam with it.
            decoupled = group.get("decoupled_weight_decay", spec.name == "adamw")
            spec = specs.spec("adamw" if decoupled else "adam")
        own = {h.name for h in spec.hyperparameters} | _IGNORED | _REFUSED
        for name, default in self._torch_defaults.items():
            if name not in own and name != "decoupled_weight_decay" and group.get(name) != default:
                raise ValueError(f"{where}: {name}={group.get(name)!r} is not supported")
        try:
            values = {h.name: _as_float(group[h.name]) for h in spec.hyperparameters}
        except KeyError as e:
            raise ValueError(f"{where} has no {e.args[0]!r}") from None
        lr = values["lr"]
        try:
            check_hyperparameters(spec, values)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {e}") from None
        if self.state_bits == 8:
            for slot in spec.slots:
                if slot.full_precision and slot.needed(values):
                    raise ValueError(
                        f"{where}: state_bits=8: {slot.torch_key} cannot be stored in 8 bits: "
                        f"{slot.full_precision}"
                    )
        rest = tuple(values[h.name] for h in spec.kernel_hyperparameters[1:])
        return spec, lr, rest

    def _checked_group(
        self, g: int, group: dict[str, Any]
    ) -> tuple[OptimizerSpec, Any, tuple[Any, ...]]:
        """:meth:`_kernel_values` of group ``g``, re-checked only when its values changed (a
        scheduler writes ``lr`` between steps)."""
        values = tuple(_as_float(v) for k, v in group.items() if k != "params")
        cached = self._checked.get(id(group))
        if cached is not None and cached[0] == values:
            return cached[1], cached[2], cached[3]
        spec, lr, rest = self._kernel_values(group, f"param_groups[{g}]")
        self._checked[id(group)] = (values, spec, lr, rest)
        return spec, lr, rest

    # -- state -------------------------------------------------------------------------------
    def _state_dtype(self, param: torch.Tensor) -> torch.dtype:
        return torch.float32 if param.dtype in _LOW_PRECISION else param.dtype

    def _quantizes(self, param: torch.Tensor) -> bool:
        """Whether ``param``'s state is 8-bit: ``{key}_codes`` and ``{key}_absmax`` per slot."""
        return (
            self.state_bits == 8
            and param.dtype == torch.float32
            and param.numel() >= self.min_8bit_size
        )

    def _create_state(self, missing: list[tuple[int, int]]) -> list[tuple[Any, Optional[set[str]]]]:
        """Creates the state the parameters ``missing`` (``(group, index)``) lack; returns
        what is needed to take it back: each parameter with the keys it had before (``None``
        for none)."""
        created: list[tuple[Any, Optional[set[str]]]] = []
        for g, i in missing:
            group = self.param_groups[g]
            spec, lr, _ = self._checked_group(g, group)
            p = group["params"][i]
            state = self.state.get(p)
            before = None if state is None else set(state)
            created.append((p, before))
            state = {} if state is None else state
            values = {h.name: group[h.name] for h in spec.hyperparameters}
            quantizes = self._quantizes(p)
            for slot in spec.slots:
                key = slot.torch_key
                if not slot.needed(values) or key in state or f"{key}_codes" in state:
                    continue
                value = 0.0 if slot.initial is None else float(group[slot.initial])
                if quantizes:
                    full = np.full(p.shape, value, np.float32)
                    state.update(
                        _eight_bit(key, QuantizedState.from_array(full, signed=slot.signed))
                    )
                else:
                    state[key] = torch.full(p.shape, value, dtype=self._state_dtype(p))
            if _counted(spec, lr) and "step" not in state:
                # A torch.optim.SGD state has a momentum buffer from its first step on.
                taken = float(before is not None and "momentum_buffer" in before)
                state["step"] = torch.tensor(taken, dtype=_scalar_dtype())
            if spec.carried is not None and "mu_product" not in state:
                state["mu_product"] = torch.tensor(1.0, dtype=_scalar_dtype())
            if self.master_weights and p.dtype in _LOW_PRECISION and "master" not in state:
                state["master"] = p.detach().to(torch.float32, copy=True)
            self.state[p] = state
        return created

    def _take_back(self, created: list[tuple[Any, Optional[set[str]]]]) -> None:
        for p, before in created:
            if before is None:
                self.state.pop(p, None)
            else:
                for key in set(self.state[p]) - before:
                    del self.state[p][key]

    # -- the update --------------------------------------------------------------------------
    # Not traced by torch.compile: the update is a Rust call on the tensors' memory.
    @torch.compiler.disable  # type: ignore[untyped-decorator]
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter that has a gradient, in place; ``closure``
        re-evaluates the model and returns the loss, as in ``torch.optim``. Every group and
        tensor is checked before any is written."""
        loss = _loss(closure)
        calls = []
        for g, group in enumerate(self.param_groups):
            spec, lr, rest = self._checked_group(g, group)
            calls.append((spec.name, group["params"], _counted(spec, lr), lr, rest))
        if len(self._checked) > len(self.param_groups):  # groups replaced (ZeRO swaps them)
            current = {id(group) for group in self.param_groups}
            self._checked = {k: v for k, v in self._checked.items() if k in current}
        # One Rust call finds, checks and updates every tensor; it reports the parameters
        # whose state is missing (first steps) with nothing written.
        missing = _lrfast.torch_step(calls, self.state, self.master_weights, [])
        if missing:
            created = self._create_state(missing)
            try:
                _lrfast.torch_step(calls, self.state, self.master_weights, missing)
            except BaseException:
                self._take_back(created)  # a refused step leaves no state behind
                raise
        return loss

    # -- checkpoints -------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state dict of this class or of its ``torch.optim`` original, after checking
        all of it (every group's values, every state tensor's key, shape and dtype): a state
        dict that does not fit changes nothing. torch's base class casts state to each
        parameter's dtype; float16 and bfloat16 parameters keep float32 state here instead."""
        self._check_loadable(state_dict)
        saved = state_dict["state"]
        super().load_state_dict(state_dict)
        ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for index, p in zip(ids, params):
            state = self.state.get(p)
            if not state:
                continue
            for key in ("step", "mu_product"):  # numbers in old torch checkpoints, as torch.optim
                if key in state and not isinstance(state[key], torch.Tensor):
                    state[key] = torch.tensor(float(state[key]), dtype=_scalar_dtype())
            converted = self._load_eight_bit(p, saved[index], state)
            if p.dtype in _LOW_PRECISION:
                for key, value in saved[index].items():
                    if key in converted:
                        continue
                    if key == "mu_product" and isinstance(value, torch.Tensor):
                        state[key] = value.clone()  # its own dtype, not the parameter's
                    elif key != "step" and isinstance(value, torch.Tensor):
                        state[key] = value.to(torch.float32, copy=True)

    def _load_eight_bit(
        self, param: torch.Tensor, saved: dict[str, Any], state: dict[str, Any]
    ) -> set[str]:
        """Gives ``param``'s loaded ``state`` the form this optimizer keeps: 8-bit slots (as
        saved, bit for bit, or quantized from float32 ones) where :meth:`_quantizes` says so,
        else float32 (decoded from 8-bit ones). Returns the saved keys it handled."""
        handled = set()
        for slot in self.spec.slots:
            key = slot.torch_key
            codes, absmax = f"{key}_codes", f"{key}_absmax"
            if codes in saved:
                handled |= {codes, absmax}
                eight_bit = QuantizedState(
                    saved[codes].contiguous().numpy().copy(),
                    saved[absmax].to(torch.float32).contiguous().numpy().copy(),
                    slot.signed,
                )
            elif key in saved and self._quantizes(param):
                handled.add(key)
                values = saved[key].to(torch.float32).contiguous().numpy()
                eight_bit = QuantizedState.from_array(values, signed=slot.signed)
            else:
                continue
            for stale in (key, codes, absmax):
                state.pop(stale, None)
            if self._quantizes(param):
                state.update(_eight_bit(key, eight_bit))
            else:
                decoded = torch.from_numpy(eight_bit.dequantize())
                state[key] = decoded.to(self._state_dtype(param))
        return handled

    def _check_loadable(self, state_dict: Any) -> None:
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict):
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
        groups = state_dict.get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict['param_groups'] must be a list of {len(self.param_groups)} groups, "
                "one per group of the optimizer"
            )
        known = {s.torch_key for s in self.spec.slots} | {"master"}
        eight_bit = {f"{s.torch_key}_{part}": s for s in self.spec.slots for part in _PARTS}
        scalars = {"step"} | ({"mu_product"} if self.spec.carried is not None else set())
        for g, (saved, group) in enumerate(zip(groups, self.param_groups)):
            where = f"state_dict['param_groups'][{g}]"
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
                raise ValueError(f"{where} must be a dict of {len(group['params'])} 'params'")
            self._kernel_values({**group, **saved}, where)
            for index, p in zip(saved["params"], group["params"]):
                entry = state_dict["state"].get(index)
                if entry is None:
                    continue
                if not isinstance(entry, dict):
                    raise TypeError(f"state_dict['state'][{index}] must be a dict")
                for key, value in entry.items():
                    name = f"state_dict['state'][{index}][{key!r}]"
                    if key in scalars:
                        number = isinstance(value, (int, float)) and not isinstance(value, bool)
                        if not (number or (isinstance(value, torch.Tensor) and value.numel() == 1)):
                            raise ValueError(f"{name} must be a number or a one-element tensor")
                    elif key in eight_bit:
                        _check_eight_bit(name, key, eight_bit[key], value, entry, p)
                    elif key not in known:
                        raise ValueError(f"{name}: {type(self).__name__} keeps no {key!r}")
                    elif not isinstance(value, torch.Tensor) or not value.is_floating_point():
                        raise TypeError(f"{name} must be a floating-point tensor")
                    elif value.shape != p.shape:
                        raise ValueError(
                            f"{name} has shape {tuple(value.shape)}, its parameter {tuple(p.shape)}"
                        )

    def __repr__(self) -> str:
        return super().__repr__().replace(self.torch_class.__name__, type(self).__name__, 1)


_PARTS = ("codes", "absmax")


def _eight_bit(key: str, state: QuantizedState) -> dict[str, torch.Tensor]:
    """The state-dict entries of an 8-bit slot ``key``, sharing ``state``'s memory."""
    return {
        f"{key}_codes": torch.from_numpy(state.codes),
        f"{key}_absmax": torch.from_numpy(state.absmax),
    }


def _check_eight_bit(
    name: str, key: str, slot: specs.Slot, value: Any, entry: dict[str, Any], param: torch.Tensor
) -> None:
    """Checks one half of a saved 8-bit slot: uint8 codes of the parameter's shape, or its
    float32 block scales, the other half beside it."""
    codes = key.endswith("_codes")
    other = f"{slot.torch_key}_{'absmax' if codes else 'codes'}"
    if other not in entry:
        raise ValueError(f"{name} has no {other!r} beside it")
    if slot.full_precision:
        raise ValueError(
            f"{name}: {slot.torch_key} cannot be stored in 8 bits: {slot.full_precision}"
        )
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor")
    if codes and (value.dtype != torch.uint8 or value.shape != param.shape):
        raise ValueError(
            f"{name} has dtype {value.dtype} and shape {tuple(value.shape)}; 8-bit codes are "
            f"torch.uint8 of the parameter's shape {tuple(param.shape)}"
        )
    blocks = -(-param.numel() // BLOCK)
    if not codes and (not value.is_floating_point() or value.shape != (blocks,)):
        raise ValueError(
            f"{name} has dtype {value.dtype} and shape {tuple(value.shape)}; the block scales "
            f"are float32 of shape ({blocks},), one per block of {BLOCK}"
        )


def _optimizer_class(name: str) -> type[Optimizer]:
    spec = specs.spec(name)
    torch_class: Any = getattr(torch.optim, spec.torch_name)
    signature = inspect.signature(torch_class)
    torch_defaults = dict(torch_class([torch.zeros(1, requires_grad=True)]).defaults)
    missing = {h.name for h in spec.hyperparameters} - set(torch_defaults)
    if missing:  # pragma: no cover - a torch that renamed an argument
        raise ImportError(f"torch.optim.{spec.torch_name} has no {sorted(missing)}")

    def __init__(
        self: Optimizer,
        *args: Any,
        master_weights: bool = False,
        state_bits: int = 32,
        min_8bit_size: int = MIN_8BIT_SIZE,
        **kwargs: Any,
    ) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        params = arguments.pop("params")
        # torch's keys in torch's order, with the keys its constructor sets itself (AdamW's
        # decoupled_weight_decay=True).
        defaults = {k: arguments.pop(k, v) for k, v in torch_defaults.items()}
        Optimizer.__init__(
            self,
            params,
            {**defaults, **arguments},
            master_weights=master_weights,
            state_bits=state_bits,
            min_8bit_size=min_8bit_size,
        )

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += signature.parameters.values()
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters += [
        inspect.Parameter("master_weights", keyword, default=False),
        inspect.Parameter("state_bits", keyword, default=32),
        inspect.Parameter("min_8bit_size", keyword, default=MIN_8BIT_SIZE),
    ]
    __init__.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    __init__.__doc__ = f"See :class:`lrfast.torch.{spec.torch_name}`."
    doc = "\n".join(
        [
            f"{spec.summary[0].upper()}{spec.summary[1:]}: ``torch.optim.{spec.torch_name}`` "
            f"running :func:`lrfast.{spec.function_name}` (its docstring gives the rule).",
            "",
            f"Arguments, defaults and param-group keys are torch.optim.{spec.torch_name}'s; "
            "``foreach`` and ``fused`` are ignored, ``capturable`` and ``differentiable`` "
            "refused. ``master_weights=True`` keeps float32 master copies of float16 and "
            "bfloat16 parameters. ``state_bits=8`` keeps the state of float32 parameters of at "
            "least ``min_8bit_size`` elements in 8 bits per value (``{key}_codes``, uint8, and "
            "``{key}_absmax``, a float32 scale per block of 256, for each key below; "
            "lrfast.QuantizedState explains the format). State per parameter: ``step``, "
            + ", ".join(f"``{s.torch_key}``" for s in spec.slots)
            + (", ``mu_product``" if spec.carried else "")
            + ".",
        ]
    )
    namespace = {
        "spec": spec,
        "torch_class": torch_class,
        "_torch_defaults": torch_defaults,
        "__init__": __init__,
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": spec.torch_name,
    }
    return type(spec.torch_name, (Optimizer,), namespace)


SGD = _optimizer_class("sgd")
Adagrad = _optimizer_class("adagrad")
RMSprop = _optimizer_class("rmsprop")
Adadelta = _optimizer_class("adadelta")
Adam = _optimizer_class("adam")
AdamW = _optimizer_class("adamw")
Adamax = _optimizer_class("adamax")
NAdam = _optimizer_class("nadam")
RAdam = _optimizer_class("radam")


class _Hypergradient(torch.optim.Optimizer):
    """Shared by :class:`SGDHD` and :class:`AdamHD`: lrfast's hypergradient optimizers
    (:mod:`lrfast.tuning.hypergradient`) as ``torch.optim`` optimizers. Each param group learns
    its own rate: each step moves ``group["lr"]`` along the hypergradient of the group's
    parameters together, then updates them with it, so ``param_groups[i]["lr"]`` is the rate
    the last step used and a state dict saves it. A scheduler would fight the learned rate:
    use ``lr_min``/``lr_max`` instead."""

    # The NumPy class whose arguments, defaults and step function this class takes.
    numpy_class: ClassVar[type[hypergradient._HypergradientOptimizer]]
    step_function: ClassVar[Callable[..., float]]
    slots: ClassVar[tuple[str, ...]]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group, as ``torch.optim.Optimizer.add_param_group``, after checking its
        hyperparameters."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        self._check_group({**self.defaults, **param_group}, len(getattr(self, "param_groups", [])))
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any], g: int) -> None:
        try:
            hypergradient.check_group(self.numpy_class.spec, self.numpy_class._defaults, group)
        except (TypeError, ValueError) as e:
            raise type(e)(f"param_groups[{g}]: {e}") from None

    @torch.compiler.disable  # type: ignore[untyped-decorator]
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One hypergradient step of every group: checks every group and tensor, then moves
        each group's rate and updates its parameters that have a gradient, in place."""
        loss = _loss(closure)
        calls = []
        for g, group in enumerate(self.param_groups):
            self._check_group(group, g)
            members = [(i, p) for i, p in enumerate(group["params"]) if p.grad is not None]
            if members:
                calls.append((g, members, self._group_step(g, members)))
        # Views of every tensor, creating missing state (taken back if the step is refused),
        # and one overlap check over them all, before the first write.
        created = {id(p): p for _, members, _ in calls for _, p in members if p not in self.state}
        try:
            arrays = [[self._arrays(g, i, p) for i, p in members] for g, members, _ in calls]
            flat = [a for group in arrays for entry in group for a in entry]
            written = [k != 1 for group in arrays for entry in group for k in range(len(entry))]
            pair = _lrfast.first_overlap(flat, written)
            if pair is not None:
                raise ValueError("two tensors of the step share memory, one of them written")
            for (g, members, step), entries in zip(calls, arrays):
                group = self.param_groups[g]
                others = {k: group[k] for k in self.numpy_class._defaults if k != "lr"}
                columns = [list(column) for column in zip(*entries)]
                group["lr"] = type(self).step_function(
                    *columns, step=step, lr=float(group["lr"]), **others
                )
                torch._foreach_add_([self.state[p]["step"] for _, p in members], 1.0)
                for _, p in members:  # updated: its state is now real
                    created.pop(id(p), None)
        except BaseException:
            for p in created.values():
                self.state.pop(p, None)
            raise
        return loss

    def _group_step(self, g: int, members: list[tuple[int, Any]]) -> int:
        """The step all of group ``g``'s members take: they update together."""
        counts = {}
        for i, p in members:
            step = self.state[p]["step"] if p in self.state else 0
            counts[i] = int(step.item() if isinstance(step, torch.Tensor) else step)
        if len(set(counts.values())) > 1:
            i, j = min(counts, key=counts.__getitem__), max(counts, key=counts.__getitem__)
            a, b = counts[i], counts[j]
            raise ValueError(
                f"param_groups[{g}]['params'][{i}] has taken {a} steps and "
                f"param_groups[{g}]['params'][{j}] {b}: a hypergradient step updates a group's "
                "parameters together, so they must have gradients at the same steps"
            )
        return next(iter(counts.values())) + 1

    def _arrays(self, g: int, i: int, p: torch.Tensor) -> list[np.ndarray]:
        """NumPy views of a parameter, its gradient and its state (created if missing)."""
        where = f"param_groups[{g}]['params'][{i}]"
        grad = p.grad
        assert grad is not None
        for tensor, what in ((p, where), (grad, f"the gradient of {where}")):
            if not tensor.is_cpu or tensor.layout != torch.strided:
                raise ValueError(f"{what} must be a dense CPU tensor")
            if tensor.dtype not in (torch.float32, torch.float64):
                raise TypeError(
                    f"{what} has dtype {tensor.dtype}; {type(self).__name__} updates float32 and "
                    "float64 parameters"
                )
        if not p.is_contiguous():
            raise ValueError(f"{where} is not contiguous; lrfast.torch updates contiguous tensors")
        if grad.dtype != p.dtype or grad.shape != p.shape:
            raise ValueError(f"the gradient of {where} has another dtype or shape")
        state = self.state.get(p)
        if state is None:
            state = {"step": torch.tensor(0.0, dtype=_scalar_dtype())}
            state.update((key, torch.zeros_like(p, memory_format=torch.contiguous_format))
                         for key in self.slots)  # fmt: skip
            self.state[p] = state
        for key in self.slots:
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor) or tensor.shape != p.shape:
                raise ValueError(f"state {key!r} of {where} must be a tensor shaped like it")
            if tensor.dtype != p.dtype or not (tensor.is_cpu and tensor.is_contiguous()):
                raise ValueError(f"state {key!r} of {where} must be a contiguous {p.dtype} tensor")
        return [t.detach().numpy() for t in (p, grad.contiguous(), *(state[k] for k in self.slots))]


def _hypergradient_class(
    numpy_class: type[hypergradient._HypergradientOptimizer],
    step_function: Callable[..., float],
    slots: tuple[str, ...],
) -> type[_Hypergradient]:
    signature = inspect.signature(numpy_class)
    defaults = dict(numpy_class._defaults)

    def __init__(self: _Hypergradient, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        params = arguments.pop("params")
        _Hypergradient.__init__(self, params, {k: arguments[k] for k in defaults})

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters, *signature.parameters.values()]
    )
    name = numpy_class.__name__
    doc = (
        f"{name} as a ``torch.optim`` optimizer: :class:`lrfast.{name}`'s rule "
        f"(:func:`lrfast.tuning.hypergradient.{step_function.__name__}`), arguments and "
        "defaults, for float32 and float64 CPU tensors; each param group learns its own rate "
        "in ``group['lr']``. State per parameter: ``step``, "
        + ", ".join(f"``{key}``" for key in slots)
        + "."
    )
    namespace = {
        "numpy_class": numpy_class,
        "step_function": staticmethod(step_function),
        "slots": slots,
        "__init__": __init__,
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": name,
    }
    return type(name, (_Hypergradient,), namespace)


SGDHD = _hypergradient_class(hypergradient.SGDHD, hypergradient.sgd_hd_step, ("direction",))
AdamHD = _hypergradient_class(
    hypergradient.AdamHD, hypergradient.adam_hd_step, ("exp_avg", "exp_avg_sq")
)
