"""Every kind of bad input raises a clear exception naming the argument and changes nothing."""

from __future__ import annotations

from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest
from adversarial import attempt

from kernels import DEFAULTS, KERNELS, Kernel

N = 37  # odd, spans several SIMD vectors


def fresh(kernel: Kernel, dtype: Any = np.float32) -> dict[str, Any]:
    """Valid arguments for one call: arrays with non-trivial values."""
    rng = np.random.default_rng(0)
    hyper = dict(DEFAULTS[kernel.name])
    needs = kernel.needs({**_full_defaults(kernel), **hyper})
    arrays = {
        "param": rng.standard_normal(N).astype(dtype),
        "grad": rng.standard_normal(N).astype(dtype),
    }
    for name in needs:
        arrays[name] = np.abs(rng.standard_normal(N)).astype(dtype)
    return {"arrays": arrays, "hyper": hyper, "step": 3}


def _full_defaults(kernel: Kernel) -> dict[str, Any]:
    return {"momentum": 0.0, "centered": False, "amsgrad": False}


def call(kernel: Kernel, args: dict[str, Any]) -> Any:
    arrays = dict(args["arrays"])
    param, grad = arrays.pop("param"), arrays.pop("grad")
    return kernel.fast(param, grad, **arrays, step=args["step"], **args["hyper"])


Mutation = Callable[[Kernel, dict[str, Any]], str]


def always(kernel: Kernel) -> bool:
    return True


# (name, expected exception, mutation, which kernels it applies to)
CASES: list[tuple[str, type[Exception], Mutation, Callable[[Kernel], bool]]] = []


def case(
    exc: type[Exception], applies: Callable[[Kernel], bool] = always
) -> Callable[[Mutation], Mutation]:
    def register(fn: Mutation) -> Mutation:
        CASES.append((fn.__name__, exc, fn, applies))
        return fn

    return register


def state_name(kernel: Kernel, args: dict[str, Any]) -> str:
    return next(n for n in args["arrays"] if n not in ("param", "grad"))


