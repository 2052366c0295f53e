"""`python benches/threads.py`: where a second thread starts to pay, per element type.

Below ``MIN_PARALLEL_LEN`` elements (``rust/parallel.rs``) an update runs on the calling thread:
waking another costs more than it saves. This times Adam at each size with 1 and 2 threads,
interleaved in one process, for float32 and for float16 and bfloat16 parameters with float32
state and master copy (mixed precision widens and rounds besides, so its crossing point may
differ), and prints the speed-up of the second thread: medians of ``--rounds`` batches.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import lrfast


def _arrays(n: int, dtype: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    param = rng.standard_normal(n).astype(dtype)
    arrays = {
        "param": param,
        "grad": (rng.standard_normal(n) * 1e-3).astype(dtype),
        "exp_avg": np.zeros(n, np.float32),
        "exp_avg_sq": np.zeros(n, np.float32),
    }
    if np.dtype(dtype).itemsize == 2:
        arrays["master"] = param.astype(np.float32)
    return arrays


def speedup(n: int, dtype: Any, rounds: int) -> tuple[float, float]:
    """Median seconds per update with 1 and 2 threads."""
    arrays = _arrays(n, dtype)
    calls = max(1, int(2e-3 / max(n * 2e-9, 1e-7)))  # batches of about 2 ms
    times: dict[int, list[float]] = {1: [], 2: []}
    step = 0
    for _ in range(rounds):
        for threads in (1, 2):
            lrfast.set_num_threads(threads)
            lrfast.adam_step(**arrays, step=step + 1, lr=1e-3)  # untimed: threads awake
            start = time.perf_counter()
            for _ in range(calls):
                step += 1
                lrfast.adam_step(**arrays, step=step, lr=1e-3)
            times[threads].append((time.perf_counter() - start) / calls)
    return statistics.median(times[1]), statistics.median(times[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="14,15,16,17,18,19,20,21")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import ml_dtypes

    dtypes = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
    print(f"Adam, 1 vs 2 threads, SIMD {lrfast.simd_level()}, medians of {args.rounds} rounds")
    print("| size | " + " | ".join(f"{name} 1 / 2 threads" for name in dtypes) + " |")
    print("| --- |" + " --- |" * len(dtypes))
    for size in (int(s) for s in args.sizes.split(",")):
        cells = []
        for dtype in dtypes.values():
            one, two = speedup(1 << size, dtype, args.rounds)
            cells.append(f"{one * 1e6:.0f} / {two * 1e6:.0f} us ({one / two:.2f}x)")
        print(f"| 2^{size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
