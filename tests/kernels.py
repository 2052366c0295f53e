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


def _all(states: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    return lambda h: states


def _rmsprop_needs(h: dict[str, Any]) -> tuple[str, ...]:
    names = ("square_avg",)
    if h["momentum"] != 0:
        names += ("momentum_buffer",)
    if h["centered"]:
        names += ("grad_avg",)
    return names


betas = st.tuples(unit_open, unit_open)
adam_hyper = {
    "lr": lr,
    "betas": betas,
    "eps": eps,
    "weight_decay": small,
    "amsgrad": flag,
    "maximize": flag,
    "grad_scale": scale,
}

KERNELS = [
    Kernel(
        "sgd",
        lrfast.sgd_step,
        ref.sgd_step,
        ("momentum_buffer",),
        {
            "lr": lr,
            "momentum": st.sampled_from([0.0, 0.5, 0.9]),
            "dampening": st.sampled_from([0.0, 0.1]),
            "nesterov": flag,
            "weight_decay": small,
            "maximize": flag,
            "grad_scale": scale,
        },
        lambda h: ("momentum_buffer",) if h["momentum"] else (),
    ),
    Kernel(
        "adagrad",
        lrfast.adagrad_step,
        ref.adagrad_step,
        ("state_sum",),
        {
            "lr": lr,
            "lr_decay": small,
            "weight_decay": small,
            "eps": eps,
            "maximize": flag,
            "grad_scale": scale,
        },
        _all(("state_sum",)),
    ),
    Kernel(
        "rmsprop",
        lrfast.rmsprop_step,
        ref.rmsprop_step,
        ("square_avg", "momentum_buffer", "grad_avg"),
        {
            "lr": lr,
            "alpha": st.floats(0.0, 1.0),
            "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
            "weight_decay": small,
            "momentum": st.sampled_from([0.0, 0.9]),
            "centered": flag,
            "maximize": flag,
            "grad_scale": scale,
        },
        _rmsprop_needs,
    ),
    Kernel(
        "adadelta",
        lrfast.adadelta_step,
        ref.adadelta_step,
        ("square_avg", "acc_delta"),
        {
            "lr": lr,
            "rho": st.floats(0.0, 1.0),
            "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
            "weight_decay": small,
            "maximize": flag,
            "grad_scale": scale,
        },
        _all(("square_avg", "acc_delta")),
    ),
    Kernel(
        "adam",
        lrfast.adam_step,
        ref.adam_step,
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        adam_hyper,
        lambda h: ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h["amsgrad"] else ()),
    ),
    Kernel(
        "adamw",
        lrfast.adamw_step,
        ref.adamw_step,
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        adam_hyper,
        lambda h: ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h["amsgrad"] else ()),
    ),
    Kernel(
        "adamax",
        lrfast.adamax_step,
        ref.adamax_step,
        ("exp_avg", "exp_inf"),
        {
            "lr": lr,
            "betas": betas,
            "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
            "weight_decay": small,
            "maximize": flag,
            "grad_scale": scale,
        },
        _all(("exp_avg", "exp_inf")),
    ),
    Kernel(
        "nadam",
        lrfast.nadam_step,
        ref.nadam_step,
        ("exp_avg", "exp_avg_sq"),
        {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": small,
            "momentum_decay": st.floats(0.0, 0.01),
            "decoupled_weight_decay": flag,
            "maximize": flag,
            "grad_scale": scale,
        },
        _all(("exp_avg", "exp_avg_sq")),
    ),
    Kernel(
        "radam",
        lrfast.radam_step,
        ref.radam_step,
        ("exp_avg", "exp_avg_sq"),
        {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": small,
            "decoupled_weight_decay": flag,
            "maximize": flag,
            "grad_scale": scale,
        },
        _all(("exp_avg", "exp_avg_sq")),
    ),
]

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