@case(TypeError)
def param_not_an_array(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["param"] = a["arrays"]["param"].tolist()
    return "param"


@case(TypeError)
def grad_not_an_array(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = None
    return "grad"


@case(TypeError)
def param_integer_dtype(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["param"] = np.arange(N)
    return "param"


@case(TypeError)
def float16_state_of_float16_param(k: Kernel, a: dict[str, Any]) -> str:
    # float16 parameters are updated with float32 state (mixed precision), not float16 state.
    for name in a["arrays"]:
        a["arrays"][name] = a["arrays"][name].astype(np.float16)
    return state_name(k, a)


@case(TypeError)
def grad_other_float_dtype(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = a["arrays"]["grad"].astype(np.float64)
    return "grad"


@case(TypeError)
def state_other_float_dtype(k: Kernel, a: dict[str, Any]) -> str:
    name = state_name(k, a)
    a["arrays"][name] = a["arrays"][name].astype(np.float64)
    return name


@case(TypeError)
def byte_swapped_state(k: Kernel, a: dict[str, Any]) -> str:
    name = state_name(k, a)
    a["arrays"][name] = a["arrays"][name].astype(">f4")
    return name


@case(ValueError)
def grad_shape_mismatch(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = a["arrays"]["grad"][:-1].copy()
    return "grad"


@case(ValueError)
def state_same_size_other_shape(k: Kernel, a: dict[str, Any]) -> str:
    for name in ("param", "grad"):
        a["arrays"][name] = np.ascontiguousarray(np.resize(a["arrays"][name], 36).reshape(6, 6))
    name = state_name(k, a)
    for other in a["arrays"]:
        if other not in ("param", "grad"):
            a["arrays"][other] = np.ascontiguousarray(np.resize(a["arrays"][other], 36))
    a["arrays"][name] = a["arrays"][name].reshape(4, 9)
    for other in a["arrays"]:
        if other not in ("param", "grad", name):
            a["arrays"][other] = a["arrays"][other].reshape(6, 6)
    return name


@case(ValueError)
def param_non_contiguous(k: Kernel, a: dict[str, Any]) -> str:
    for name in a["arrays"]:
        a["arrays"][name] = np.repeat(a["arrays"][name], 2)
    a["arrays"]["param"] = a["arrays"]["param"][::2]
    for name in a["arrays"]:
        if name != "param":
            a["arrays"][name] = np.ascontiguousarray(a["arrays"][name][::2])
    return "param"


@case(ValueError)
def grad_non_contiguous(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = np.repeat(a["arrays"]["grad"], 2)[::2]
    return "grad"


@case(ValueError)
def state_fortran_order(k: Kernel, a: dict[str, Any]) -> str:
    for n in a["arrays"]:
        a["arrays"][n] = np.ascontiguousarray(np.resize(a["arrays"][n], 36).reshape(6, 6))
    name = state_name(k, a)
    a["arrays"][name] = np.asfortranarray(a["arrays"][name])
    return name


@case(ValueError)
def param_read_only(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["param"].flags.writeable = False
    return "param"


@case(ValueError)
def state_read_only(k: Kernel, a: dict[str, Any]) -> str:
    name = state_name(k, a)
    a["arrays"][name].flags.writeable = False
    return name


@case(ValueError)
def param_misaligned(k: Kernel, a: dict[str, Any]) -> str:
    raw = np.zeros(N * 4 + 1, np.uint8)
    misaligned = raw[1:].view(np.float32)
    misaligned[...] = a["arrays"]["param"]
    a["arrays"]["param"] = misaligned
    return "param"


@case(ValueError)
def same_array_as_param_and_state(k: Kernel, a: dict[str, Any]) -> str:
    name = state_name(k, a)
    a["arrays"][name] = a["arrays"]["param"]
    return name


@case(ValueError)
def grad_is_the_param(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = a["arrays"]["param"]
    return "grad"


@case(ValueError)
def overlapping_views(k: Kernel, a: dict[str, Any]) -> str:
    buffer = np.concatenate([a["arrays"]["param"], a["arrays"]["param"]])
    name = state_name(k, a)
    a["arrays"]["param"] = buffer[:N]
    a["arrays"][name] = buffer[N // 2 : N // 2 + N]
    return name


@case(ValueError)
def two_arrays_over_the_same_memory(k: Kernel, a: dict[str, Any]) -> str:
    raw = bytearray(a["arrays"]["param"].tobytes())
    name = state_name(k, a)
    a["arrays"]["param"] = np.frombuffer(raw, np.float32)
    a["arrays"][name] = np.frombuffer(raw, np.float32)
    return name


def _is_sgd(k: Kernel) -> bool:
    return k.name == "sgd"


# States that may be omitted (default None) but that DEFAULTS' options need.
OPTIONAL_STATES = {
    "sgd": "momentum_buffer",
    "rmsprop": "grad_avg",
    "adam": "max_exp_avg_sq",
    "adamw": "max_exp_avg_sq",
}


def _has_optional_state(k: Kernel) -> bool:
    return k.name in OPTIONAL_STATES


@case(ValueError, applies=_has_optional_state)
def optional_state_missing(k: Kernel, a: dict[str, Any]) -> str:
    name = OPTIONAL_STATES[k.name]
    a["arrays"][name] = None
    return name


@case(TypeError, applies=lambda k: k.name != "sgd")  # SGD's only state is optional
def required_state_missing(k: Kernel, a: dict[str, Any]) -> str:
    name = k.states[0]
    del a["arrays"][name]
    return name


def _hyper(name: str, value: Any) -> Mutation:
    def mutate(k: Kernel, a: dict[str, Any]) -> str:
        a["hyper"][name] = value
        return name

    return mutate


for hp, bad in [
    ("lr", -1e-3),
    ("lr", float("nan")),
    ("lr", float("inf")),
    ("eps", -1.0),
    ("weight_decay", -0.1),
    ("weight_decay", float("nan")),
    ("momentum", -0.9),
    ("alpha", 1.5),
    ("rho", -0.1),
    ("lr_decay", -1.0),
    ("momentum_decay", -1.0),
]:
    CASES.append((f"{hp}={bad}", ValueError, _hyper(hp, bad), lambda k, hp=hp: hp in k.hyper))


def _betas(value: tuple[float, float]) -> Mutation:
    def mutate(k: Kernel, a: dict[str, Any]) -> str:
        a["hyper"]["betas"] = value
        return "betas"

    return mutate


for bad_betas in [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.9), (float("nan"), 0.9)]:
    CASES.append(
        (f"betas={bad_betas}", ValueError, _betas(bad_betas), lambda k: "betas" in k.hyper)
    )


def _step(value: Any) -> Mutation:
    def mutate(k: Kernel, a: dict[str, Any]) -> str:
        a["step"] = value
        return "step"

    return mutate


for bad_step in [0, -1, 1.5, 2.0, True, "3", None, 2**70]:
    CASES.append((f"step={bad_step!r}", ValueError, _step(bad_step), always))


@case(ValueError, applies=_is_sgd)
def nesterov_without_momentum(k: Kernel, a: dict[str, Any]) -> str:
    a["hyper"].update(momentum=0.0, nesterov=True)
    return "nesterov"


@case(ValueError, applies=_is_sgd)
def nesterov_with_dampening(k: Kernel, a: dict[str, Any]) -> str:
    a["hyper"].update(nesterov=True, dampening=0.5)
    return "nesterov"


APPLICABLE = [
    (k, exc, mutate) for k in KERNELS for name, exc, mutate, applies in CASES if applies(k)
]
IDS = [f"{k.name}-{name}" for k in KERNELS for name, _, _, applies in CASES if applies(k)]


@pytest.mark.parametrize("kernel,exc,mutate", APPLICABLE, ids=IDS)
def test_bad_input_raises_and_changes_nothing(
    kernel: Kernel, exc: type[Exception], mutate: Mutation
) -> None:
    args = fresh(kernel)
    argument = mutate(kernel, args)
    arrays = list(args["arrays"].values())
    attempt("kernel arguments", lambda: call(kernel, args), rejects=(exc,), naming=argument,
            arrays=arrays)  # fmt: skip


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_acceptable_inputs(kernel: Kernel) -> None:
    """Things that look odd but are fine: read-only grad, disjoint views of one buffer, 0-d,
    empty arrays, numpy integer steps."""
    args = fresh(kernel)
    args["arrays"]["grad"].flags.writeable = False
    call(kernel, args)

    args = fresh(kernel)
    names = list(args["arrays"])
    buffer = np.concatenate([args["arrays"][n] for n in names])
    for i, n in enumerate(names):
        args["arrays"][n] = buffer[i * N : (i + 1) * N]
    before = buffer.copy()
    args["step"] = np.int64(2)
    call(kernel, args)
    assert not np.array_equal(buffer, before)

    for shape in [(), (0,), (3, 0, 2)]:
        args = fresh(kernel)
        for n in args["arrays"]:
            args["arrays"][n] = np.ones(shape, np.float32)
        call(kernel, args)


# Mixed precision: float16 / bfloat16 parameters and gradients, float32 state and master copy.


def fresh_mixed(kernel: Kernel, dtype: Any = np.float16) -> dict[str, Any]:
    args = fresh(kernel)
    for name in ("param", "grad"):
        args["arrays"][name] = args["arrays"][name].astype(dtype)
    args["arrays"]["master"] = args["arrays"]["param"].astype(np.float32)
    return args


MIXED_CASES: list[tuple[str, type[Exception], Mutation]] = []


def mixed_case(exc: type[Exception]) -> Callable[[Mutation], Mutation]:
    def register(fn: Mutation) -> Mutation:
        MIXED_CASES.append((fn.__name__, exc, fn))
        return fn

    return register


@mixed_case(ValueError)
def master_of_float32_param(k: Kernel, a: dict[str, Any]) -> str:
    for name in ("param", "grad"):
        a["arrays"][name] = a["arrays"][name].astype(np.float32)
    return "master"


@mixed_case(TypeError)
def master_float16(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = a["arrays"]["master"].astype(np.float16)
    return "master"


@mixed_case(TypeError)
def master_float64(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = a["arrays"]["master"].astype(np.float64)
    return "master"


@mixed_case(ValueError)
def master_shape_mismatch(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = a["arrays"]["master"][:-1].copy()
    return "master"


@mixed_case(ValueError)
def master_read_only(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"].flags.writeable = False
    return "master"


@mixed_case(ValueError)
def master_non_contiguous(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = np.repeat(a["arrays"]["master"], 2)[::2]
    return "master"


@mixed_case(TypeError)
def master_not_an_array(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = a["arrays"]["master"].tolist()
    return "master"


@mixed_case(ValueError)
def master_is_a_state(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = a["arrays"][state_name(k, a)]
    return "master"


@mixed_case(ValueError)
def master_overlaps_the_param(k: Kernel, a: dict[str, Any]) -> str:
    # Different dtypes over one buffer: the check is on bytes, not on array identity.
    raw = np.zeros(N * 4, np.uint8)
    a["arrays"]["master"] = raw.view(np.float32)
    a["arrays"]["param"] = raw[: N * 2].view(np.float16)
    return "master"


@mixed_case(TypeError)
def grad_float32_with_float16_param(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = a["arrays"]["grad"].astype(np.float32)
    return "grad"


@mixed_case(TypeError)
def grad_bfloat16_with_float16_param(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["grad"] = a["arrays"]["grad"].astype(ml_dtypes.bfloat16)
    return "grad"


@mixed_case(TypeError)
def state_float64_with_bfloat16_param(k: Kernel, a: dict[str, Any]) -> str:
    for name in ("param", "grad"):
        a["arrays"][name] = a["arrays"][name].astype(ml_dtypes.bfloat16)
    name = state_name(k, a)
    a["arrays"][name] = a["arrays"][name].astype(np.float64)
    return name


@mixed_case(TypeError)
def master_list_for_one_param(k: Kernel, a: dict[str, Any]) -> str:
    a["arrays"]["master"] = [a["arrays"]["master"]]
    return "master"


@mixed_case(ValueError)
def param_list_with_a_short_master_list(k: Kernel, a: dict[str, Any]) -> str:
    for name in list(a["arrays"]):
        a["arrays"][name] = [a["arrays"][name], a["arrays"][name].copy()]
    a["arrays"]["master"] = a["arrays"]["master"][:1]
    return "master"


@mixed_case(TypeError)
def param_list_mixing_float16_and_bfloat16(k: Kernel, a: dict[str, Any]) -> str:
    for name in list(a["arrays"]):
        a["arrays"][name] = [a["arrays"][name], a["arrays"][name].copy()]
    for name in ("param", "grad"):
        a["arrays"][name][1] = a["arrays"][name][1].astype(ml_dtypes.bfloat16)
    return "param[1]"


for bad_step in [0, 1.5]:
    MIXED_CASES.append((f"step={bad_step!r}", ValueError, _step(bad_step)))
MIXED_CASES.append(("lr=-1", ValueError, _hyper("lr", -1.0)))


@pytest.mark.parametrize(
    "kernel,exc,mutate",
    [(k, exc, m) for k in KERNELS for _, exc, m in MIXED_CASES],
    ids=[f"{k.name}-{name}" for k in KERNELS for name, _, _ in MIXED_CASES],
)
def test_bad_mixed_input_raises_and_changes_nothing(
    kernel: Kernel, exc: type[Exception], mutate: Mutation
) -> None:
    args = fresh_mixed(kernel)
    argument = mutate(kernel, args)
    arrays = [a for v in args["arrays"].values() for a in (v if isinstance(v, list) else [v])]
    attempt("kernel arguments, mixed precision", lambda: call(kernel, args), rejects=(exc,),
            naming=argument, arrays=arrays)  # fmt: skip


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_acceptable_mixed_inputs(kernel: Kernel, dtype: Any) -> None:
    """With or without a master copy, read-only grads, empty and 0-d arrays."""
    for with_master in (True, False):
        args = fresh_mixed(kernel, dtype)
        if not with_master:
            del args["arrays"]["master"]
        args["arrays"]["grad"].flags.writeable = False
        before = args["arrays"]["param"].copy()
        call(kernel, args)
        assert not np.array_equal(args["arrays"]["param"], before)
    for shape in [(), (0,), (3, 0, 2)]:
        args = fresh_mixed(kernel, dtype)
        for n in args["arrays"]:
            low = n in ("param", "grad")
            args["arrays"][n] = np.ones(shape, dtype if low else np.float32)
        call(kernel, args)
