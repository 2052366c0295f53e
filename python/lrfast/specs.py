"""The optimizers' specs, read from their one definition in Rust, and the source generated
from them.

Each optimizer is defined once, in Rust (``rust/optim/<name>.rs``: its ``SPEC``): names,
hyperparameters with defaults, ranges and docs, state slots and the update rule. This module
reads those specs at import (:func:`optimizers`) and writes, from them, each kernel's signature
and docstring (:mod:`lrfast.kernels` compiles them) and the stub ``kernels.pyi``
(``python -m lrfast.specs > python/lrfast/kernels.pyi``; a test checks it is current).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Optional

from . import _lrfast

__all__ = ["Hyperparameter", "OptimizerSpec", "Slot", "optimizers", "spec"]


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: PyTorch's name and default, its valid range and what it does."""

    name: str
    default: Any
    range: str
    """``"non_negative"``, ``"unit_open"`` ([0, 1)), ``"unit_closed"`` ([0, 1]) or ``"flag"``."""
    range_text: str
    kernel: bool
    """False for values only the optimizer classes take (the value state starts from)."""
    doc: str


@dataclass(frozen=True)
class Slot:
    """One state array: its name, when the update needs it, and what it holds."""

    name: str
    torch_key: str
    """PyTorch's key for this array in an optimizer's state (``sum`` for ``state_sum``)."""
    need: str
    """``"always"``, ``"nonzero"`` (when ``need_of`` is not 0) or ``"flag"`` (when set)."""
    need_of: Optional[str]
    initial: Optional[str]
    """The hyperparameter whose value the array starts from, or None for zeros."""
    signed: bool
    """Whether the values can be negative: 8-bit state (:class:`lrfast.QuantizedState`) uses
    the signed map for such slots and the unsigned one for the others."""
    full_precision: Optional[str]
    """Why this slot cannot be stored in 8 bits, or None if it can."""
    doc: str

    def needed(self, hyperparameters: dict[str, Any]) -> bool:
        """Whether the update reads and writes this slot under ``hyperparameters``."""
        if self.need == "always":
            return True
        assert self.need_of is not None
        value = hyperparameters[self.need_of]
        return bool(value) if self.need == "flag" else value != 0


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer's interface, as defined in Rust: see :func:`optimizers`."""

    name: str
    torch_name: str
    summary: str
    rule: tuple[str, ...]
    notes: tuple[str, ...]
    hyperparameters: tuple[Hyperparameter, ...]
    slots: tuple[Slot, ...]
    carried: Optional[tuple[str, str]]
    """NAdam's ``("mu_product", doc)``: a scalar passed in and returned by each update."""
    momentum: Optional[str]
    example: tuple[str, str]

    @property
    def function_name(self) -> str:
        return f"{self.name}_step"

    @cached_property
    def kernel_hyperparameters(self) -> tuple[Hyperparameter, ...]:
        return tuple(h for h in self.hyperparameters if h.kernel)

    @property
    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter's default, in PyTorch's constructor order (a new dict)."""
        return dict(self._defaults)

    @cached_property
    def _defaults(self) -> dict[str, Any]:
        return {h.name: h.default for h in self.hyperparameters}

    def needed_slots(self, hyperparameters: dict[str, Any]) -> tuple[str, ...]:
        """The state arrays the update uses under ``hyperparameters`` (defaults filled in)."""
        values = {**self._defaults, **hyperparameters}
        return tuple(s.name for s in self.slots if s.needed(values))


def _load() -> tuple[OptimizerSpec, ...]:
    specs = []
    for raw in _lrfast.optimizer_specs():
        specs.append(
            OptimizerSpec(
                name=raw["name"],
                torch_name=raw["torch_name"],
                summary=raw["summary"],
                rule=tuple(raw["rule"]),
                notes=tuple(raw["notes"]),
                hyperparameters=tuple(Hyperparameter(**h) for h in raw["hyperparameters"]),
                slots=tuple(Slot(**s) for s in raw["slots"]),
                carried=raw["carried"],
                momentum=raw["momentum"],
                example=(raw["example"][0], raw["example"][1]),
            )
        )
    return tuple(specs)


_SPECS = _load()
_BY_NAME = {s.name: s for s in _SPECS}


def optimizers() -> tuple[OptimizerSpec, ...]:
    """Every optimizer lrfast defines: names, hyperparameters (default, range, doc), state
    slots and update rule, read from the Rust definitions that the kernels validate with.

    >>> [s.name for s in lrfast.optimizers()][:3]
    ['sgd', 'adagrad', 'rmsprop']
    >>> lrfast.spec("adam").defaults["betas"]
    (0.9, 0.999)
    """
    return _SPECS


def spec(name: str) -> OptimizerSpec:
    """The spec of optimizer ``name`` (``"adam"``, ``"sgd"``, ...)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(_BY_NAME)}") from None


# -- generating the functions ------------------------------------------------------------------

_ANNOTATION = {"flag": "bool"}


def annotation(h: Hyperparameter) -> str:
    """The type of ``h`` as generated signatures write it."""
    if h.name == "lr":
        return "LearningRate"
    if isinstance(h.default, tuple):
        return "tuple[float, float]"
    return _ANNOTATION.get(h.range, "float")


