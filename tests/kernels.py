"""One table of lrfast's kernels that drives every parametrized test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import hypothesis.strategies as st

import lrfast
import lrfast.reference as ref

unit_open = st.floats(0.0, 0.999)
small = st.floats(0.0, 0.1)
lr = st.floats(1e-6, 1.0)
eps = st.sampled_from([0.0, 1e-10, 1e-8, 1e-6, 1e-3])
flag = st.booleans()
# The fused gradient factor (clipping): mostly 1, sometimes a real scale.
scale = st.sampled_from([1.0, 1.0, 0.5, 1e-3])


@dataclass(frozen=True)
class Kernel:
    name: str
    fast: Callable[..., Any]
    reference: Callable[..., Any]
    # Positional state arrays, in signature order.
    states: tuple[str, ...]
    # Hyperparameter strategy (a fixed dict of strategies).
    hyper: dict[str, st.SearchStrategy[Any]]
    # The state arrays that the given hyperparameters need.
    needs: Callable[[dict[str, Any]], tuple[str, ...]]

    def hyperparameters(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(self.hyper).filter(self.valid)

    @staticmethod
    def valid(h: dict[str, Any]) -> bool:
        return not (h.get("nesterov") and (h.get("momentum", 0) <= 0 or h.get("dampening", 0)))


betas = st.tuples(unit_open, unit_open)

# How the tests draw each hyperparameter (by name, then per kernel where it differs); which
# hyperparameters and states each kernel has comes from its spec.
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "lr": lr,
    "betas": betas,
    "eps": eps,
    "weight_decay": small,
    "lr_decay": small,
    "momentum": st.sampled_from([0.0, 0.5, 0.9]),
    "dampening": st.sampled_from([0.0, 0.1]),
    "alpha": st.floats(0.0, 1.0),
    "rho": st.floats(0.0, 1.0),
    "momentum_decay": st.floats(0.0, 0.01),
    "nesterov": flag,
    "centered": flag,
    "amsgrad": flag,
    "decoupled_weight_decay": flag,
    "maximize": flag,
}
OVERRIDES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "rmsprop": {
        "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
        "momentum": st.sampled_from([0.0, 0.9]),
    },
    "adadelta": {"eps": st.sampled_from([1e-8, 1e-6, 1e-3])},
    "adamax": {"eps": st.sampled_from([1e-8, 1e-6, 1e-3])},
}


def _kernel(spec: lrfast.OptimizerSpec) -> Kernel:
    strategies = {**STRATEGIES, **OVERRIDES.get(spec.name, {})}
    hyper = {h.name: strategies[h.name] for h in spec.kernel_hyperparameters}
    return Kernel(
        spec.name,
        getattr(lrfast, spec.function_name),
        getattr(ref, spec.function_name),
        tuple(slot.name for slot in spec.slots),
        {**hyper, "grad_scale": scale},
        spec.needed_slots,
    )


KERNELS = [_kernel(spec) for spec in lrfast.optimizers()]

BY_NAME = {k.name: k for k in KERNELS}

# Minimal valid hyperparameters per kernel, for tests that need one working call.
DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "adagrad": {},
    "rmsprop": {"momentum": 0.5, "centered": True},
    "adadelta": {},
    "adam": {"amsgrad": True},
    "adamw": {"amsgrad": True},
    "adamax": {},
    "nadam": {},
    "radam": {},
}
