"""`python benches/state8.py`: 8-bit optimizer state against float32 state, the float32 memory
floor, torch's fused float32 kernels and the 8-bit CPU optimizers of bitsandbytes and torchao
(where they are installed), on the same arrays in one interleaved run.

Every contestant updates float32 parameters of the same size, allocated as users allocate them
(``np.zeros_like`` / torch's allocator); the floor is lrfast's memory-traffic baseline with the
same number of float32 state arrays. Medians of interleaved rounds (``lrfast.cli.bench``'s
timing); ``--json`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Optional

import numpy as np

import lrfast
from lrfast import QuantizedState, _lrfast
from lrfast.cli.bench import _time as time_interleaved

# The optimizers the 8-bit issue names, with the hyperparameters that give them state.
KERNELS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3},
    "sgd": {"lr": 1e-2, "momentum": 0.9},
    "rmsprop": {"lr": 1e-3},
    "adagrad": {"lr": 1e-2},
}
TORCH_FUSED = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad"}


def _shapes(size: str) -> list[int]:
    return [4096] * 1000 if size == "1000x4096" else [2 ** int(size)]


def _contestants(kernel: str, shapes: list[int], rng: np.random.Generator) -> dict[str, Any]:
    hyper = KERNELS[kernel]
    spec = lrfast.spec(kernel)
    names = spec.needed_slots({**spec.defaults, **hyper})
    fast = getattr(lrfast, spec.function_name)
    params = [rng.standard_normal(n).astype(np.float32) for n in shapes]
    grads = [(rng.standard_normal(n) * 1e-2).astype(np.float32) for n in shapes]
    signed = {s.name: s.signed for s in spec.slots}
    states32 = {name: [np.zeros_like(p) for p in params] for name in names}
    states8 = {
        name: [QuantizedState.zeros(p.shape, signed=signed[name]) for p in params] for name in names
    }
    params8 = [p.copy() for p in params]
    floor_params = [p.copy() for p in params]
    floor_states = [[np.zeros_like(p) for p in params] for _ in names]
    counter = {"t": 0}

    def step() -> int:
        counter["t"] += 1
        return counter["t"]

    impls: dict[str, Callable[[], None]] = {
        "8-bit": lambda: fast(params8, grads, **states8, step=step(), **hyper),
        "float32": lambda: fast(params, grads, **states32, step=step(), **hyper),
        "floor": lambda: _lrfast._memory_floor_step(floor_params, grads, *floor_states),
    }
    watched = {"8-bit": params8[0], "float32": params[0], "floor": floor_params[0]}
    torch_impls = _torch_contestants(kernel, shapes, rng, hyper)
    for name, (fn, tensor) in torch_impls.items():
        impls[name] = fn
        watched[name] = tensor
    state_bytes = sum(s.nbytes for states in states8.values() for s in states)
    return {
        "impls": impls,
        "watched": watched,
        "state_bytes_per_param": state_bytes / sum(shapes),
    }


def _torch_contestants(
    kernel: str, shapes: list[int], rng: np.random.Generator, hyper: dict[str, Any]
) -> dict[str, tuple[Callable[[], None], np.ndarray]]:
    """torch's fused float32 step, bitsandbytes' and torchao's 8-bit CPU optimizers: those
    that import and run here."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(lrfast.get_num_threads())
    out: dict[str, tuple[Callable[[], None], np.ndarray]] = {}

    def tensors() -> list[Any]:
        params = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for n in shapes]
        for p in params:
            p.grad = torch.from_numpy((rng.standard_normal(p.numel()) * 1e-2).astype(np.float32))
        return params

    def add(name: str, make: Callable[[list[Any]], Any]) -> None:
        params = tensors()
        try:
            optimizer = make(params)
            optimizer.step()
        except Exception as error:  # a package that installs but cannot run here
            print(f"# {name}: not timed ({type(error).__name__}: {error})"[:200], file=sys.stderr)
            return
        out[name] = (optimizer.step, params[0].detach().numpy())

    if kernel in TORCH_FUSED:
        cls = getattr(torch.optim, TORCH_FUSED[kernel])
        add("torch fused", lambda params: cls(params, fused=True, **hyper))
    eight_bit = {"adam": "Adam8bit", "adamw": "AdamW8bit"}.get(kernel)
    if eight_bit is not None:
        try:
            import bitsandbytes as bnb

            bnb_cls = getattr(bnb.optim, eight_bit)
            add("bitsandbytes", lambda params: bnb_cls(params, **hyper))
        except ImportError:
            pass
        try:
            import torchao.optim

            ao_cls = getattr(torchao.optim, eight_bit)
            add("torchao", lambda params: ao_cls(params, **hyper))
        except ImportError:
            pass
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument("--sizes", default="20,24,26,1000x4096")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per row")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    print(f"lrfast {lrfast.__version__}, {lrfast.get_num_threads()} threads, "
          f"SIMD {lrfast.simd_level()}")  # fmt: skip
    header = "| optimizer | size | 8-bit | float32 | floor | 8-bit / floor | others |"
    print(header)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kernel in args.kernels.split(","):
        for size in args.sizes.split(","):
            case = _contestants(kernel, _shapes(size), rng)
            before = {n: a.copy() for n, a in case["watched"].items()}
            medians, _ = time_interleaved(case["impls"], args.budget)
            for name, array in case["watched"].items():
                if np.array_equal(array, before[name]) or not np.isfinite(array).all():
                    raise RuntimeError(f"{name} did not update {kernel} at {size} properly")
            others = ", ".join(
                f"{n} {medians[n] * 1e3:.2f} ms"
                for n in medians
                if n not in ("8-bit", "float32", "floor")
            )
            ms = {n: medians[n] * 1e3 for n in ("8-bit", "float32", "floor")}
            print(f"| {kernel} | {size} | {ms['8-bit']:.2f} ms | {ms['float32']:.2f} ms | "
                  f"{ms['floor']:.2f} ms | {ms['8-bit'] / ms['floor']:.2f}x | {others} |",
                  flush=True)  # fmt: skip
            rows.append({
                "kernel": kernel, "size": size, "seconds": medians,
                "state_bytes_per_param": case["state_bytes_per_param"],
            })  # fmt: skip
            del case
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
