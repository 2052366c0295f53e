"""`python benches/placement.py`: does an update's speed depend on where its arrays lie?

Adam on parameter, gradient and two moments placed at chosen offsets within a 4 KiB page: all at
one offset (where allocators put large arrays allocated alone), a few bytes apart (glibc's heap
puts consecutive blocks a header apart), and staggered up to 1 KiB apart. The placements are
timed interleaved in one process, each sample after a pause; medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lrfast

PLACEMENTS = {
    "one offset": (64, 64, 64, 64),
    "16 bytes apart": (64, 80, 96, 112),
    "64 bytes apart": (64, 128, 192, 256),
    "256 bytes apart": (64, 320, 576, 832),
    "1 KiB apart": (64, 1088, 2112, 3136),
}


def placed(n: int, offset: int) -> np.ndarray:
    """``n`` float32 elements starting ``offset`` bytes into a page."""
    buffer = np.empty(n * 4 + 8192, np.uint8)
    start = (offset - buffer.ctypes.data) % 4096
    return buffer[start : start + n * 4].view(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log2-size", type=int, default=22)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    n = 1 << args.log2_size
    cases = {}
    for name, offsets in PLACEMENTS.items():
        param, grad, exp_avg, exp_avg_sq = (placed(n, offset) for offset in offsets)
        param[:], grad[:], exp_avg[:], exp_avg_sq[:] = 1.0, 1e-3, 0.0, 0.0
        cases[name] = (param, grad, exp_avg, exp_avg_sq)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for step in range(1, args.rounds + 1):
        for name, arrays in cases.items():
            time.sleep(0.01)
            lrfast.adam_step(*arrays, step=step, lr=1e-3)  # untimed: threads awake, caches alike
            start = time.perf_counter()
            lrfast.adam_step(*arrays, step=step, lr=1e-3)
            times[name].append(time.perf_counter() - start)
    print(f"Adam, 2^{args.log2_size} float32, {lrfast.get_num_threads()} threads, SIMD "
          f"{lrfast.simd_level()}, medians of {args.rounds}")  # fmt: skip
    for name, samples in times.items():
        print(f"{name:>16s}: {statistics.median(samples) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
