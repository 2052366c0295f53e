"""`python benches/torch_step.py`: a whole ``optimizer.step()`` of lrfast.torch.AdamW against
torch.optim.AdamW's fastest CPU paths, on the parameter lists of real models.

Every contestant steps the same torch-allocated tensors (``torch.randn`` parameters, gradients,
torch's own state), in one process, interleaved round by round; the table gives medians. The
memory floor is lrfast's ``param += grad; state += grad`` pass over the very same tensors (a
parameter, a gradient and two moments: Adam's traffic). bf16 rows: bfloat16 parameters and
gradients with float32 moments and a float32 master copy (torch: the master-weights recipe torch
users write, the bfloat16 gradients copied to float32 masters, ``AdamW`` on the masters, the
masters copied back to the bfloat16 parameters; lrfast: ``master_weights=True``, the whole
mixed-precision update in one pass).

Then AdamW on one flat float32 tensor of GPT-2 small's size, the partition DeepSpeed's
ZeRO-Offload keeps on the CPU, against DeepSpeedCPUAdam (DeepSpeed's own AVX CPU Adam, when its
C++ op builds here: it needs ``ninja`` on PATH and a C++ compiler) as well.

Each timed step follows a 20 ms pause: after a parallel region torch's OpenMP workers spin for
milliseconds, and a step that starts meanwhile shares the cores with them (in a training loop
that is lrfast.torch's step right after the backward pass: set ``OMP_WAIT_POLICY=PASSIVE``).

``--quick`` runs the small lists only; ``--json FILE`` writes the measurements.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import torch

import lrfast
import lrfast.torch as lt
from lrfast import _lrfast
from lrfast.cli.bench import SETTLE_S


def resnet50() -> list[tuple[int, ...]]:
    """ResNet-50's 161 parameter shapes (25.6 M parameters): convolutions, BatchNorm, fc."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [(width, inplanes, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if block == 0:
                shapes += [(4 * width, inplanes, 1, 1), (4 * width,), (4 * width,)]
            inplanes = 4 * width
    return [*shapes, (1000, 2048), (1000,)]


def gpt2_small() -> list[tuple[int, ...]]:
    """GPT-2 small's 148 parameter shapes (124 M parameters; the output layer is tied)."""
    d = 768
    shapes: list[tuple[int, ...]] = [(50257, d), (1024, d)]
    for _ in range(12):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]
        shapes += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return [*shapes, (d,), (d,)]


def bert_base() -> list[tuple[int, ...]]:
    """BERT-base's 199 parameter shapes (110 M): 124 of them biases and LayerNorm vectors."""
    d = 768
    shapes: list[tuple[int, ...]] = [(30522, d), (512, d), (2, d), (d,), (d,)]
    for _ in range(12):
        shapes += [(d, d), (d,)] * 4 + [(d,), (d,)]
        shapes += [(4 * d, d), (4 * d,), (d, 4 * d), (d,), (d,), (d,)]
    return [*shapes, (d, d), (d,)]


MODELS: dict[str, Callable[[], list[tuple[int, ...]]]] = {
    "1,000 x 4,096": lambda: [(4096,)] * 1000,
    "BERT-base": bert_base,
    "ResNet-50": resnet50,
    "GPT-2 small": gpt2_small,
}


def _tensors(shapes: list[tuple[int, ...]], dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=generator).to(dtype).requires_grad_()
        p.grad = torch.randn(shape, generator=generator).to(dtype) * 1e-3
        params.append(p)
    return params


def _array(tensor: torch.Tensor) -> Any:
    """A NumPy view of ``tensor``'s memory (bfloat16 through its 16-bit storage)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _master_weights_step(shapes: list[tuple[int, ...]], path: str) -> Callable[[], None]:
    """torch's master-weights recipe for bfloat16 parameters: the bfloat16 gradients copied
    into the float32 masters' ``.grad``, an AdamW step on the masters, the masters copied back
    into the bfloat16 parameters."""
    low = _tensors(shapes, torch.bfloat16)
    masters = [p.detach().float().requires_grad_() for p in low]
    for m in masters:
        m.grad = torch.empty_like(m)
    optimizer = torch.optim.AdamW(masters, lr=1e-3, **{path: True})
    low_grads = [p.grad for p in low]
    master_grads = [m.grad for m in masters]
    params = [p.detach() for p in low]

    def step() -> None:
        torch._foreach_copy_(master_grads, low_grads)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_copy_(params, masters)

    return step


def _contestants(shapes: list[tuple[int, ...]], bf16: bool) -> dict[str, Callable[[], Any]]:
    """The steps to time, each on its own tensors (state created by a first step)."""
    contestants: dict[str, Callable[[], Any]] = {}
    if bf16:
        ours = lt.AdamW(_tensors(shapes, torch.bfloat16), lr=1e-3, master_weights=True)
        contestants["lrfast.torch"] = ours.step
        for path in ("fused", "foreach"):
            contestants[f"torch {path}"] = _master_weights_step(shapes, path)
    else:
        ours = lt.AdamW(_tensors(shapes, torch.float32), lr=1e-3)
        contestants["lrfast.torch"] = ours.step
        for path in ("fused", "foreach"):
            params = _tensors(shapes, torch.float32)
            contestants[f"torch {path}"] = torch.optim.AdamW(params, lr=1e-3, **{path: True}).step
    for step in contestants.values():
        step()
    # The floor on lrfast's own tensors: one fused read-modify-write of p, g, m, v (and the
    # master copy for bf16), Adam's memory traffic with no arithmetic.
    arrays = [
        (p.detach(), p.grad, ours.state[p]["exp_avg"], ours.state[p]["exp_avg_sq"])
        for group in ours.param_groups
        for p in group["params"]
    ]
    views = [[_array(t) for t in column] for column in zip(*arrays)]  # type: ignore[arg-type]
    masters = (
        [_array(ours.state[p]["master"]) for g in ours.param_groups for p in g["params"]]
        if bf16
        else None
    )
    contestants["memory floor"] = lambda: _lrfast._memory_floor_step(*views, master=masters)
    return contestants


def interleaved(contestants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median ms of each step, timed round by round in turn, each after a pause."""
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, step in contestants.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def measure(shapes: list[tuple[int, ...]], bf16: bool, rounds: int) -> dict[str, float]:
    contestants = _contestants(shapes, bf16)
    return interleaved(contestants, rounds)


