"""`python benches/schedules.py`: what a schedule costs, measured in one run.

1. `schedule(step)` from Python, per call (target: under 150 ns).
2. `schedule.evaluate(steps)` over 10^7 steps against NumPy computing the same closed form
   (target: at least 3x faster).
3. An Adam step of 2^16 float32 elements with a schedule as `lr` against the same step with a
   float (target: no measurable difference).

Timings are interleaved (A B A B ...) and medians are quoted: this machine drifts 20-30% between
runs minutes apart, so only same-run ratios mean anything. `--json PATH` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any, Callable

import numpy as np

import lrfast
from lrfast import schedules as S

STEPS = 10_000_000


def per_call_ns(schedule: S.Schedule, calls: int = 200_000, repeats: int = 7) -> float:
    """Median over repeats of the mean time of one `schedule(t)` call, loop overhead removed."""
    ts = list(range(0, calls * 37, 37))

    def with_calls() -> float:
        start = time.perf_counter_ns()
        for t in ts:
            schedule(t)
        return time.perf_counter_ns() - start

    def empty_loop() -> float:
        start = time.perf_counter_ns()
        for _t in ts:
            pass
        return time.perf_counter_ns() - start

    samples = [(with_calls() - empty_loop()) / calls for _ in range(repeats)]
    return statistics.median(samples)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn (A B A B ...)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm up: page in the output, spin up the threads
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def numpy_cosine(steps: np.ndarray, base_lr: float, t_max: int, eta_min: float) -> np.ndarray:
    return eta_min + (base_lr - eta_min) * (1 + np.cos(np.pi * steps / t_max)) / 2


def numpy_one_cycle(steps: np.ndarray, max_lr: float, total: int, pct: float) -> np.ndarray:
    initial, end_up = max_lr / 25, pct * total - 1
    low = initial / 1e4
    up = np.minimum(steps / end_up, 1.0)
    down = np.clip((steps - end_up) / (total - 1 - end_up), 0.0, 1.0)
    rising = max_lr + (initial - max_lr) / 2 * (np.cos(np.pi * up) + 1)
    falling = low + (max_lr - low) / 2 * (np.cos(np.pi * down) + 1)
    return np.where(steps <= end_up, rising, falling)


def numpy_step(steps: np.ndarray, base_lr: float, step_size: int, gamma: float) -> np.ndarray:
    return base_lr * gamma ** (steps // step_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"threads": lrfast.get_num_threads(), "simd": lrfast.simd_level()}

    print("1. schedule(step) from Python, ns per call (median of 7 x 200,000 calls)")
    examples = {
        "Constant": S.Constant(0.1),
        "StepLR": S.StepLR(0.1, 1000),
        "CosineAnnealingLR": S.CosineAnnealingLR(0.1, STEPS),
        "OneCycleLR": S.OneCycleLR(0.1, STEPS),
        "Warmup(CosineAnnealingLR)": S.Warmup(S.CosineAnnealingLR(0.1, STEPS), 1000),
        "CosineAnnealingWarmRestarts": S.CosineAnnealingWarmRestarts(0.1, 1000, 2),
    }
    results["call_ns"] = {}
    for name, schedule in examples.items():
        ns = per_call_ns(schedule)
        results["call_ns"][name] = ns
        print(f"   {name:30s} {ns:7.1f} ns")
    builtin = per_call_ns(abs)  # type: ignore[arg-type]
    results["call_ns"]["abs (a builtin, for scale)"] = builtin
    print(f"   {'abs() (a C builtin, for scale)':30s} {builtin:7.1f} ns")

    print(f"\n2. evaluate() over {STEPS:,} steps vs NumPy, same formula (median ms)")
    steps = np.arange(STEPS, dtype=np.int64)
    pairs = {
        "CosineAnnealingLR": (
            S.CosineAnnealingLR(0.1, STEPS, 1e-4),
            lambda: numpy_cosine(steps, 0.1, STEPS, 1e-4),
        ),
        "OneCycleLR": (
            S.OneCycleLR(0.1, STEPS, pct_start=0.3),
            lambda: numpy_one_cycle(steps, 0.1, STEPS, 0.3),
        ),
        "StepLR": (
            S.StepLR(0.1, STEPS // 10, 0.5),
            lambda: numpy_step(steps, 0.1, STEPS // 10, 0.5),
        ),
    }
    results["evaluate_ms"] = {}
    for name, (schedule, numpy_fn) in pairs.items():
        np.testing.assert_allclose(schedule.evaluate(steps[:: STEPS // 1000]),
                                   numpy_fn()[:: STEPS // 1000], rtol=1e-9, atol=1e-15)  # fmt: skip
        t = interleaved(
            {"lrfast": lambda s=schedule: s.evaluate(steps), "numpy": numpy_fn}, args.repeats
        )
        ratio = t["numpy"] / t["lrfast"]
        results["evaluate_ms"][name] = {k: v * 1e3 for k, v in t.items()} | {"ratio": ratio}
        print(
            f"   {name:20s} lrfast {t['lrfast'] * 1e3:7.1f}  numpy {t['numpy'] * 1e3:7.1f}"
            f"  numpy/lrfast {ratio:4.1f}x"
        )

    print("\n3. Adam step, 2^16 float32, lr=float vs lr=schedule (median us, 2,000 steps each)")
    n = 1 << 16
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    arrays[3] = np.abs(arrays[3])
    p, g, m, v = arrays
    lrs: dict[str, Any] = {
        "float": 1e-3,
        "CosineAnnealingLR": S.CosineAnnealingLR(1e-3, 10_000),
        "Warmup(OneCycleLR)": S.Warmup(S.OneCycleLR(1e-3, 10_000), 100),
    }
    block = 2000

    def run(lr: Any) -> Callable[[], None]:
        def steps_block() -> None:
            for t in range(1, block + 1):
                lrfast.adam_step(p, g, m, v, step=t, lr=lr)

        return steps_block

    t = interleaved({name: run(lr) for name, lr in lrs.items()}, args.repeats)
    results["adam_2_16_us"] = {}
    for name, seconds in t.items():
        us = seconds / block * 1e6
        results["adam_2_16_us"][name] = us
        print(f"   lr={name:20s} {us:7.2f} us/step  ({seconds / t['float']:.3f}x the float)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    assert math.isfinite(float(p[0]))


if __name__ == "__main__":
    main()
