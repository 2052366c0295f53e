"""Lists of arrays in one call, and thread counts: same bits as one call per array."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import lrfast
from kernels import DEFAULTS, KERNELS, Kernel


def make(kernel: Kernel, sizes: list[int], dtype: Any, seed: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    hyper = DEFAULTS[kernel.name]
    needs = kernel.needs({"momentum": 0.0, "centered": False, "amsgrad": False, **hyper})
    arrays: dict[str, list[np.ndarray]] = {"param": [], "grad": []}
    for name in needs:
        arrays[name] = []
    for n in sizes:
        arrays["param"].append(rng.standard_normal(n).astype(dtype))
        arrays["grad"].append(rng.standard_normal(n).astype(dtype))
        for name in needs:
            arrays[name].append(np.abs(rng.standard_normal(n)).astype(dtype))
    return arrays


def call(kernel: Kernel, arrays: dict[str, Any], step: int) -> None:
    rest = {k: v for k, v in arrays.items() if k not in ("param", "grad")}
    kernel.fast(arrays["param"], arrays["grad"], **rest, step=step, **DEFAULTS[kernel.name])


def flat(arrays: dict[str, list[np.ndarray]]) -> list[bytes]:
    return [a.tobytes() for v in arrays.values() for a in v]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@given(
    sizes=st.lists(
        st.one_of(st.integers(0, 40), st.sampled_from([4096, 140_000])), min_size=0, max_size=12
    ),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 1000),
)
def test_list_call_matches_one_call_per_array(
    kernel: Kernel, sizes: list[int], dtype: Any, seed: int
) -> None:
    together = make(kernel, sizes, dtype, seed)
    apart = make(kernel, sizes, dtype, seed)
    for step in (1, 2, 3):
        call(kernel, together, step)
        for i in range(len(sizes)):
            call(kernel, {k: v[i] for k, v in apart.items()}, step)
    assert flat(together) == flat(apart)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_one_bad_entry_leaves_every_array_unchanged(kernel: Kernel) -> None:
    arrays = make(kernel, [10, 20, 30, 40_000, 50, 60], np.float32, 0)
    before = flat(arrays)
    bad = dict(arrays)
    bad["grad"] = list(arrays["grad"])
    bad["grad"][4] = np.zeros(49, np.float32)
    with pytest.raises(ValueError, match=r"grad\[4\]"):
        call(kernel, bad, 1)
    last_state = list(arrays)[-1]
    bad = dict(arrays)
    bad[last_state] = list(arrays[last_state])
    bad[last_state][5] = arrays["param"][0][:0]  # wrong shape
    with pytest.raises(ValueError, match=rf"{last_state}\[5\]"):
        call(kernel, bad, 1)
    bad = {k: [*v[:2], v[0], *v[3:]] for k, v in arrays.items()}  # tensor 0 again as tensor 2
    with pytest.raises(ValueError, match="share memory"):
        call(kernel, bad, 1)
    with pytest.raises(ValueError, match="has 5 arrays"):
        call(kernel, {k: v[:5] if k == "grad" else v for k, v in arrays.items()}, 1)
    assert flat(arrays) == before


def test_thread_counts_give_the_same_bits() -> None:
    results = []
    for count in (1, 2, 3):
        with lrfast.threads(count):
            assert lrfast.get_num_threads() == count
            arrays = make(KERNELS[4], [300_001, 7, 70_000], np.float32, 3)
            for step in (1, 2):
                call(KERNELS[4], arrays, step)
        results.append(flat(arrays))
    assert results[0] == results[1] == results[2]
    with pytest.raises(ValueError, match="threads"):
        lrfast.set_num_threads(0)