def signature_source(s: OptimizerSpec) -> str:
    """The ``def`` line of ``s``'s kernel, with annotations and defaults."""
    arguments = ["param: Arrays", "grad: Arrays"]
    for slot in s.slots:
        if slot.need == "always":
            arguments.append(f"{slot.name}: States")
        else:
            arguments.append(f"{slot.name}: Optional[States] = None")
    arguments += ["*", "step: int"]
    for h in s.kernel_hyperparameters:
        arguments.append(f"{h.name}: {annotation(h)} = {h.default!r}")
    if s.carried is not None:
        arguments.append(f"{s.carried[0]}: Optional[float] = None")
    arguments += ["grad_scale: float = 1.0", "master: Optional[Arrays] = None"]
    returns = "float" if s.carried is not None else "None"
    return f"def {s.function_name}({', '.join(arguments)}) -> {returns}:"


def body_source(s: OptimizerSpec) -> str:
    """The generated function's body: one call of the Rust entry point."""
    states = "".join(f"{slot.name}, " for slot in s.slots)
    rest = "".join(f"{h.name}, " for h in s.kernel_hyperparameters[1:])
    carried = s.carried[0] if s.carried is not None else "None"
    call = (
        f"_step({s.name!r}, param, grad, ({states}), master, step, lr, ({rest}), "
        f"grad_scale, {carried})"
    )
    return f"    return {call}\n" if s.carried else f"    {call}\n"


def docstring(s: OptimizerSpec) -> str:
    """The docstring of ``s``'s kernel: the rule, every argument with its default and range, an
    example that runs as a doctest."""
    lines = [
        f"{s.summary[0].upper()}{s.summary[1:]}: one update in place "
        f"(``torch.optim.{s.torch_name}`` semantics).",
        "",
        "Update rule, with ``g = grad_scale·grad`` (negated when ``maximize``) and ``t = step``::",
        "",
        *(f"    {line}" for line in s.rule),
        "",
        *s.notes,
        *([""] if s.notes else []),
        "Args:",
        "    param: the parameter array, or a list of them (updated in place).",
        "    grad: the gradient, like ``param`` (only read).",
    ]
    for slot in s.slots:
        when = {"always": "", "nonzero": f"; needed when ``{slot.need_of}`` is not 0"}
        when["flag"] = f"; needed with ``{slot.need_of}``"
        kind = "signed" if slot.signed else "unsigned"
        eight_bit = (
            f"; or an 8-bit ``lrfast.QuantizedState`` ({kind})"
            if slot.full_precision is None
            else " (never 8-bit)"
        )
        lines.append(
            f"    {slot.name}: {slot.doc}, like ``param`` (updated){when[slot.need]}{eight_bit}."
        )
    lines.append("    step: the number of this update, from 1.")
    for h in s.kernel_hyperparameters:
        extra = " (a float or an ``lrfast.schedules`` schedule, evaluated at ``step - 1``)"
        lines.append(
            f"    {h.name}: {h.doc}{extra if h.name == 'lr' else ''}; {h.range_text}, "
            f"default ``{h.default!r}``."
        )
    if s.carried is not None:
        lines.append(f"    {s.carried[0]}: {s.carried[1]}.")
    lines += [
        "    grad_scale: a factor fused into the gradient (clipping without writing it).",
        "    master: float32 master copies of float16/bfloat16 parameters (read and written).",
        "",
        "8-bit state: with ``lrfast.QuantizedState`` states (all of them, float32 parameters),",
        "each block of 256 values is decoded, updated by the float32 rule and re-encoded in one",
        "pass (``lrfast.quantized``).",
        "",
        "Returns:",
        f"    the new ``{s.carried[0]}``."
        if s.carried
        else "    None: the arrays are updated in place.",
        "",
        "Raises:",
        "    TypeError: an argument of the wrong type or dtype; ValueError: a value out of range,",
        "    a shape, layout or aliasing fault, or a missing state. Nothing is written then.",
        "",
        "Example:",
        "",
        "    >>> p = np.ones(3, np.float32); g = np.full(3, 0.5, np.float32)",
    ]
    required = [slot.name for slot in s.slots if slot.need == "always"]
    if required:
        zeros = ", ".join("np.zeros_like(p)" for _ in required)
        lines.append(f"    >>> {', '.join(required)} = {zeros}")
    states = "".join(f"{name}, " for name in required)
    call = f"lrfast.{s.function_name}(p, g, {states}step=1, {s.example[0]})"
    lines += [
        f"    >>> {'_ = ' if s.carried else ''}{call}",
        "    >>> print(p)",
        f"    {s.example[1]}",
    ]
    return "\n".join(lines)


def stub_source() -> str:
    """The text of ``kernels.pyi``: the generated signatures, for type checkers."""
    header = (
        '"""Generated by ``python -m lrfast.specs`` from the Rust specs; do not edit."""\n\n'
        "from collections.abc import Sequence\n"
        "from typing import Any, Optional, Union\n\n"
        "import numpy.typing as npt\n\n"
        "from .quantized import QuantizedState\n"
        "from .schedules import Schedule\n\n"
        "Arrays = Union[npt.NDArray[Any], Sequence[npt.NDArray[Any]]]\n"
        "States = Union[Arrays, QuantizedState, Sequence[QuantizedState]]\n"
        "LearningRate = Union[float, Schedule]\n\n"
        f"__all__ = {[s.function_name for s in _SPECS]!r}\n\n"
    )
    return header + "".join(f"{signature_source(s)} ...\n" for s in _SPECS)


if __name__ == "__main__":
    sys.stdout.write(stub_source())
