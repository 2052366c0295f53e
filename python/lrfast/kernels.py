"""The functional kernels: ``lrfast.adam_step`` and the rest, one per optimizer spec.

Each function is compiled at import from its spec (:mod:`lrfast.specs`), so its signature,
defaults and docstring are the Rust definition's; the body forwards to the one Rust entry point
(``lrfast._lrfast.step``), which validates everything before writing any array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Union

import numpy as np

from . import _lrfast
from .quantized import QuantizedState
from .schedules import Schedule
from .specs import OptimizerSpec, body_source, docstring, optimizers, signature_source

__all__: list[str] = []

# The argument types the generated signatures name.
Arrays = Union[np.ndarray, Sequence[np.ndarray]]
States = Union[Arrays, QuantizedState, Sequence[QuantizedState]]
LearningRate = Union[float, Schedule]


def _make(s: OptimizerSpec) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"_step": _lrfast.step}
    source = "from __future__ import annotations\n" + signature_source(s) + "\n" + body_source(s)
    exec(compile(source, f"<lrfast.{s.function_name}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[s.function_name]
    function.__doc__ = docstring(s)
    function.__module__ = "lrfast"
    function.__qualname__ = s.function_name
    return function


for _spec in optimizers():
    globals()[_spec.function_name] = _make(_spec)
    __all__.append(_spec.function_name)
