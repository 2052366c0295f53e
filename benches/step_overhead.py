"""`python benches/step_overhead.py`: what an optimizer class adds to its kernel, per step.

Times, in one process, ``lrfast.adam_step`` on arrays and ``lrfast.Adam.step`` on the same
shapes (one 1,024-element tensor; 160 of them, a small model's list), as medians of interleaved
rounds, so the two numbers of a line come from the same machine state.
"""

from __future__ import annotations

import statistics
import timeit

import numpy as np

import lrfast


def _median_us(call: object, number: int, rounds: int = 15) -> float:
    times = timeit.repeat(call, number=number, repeat=rounds)  # type: ignore[arg-type]
    return statistics.median(times) / number * 1e6


def _measure(count: int) -> tuple[float, float]:
    """Median microseconds of the kernel and of the class's step, ``count`` tensors of 1,024."""
    params = [np.ones(1024, np.float32) for _ in range(count)]
    grads = [np.ones(1024, np.float32) for _ in range(count)]
    m = [np.zeros(1024, np.float32) for _ in range(count)]
    v = [np.zeros(1024, np.float32) for _ in range(count)]
    opt = lrfast.Adam([p.copy() for p in params], lr=1e-3)
    opt.step(grads)  # creates the state
    number = 2000 // count
    kernel = _median_us(lambda: lrfast.adam_step(params, grads, m, v, step=5), number)
    step = _median_us(lambda: opt.step(grads), number)
    return kernel, step


def main() -> None:
    print("| tensors x elements | adam_step (us) | Adam.step (us) | class overhead (us) |")
    print("| --- | --- | --- | --- |")
    for count in (1, 160):
        kernel, step = _measure(count)
        print(f"| {count} x 1024 | {kernel:.1f} | {step:.1f} | {step - kernel:.1f} |")


if __name__ == "__main__":
    main()