def flat_partition(size: int, rounds: int) -> dict[str, float]:
    """AdamW on one flat float32 tensor of ``size`` elements, the partition ZeRO-Offload keeps
    on the CPU: lrfast.torch, DeepSpeedCPUAdam (when its C++ op builds here), torch fused and
    the floor, interleaved. Returns medians in ms."""
    contestants: dict[str, Callable[[], Any]] = {}
    ours = lt.AdamW(_tensors([(size,)], torch.float32), lr=1e-3)
    contestants["lrfast.torch"] = ours.step
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        deepspeed = DeepSpeedCPUAdam(_tensors([(size,)], torch.float32), lr=1e-3, adamw_mode=True)
        contestants["DeepSpeedCPUAdam"] = deepspeed.step
    except Exception as error:  # no deepspeed, or its op does not build here: say so
        print(f"DeepSpeedCPUAdam not measured: {type(error).__name__}: {error}")
    fused = torch.optim.AdamW(_tensors([(size,)], torch.float32), lr=1e-3, fused=True)
    contestants["torch fused"] = fused.step
    for step in contestants.values():
        step()
    (p,) = ours.param_groups[0]["params"]
    state = ours.state[p]
    views = [[_array(t)] for t in (p, p.grad, state["exp_avg"], state["exp_avg_sq"])]
    contestants["memory floor"] = lambda: _lrfast._memory_floor_step(*views)
    return interleaved(contestants, rounds)


def overhead(rounds: int = 200) -> tuple[float, float]:
    """lrfast.torch's own cost per step, apart from the kernel: a fit of ``a + b·n`` to the
    step time of n one-element tensors (n = 1 and 1,000), microseconds."""
    medians = []
    for count in (1, 1000):
        optimizer = lt.AdamW(_tensors([(1,)] * count, torch.float32), lr=1e-3)
        optimizer.step()
        samples = []
        for _ in range(rounds if count == 1 else rounds // 10):
            start = time.perf_counter()
            optimizer.step()
            samples.append(time.perf_counter() - start)
        medians.append(statistics.median(samples) * 1e6)
    per_tensor = (medians[1] - medians[0]) / 999
    return medians[0] - per_tensor, per_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small lists only")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="write the measurements to this file")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, lrfast {lrfast.__version__}, "
        f"{torch.get_num_threads()} torch threads, {lrfast.get_num_threads()} lrfast threads, "
        f"SIMD {lrfast.simd_level()}; AdamW step, medians of {args.rounds} interleaved rounds\n"
    )
    print(
        "| list | tensors | params | dtype | lrfast.torch (ms) | torch fused (ms) |"
        " torch foreach (ms) | memory floor (ms) | lrfast / floor | torch fused / lrfast |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    names = list(MODELS)[:2] if args.quick else list(MODELS)
    for name in names:
        shapes = MODELS[name]()
        size = sum(torch.Size(s).numel() for s in shapes)
        for bf16 in (False, True):
            t = measure(shapes, bf16, args.rounds)
            rows.append({"list": name, "tensors": len(shapes), "params": size,
                         "dtype": "bf16+master" if bf16 else "float32", **t})  # fmt: skip
            print(
                f"| {name} | {len(shapes)} | {size / 1e6:.1f} M | {rows[-1]['dtype']} "
                f"| {t['lrfast.torch']:.2f} | {t['torch fused']:.2f} | {t['torch foreach']:.2f} "
                f"| {t['memory floor']:.2f} | {t['lrfast.torch'] / t['memory floor']:.2f}x "
                f"| {t['torch fused'] / t['lrfast.torch']:.2f}x |"
            )
    size = sum(torch.Size(s).numel() for s in gpt2_small())
    flat = flat_partition(size, args.rounds)
    print(f"\nOne flat float32 partition of {size / 1e6:.1f} M (GPT-2 small's), AdamW, ms:")
    print("| " + " | ".join(flat) + " |")
    print("| " + " | ".join("---" for _ in flat) + " |")
    print("| " + " | ".join(f"{t:.2f}" for t in flat.values()) + " |")
    fixed, per_tensor = overhead()
    print(f"\nlrfast.torch's own cost per step: {fixed:.1f} us + {per_tensor:.2f} us per tensor")
    if args.json:
        with open(args.json, "w") as f:
            record = {"rows": rows, "flat_partition_ms": flat, "overhead_us": [fixed, per_tensor]}
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
