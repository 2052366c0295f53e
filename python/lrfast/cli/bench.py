"""Benchmarks: lrfast against the memory floor, a well-written NumPy version and PyTorch.

Run ``python benches/bench.py`` or ``lrfast bench``. For each kernel and size, all
implementations are timed interleaved in one process (A B C D A B C D ...) after a warm-up, and
the medians are compared: on a shared machine absolute times drift 20-30% between runs, so only
ratios taken in the same run mean anything. Each sample follows a 20 ms pause (torch's OpenMP
workers spin for milliseconds after each parallel region) and one untimed call of the same
implementation, so that none pays for the threads or memory traffic another left behind.

- **lrfast**: the kernel, one call (a list of arrays for the many-tensor case).
- **floor**: ``lrfast._lrfast._memory_floor_step``, which reads and writes exactly the arrays the
  optimizer does (``p += g; s += g``) with the same dispatch and threads: the physical limit.
- **numpy**: the update written well in NumPy (in place, ``out=``, preallocated temporaries).
- **torch**: ``torch.optim`` with ``fused=True`` where PyTorch has it, else ``foreach=True``,
  when torch is installed.

``--allocation`` chooses where the arrays lie, as users' code places them: ``zeros_like`` (the
default: every array allocated alone, ``np.zeros_like`` / ``np.empty``, so all start at the
same offset within a 4 KiB page), ``torch`` (torch's allocator), ``state_like`` (states
staggered by :func:`lrfast.state_like`) or ``offset`` (each array at a random offset); ``all``
times each, the placements of a kernel and size interleaved in one set so that their rows
compare. Every implementation of a row, the floor included, gets the same placement.

``--dtype float16`` (or ``bfloat16``, with ml_dtypes) times mixed precision: 16-bit parameters
and gradients, float32 state and, with ``--master`` (the default), a float32 master copy. The
floor then widens and rounds exactly as the kernels do; NumPy widens into preallocated float32
buffers, runs the float32 update and casts back; PyTorch, whose optimizers keep state in the
parameter's dtype, runs the usual master-weights recipe: copy the 16-bit gradient into the
float32 master's ``.grad``, ``step()`` the float32 optimizer, copy the master into the 16-bit
parameter.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .. import _lrfast, get_num_threads, kernels, simd_level, specs
from ..extras import install_hint
from ..optim import _state_dtype, state_like

Arrays = list[np.ndarray]


# --- well-written NumPy updates (in place, out=, one temporary) --------------------------------
def _np_sgd(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    (buf,) = s
    buf *= 0.9
    buf += g
    np.multiply(buf, 0.01, out=tmp)
    p -= tmp


def _np_adagrad(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    (acc,) = s
    np.multiply(g, g, out=tmp)
    acc += tmp
    np.sqrt(acc, out=tmp)
    tmp += 1e-10
    np.divide(g, tmp, out=tmp)
    tmp *= 0.01
    p -= tmp


def _np_rmsprop(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    (v,) = s
    v *= 0.99
    np.multiply(g, g, out=tmp)
    tmp *= 0.01
    v += tmp
    np.sqrt(v, out=tmp)
    tmp += 1e-8
    np.divide(g, tmp, out=tmp)
    tmp *= 0.01
    p -= tmp


def _np_adadelta(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    v, u = s
    v *= 0.9
    np.multiply(g, g, out=tmp)
    tmp *= 0.1
    v += tmp
    np.add(u, 1e-6, out=tmp)
    np.sqrt(tmp, out=tmp)
    tmp /= np.sqrt(v + 1e-6)  # one extra temporary here; NumPy has no fused form
    tmp *= g
    p -= tmp
    u *= 0.9
    tmp *= tmp
    tmp *= 0.1
    u += tmp


def _np_adam_core(m: np.ndarray, v: np.ndarray, g: np.ndarray, tmp: np.ndarray) -> None:
    m *= 0.9
    np.multiply(g, 0.1, out=tmp)
    m += tmp
    v *= 0.999
    np.multiply(g, g, out=tmp)
    tmp *= 0.001
    v += tmp


def _np_adam(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    m, v = s
    _np_adam_core(m, v, g, tmp)
    np.sqrt(v, out=tmp)
    tmp /= math.sqrt(1 - 0.999**t)
    tmp += 1e-8
    np.divide(m, tmp, out=tmp)
    tmp *= 1e-3 / (1 - 0.9**t)
    p -= tmp


def _np_adamw(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    p *= 1 - 1e-3 * 1e-2
    _np_adam(p, g, s, t, tmp)


def _np_adamax(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    m, u = s
    m *= 0.9
    np.multiply(g, 0.1, out=tmp)
    m += tmp
    u *= 0.999
    np.abs(g, out=tmp)
    tmp += 1e-8
    np.maximum(u, tmp, out=u)
    np.divide(m, u, out=tmp)
    tmp *= 2e-3 / (1 - 0.9**t)
    p -= tmp


def _np_nadam(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    m, v = s
    _np_adam_core(m, v, g, tmp)
    np.divide(v, 1 - 0.999**t, out=tmp)
    np.sqrt(tmp, out=tmp)
    tmp += 1e-8
    mu, mu_next, prod = 0.45, 0.45, 0.45**t  # per-step scalars: their cost is not the point
    m_over_den = _second_temporary(tmp)
    np.divide(m, tmp, out=m_over_den)
    m_over_den *= -2e-3 * mu_next / (1 - prod * mu_next)
    np.divide(g, tmp, out=tmp)
    tmp *= -2e-3 * (1 - mu) / (1 - prod)
    p += tmp
    p += m_over_den


_SECOND: dict[tuple[int, ...], np.ndarray] = {}


def _second_temporary(like: np.ndarray) -> np.ndarray:
    """NAdam needs two temporaries; this one is allocated once per shape."""
    if like.shape not in _SECOND:
        _SECOND[like.shape] = np.empty_like(like)
    return _SECOND[like.shape]


def _np_radam(p: np.ndarray, g: np.ndarray, s: Arrays, t: int, tmp: np.ndarray) -> None:
    m, v = s
    _np_adam_core(m, v, g, tmp)
    np.sqrt(v, out=tmp)
    tmp += 1e-8
    np.divide(m, tmp, out=tmp)
    tmp *= 1e-3 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)  # rectification folded in: same work
    p -= tmp


@dataclass(frozen=True)
class Spec:
    name: str
    states: int  # state arrays besides param and grad
    lrfast_kwargs: dict[str, Any]
    numpy: Callable[[np.ndarray, np.ndarray, Arrays, int, np.ndarray], None]
    torch_class: str
    torch_kwargs: dict[str, Any] = field(default_factory=dict)
    torch_fused: bool = False

    def bytes_per_element(self, dtype: str = "float32", master: bool = False) -> int:
        """Bytes moved per element: param, grad and states read; param and states written.

        float32: ``4·(3 + 2·states)``. Mixed precision (2-byte param and grad, 4-byte states):
        ``6 + 8·states`` without a master copy; with one the master (4 bytes) is read instead
        of the param and written besides it, ``12 + 8·states``.
        """
        state_bytes = 2 * 4 * self.states
        if dtype == "float32":
            return 4 * 3 + state_bytes
        return (2 + 4 + 2 + 4 if master else 2 + 2 + 2) + state_bytes


SPECS = [
    Spec("adam", 2, {"lr": 1e-3}, _np_adam, "Adam", torch_fused=True),
    Spec("adamw", 2, {"lr": 1e-3}, _np_adamw, "AdamW", torch_fused=True),
    Spec(
        "sgd",
        1,
        {"lr": 0.01, "momentum": 0.9},
        _np_sgd,
        "SGD",
        {"lr": 0.01, "momentum": 0.9},
        torch_fused=True,
    ),
    Spec("adagrad", 1, {}, _np_adagrad, "Adagrad", torch_fused=True),
    Spec("rmsprop", 1, {}, _np_rmsprop, "RMSprop"),
    Spec("adadelta", 2, {}, _np_adadelta, "Adadelta"),
    Spec("adamax", 2, {}, _np_adamax, "Adamax"),
    Spec("nadam", 2, {}, _np_nadam, "NAdam"),
    Spec("radam", 2, {}, _np_radam, "RAdam"),
]
SPEC_BY_NAME = {s.name: s for s in SPECS}
LRFAST_KERNELS: dict[str, Callable[..., Any]] = {
    s.name: getattr(kernels, s.function_name) for s in specs.optimizers()
}


ALLOCATIONS = ("zeros_like", "torch", "state_like", "offset")


@dataclass
class Row:
    kernel: str
    size: str
    elements: int
    median_s: dict[str, float]
    spread: dict[str, float]  # (p90 - p10) / median
    dtype: str = "float32"
    master: bool = False
    allocation: str = "zeros_like"

    def ratio(self, a: str, b: str) -> Optional[float]:
        if a in self.median_s and b in self.median_s:
            return self.median_s[a] / self.median_s[b]
        return None


def _numpy_dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as err:
            raise SystemExit(f"bfloat16 needs ml_dtypes: {install_hint('bfloat16')}") from err
        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(name)


@dataclass
class Case:
    """The arrays of one implementation: parameters, gradients, states per parameter, and the
    float32 master copies of 16-bit parameters (None without)."""

    params: Arrays
    grads: Arrays
    states: list[Arrays]
    masters: Optional[Arrays]


def _allocator(allocation: str, rng: np.random.Generator) -> Callable[[int, Any], np.ndarray]:
    """A function giving an uninitialized array of ``n`` elements of a dtype, placed as
    ``allocation`` says (``state_like`` places parameters and gradients as ``zeros_like``)."""

    def alone(n: int, dtype: Any) -> np.ndarray:
        return np.empty(n, dtype)

    def from_torch(n: int, dtype: Any) -> np.ndarray:
        import torch

        raw: np.ndarray = torch.empty(n * np.dtype(dtype).itemsize, dtype=torch.uint8).numpy()
        return raw.view(dtype)

    def at_random_offset(n: int, dtype: Any) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        buffer = np.empty(n * size + 4096, np.uint8)
        start = int(rng.integers(0, 4096 // size)) * size
        return buffer[start : start + n * size].view(dtype)

    if allocation == "torch":
        return from_torch
    return at_random_offset if allocation == "offset" else alone


def _make_case(
    spec: Spec,
    sizes: Sequence[int],
    dtype: str = "float32",
    master: bool = False,
    seed: int = 0,
    allocation: str = "zeros_like",
) -> Case:
    rng = np.random.default_rng(seed)
    npdtype = _numpy_dtype(dtype)
    new = _allocator(allocation, rng)

    def filled(n: int, dtype: Any, values: Any) -> np.ndarray:
        out = new(n, dtype)
        out[...] = values
        return out

    params = [filled(n, npdtype, rng.standard_normal(n).astype(np.float32)) for n in sizes]
    grads = [filled(n, npdtype, (rng.standard_normal(n) * 1e-2).astype(np.float32)) for n in sizes]
    # float32 states for 16-bit parameters.
    if allocation == "state_like":
        states = [[state_like(p, k, 1e-3) for k in range(spec.states)] for p in params]
    else:
        slots = range(spec.states)
        states = [[filled(p.size, _state_dtype(p), 1e-3) for _ in slots] for p in params]
    masters = None
    if dtype != "float32" and master:
        if allocation == "state_like":
            masters = [state_like(p, spec.states) for p in params]
            for m, p in zip(masters, params):
                np.copyto(m, p)
        else:
            masters = [filled(p.size, np.float32, p) for p in params]
    return Case(params, grads, states, masters)


def _implementations(
    spec: Spec,
    sizes: Sequence[int],
    torch: Any,
    dtype: str = "float32",
    master: bool = False,
    allocation: str = "zeros_like",
) -> tuple[dict[str, Callable[[], None]], dict[str, np.ndarray]]:
    many = len(sizes) > 1
    impls: dict[str, Callable[[], None]] = {}
    watched: dict[str, np.ndarray] = {}  # a parameter of each, to check it was really updated

    def one_or_list(arrays: Arrays) -> Any:
        return arrays if many else arrays[0]

    def master_kwargs(case: Case) -> dict[str, Any]:
        return {} if case.masters is None else {"master": one_or_list(case.masters)}

    c = _make_case(spec, sizes, dtype, master, allocation=allocation)
    kernel = LRFAST_KERNELS[spec.name]
    state_args = [one_or_list(list(x)) for x in zip(*c.states)]
    counter = [0]
    lrfast_kwargs = {**spec.lrfast_kwargs, **master_kwargs(c)}

    def run_lrfast() -> None:
        counter[0] += 1
        result = kernel(
            one_or_list(c.params), one_or_list(c.grads), *state_args, step=counter[0],
            **lrfast_kwargs,
        )  # fmt: skip
        if spec.name == "nadam":  # carry the running product, as the optimizer class does
            lrfast_kwargs["mu_product"] = result

    impls["lrfast"] = run_lrfast
    watched["lrfast"] = c.params[0]

    f = _make_case(spec, sizes, dtype, master, allocation=allocation)
    floor_states = [one_or_list(list(x)) for x in zip(*f.states)]
    floor_kwargs = master_kwargs(f)

    def run_floor() -> None:
        _lrfast._memory_floor_step(
            one_or_list(f.params), one_or_list(f.grads), *floor_states, **floor_kwargs
        )

    impls["floor"] = run_floor
    watched["floor"] = f.params[0]

    n = _make_case(spec, sizes, dtype, master, allocation=allocation)
    tmps = [np.empty(x.shape, np.float32 if dtype != "float32" else x.dtype) for x in n.params]
    np_counter = [0]
    if dtype == "float32":

        def run_numpy() -> None:
            np_counter[0] += 1
            for x, gx, sx, tx in zip(n.params, n.grads, n.states, tmps):
                spec.numpy(x, gx, sx, np_counter[0], tx)
    else:
        # Mixed precision: widen into preallocated float32 buffers, update, round back.
        wide_grads = [np.empty(x.shape, np.float32) for x in n.params]
        work = n.masters if n.masters is not None else [np.empty_like(g) for g in wide_grads]

        def run_numpy() -> None:
            np_counter[0] += 1
            for i, (x, gx, sx, tx) in enumerate(zip(n.params, n.grads, n.states, tmps)):
                np.copyto(wide_grads[i], gx)
                if n.masters is None:
                    np.copyto(work[i], x)
                spec.numpy(work[i], wide_grads[i], sx, np_counter[0], tx)
                np.copyto(x, work[i], casting="unsafe")

    impls["numpy"] = run_numpy
    watched["numpy"] = n.params[0]

    if torch is not None and (dtype == "float32" or (master and dtype == "float16")):
        t = _make_case(spec, sizes, dtype, master, allocation=allocation)
        kwargs = dict(spec.torch_kwargs)
        kwargs["fused" if spec.torch_fused else "foreach"] = True
        if dtype == "float32":
            tensors = [torch.from_numpy(x) for x in t.params]
            for tensor, grad in zip(tensors, t.grads):
                tensor.grad = torch.from_numpy(grad)
            opt = getattr(torch.optim, spec.torch_class)(tensors, **kwargs)

            def run_torch() -> None:
                opt.step()
        else:
            assert t.masters is not None
            low = [torch.from_numpy(x) for x in t.params]
            low_grads = [torch.from_numpy(g) for g in t.grads]
            masters = [torch.from_numpy(m) for m in t.masters]
            for m in masters:
                m.grad = torch.empty_like(m)
            opt = getattr(torch.optim, spec.torch_class)(masters, **kwargs)
            master_grads = [m.grad for m in masters]

            def run_torch() -> None:
                torch._foreach_copy_(master_grads, low_grads)
                opt.step()
                torch._foreach_copy_(low, masters)

        impls["torch"] = run_torch
        watched["torch"] = t.params[0]
    return impls, watched


# A pause before each implementation's samples: after a parallel region, torch's OpenMP workers
# (libgomp) spin for milliseconds, and whatever runs next shares the cores with them (measured:
# Adam at 2^22 on 2 threads, 3.0 ms alone, 5.3 ms right after a torch step, 3.6 ms 10 ms after).
SETTLE_S = 0.02


def _time(
    impls: dict[str, Callable[[], None]], budget_s: float
) -> tuple[dict[str, float], dict[str, float]]:
    # Warm up, and find how many calls make one sample of at least 200 µs.
    batch: dict[str, int] = {}
    for name, fn in impls.items():
        fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        batch[name] = max(1, int(2e-4 / once))
    samples: dict[str, list[float]] = {n: [] for n in impls}
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < 5 or (time.perf_counter() < deadline and rounds < 200):
        for name, fn in impls.items():  # interleaved: A B C D A B C D ...
            k = batch[name]
            # One untimed call first, so that every sample starts after its own implementation:
            # an update that follows a different one pays for what that one left behind (measured:
            # SGD at 2^24 took 12.4 ms right after NumPy's version, 8.3 ms after itself, while the
            # floor it was compared with ran after lrfast), which biased every comparison against
            # whichever implementation came first in the rotation.
            time.sleep(SETTLE_S)
            fn()
            start = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - start) / k)
        rounds += 1
    medians = {n: statistics.median(v) for n, v in samples.items()}
    spread = {}
    for n, v in samples.items():
        q = statistics.quantiles(v, n=10) if len(v) >= 2 else [v[0]] * 9
        spread[n] = (q[-1] - q[0]) / medians[n]
    return medians, spread


def run(
    kernels: Sequence[str],
    sizes: Sequence[str],
    budget_s: float,
    with_torch: bool = True,
    dtype: str = "float32",
    master: bool = False,
    allocations: Sequence[str] = ("zeros_like",),
) -> list[Row]:
    """Times every kernel at every size, one row per placement in ``allocations``; the
    placements of a kernel and size are timed interleaved in one set, so their rows compare."""
    torch = None
    if with_torch:
        try:
            import torch as torch_module

            torch_module.set_num_threads(get_num_threads())
            torch = torch_module
        except ImportError:
            torch = None
    rows = []
    for kernel in kernels:
        spec = SPEC_BY_NAME[kernel]
        for size in sizes:
            shapes = [4096] * 1000 if size == "1000x4096" else [2 ** int(size)]
            label = "1000x4096" if size == "1000x4096" else f"2^{size}"
            impls: dict[str, Callable[[], None]] = {}
            watched: dict[str, np.ndarray] = {}
            for allocation in allocations:
                some, arrays = _implementations(spec, shapes, torch, dtype, master, allocation)
                impls.update((f"{name}@{allocation}", fn) for name, fn in some.items())
                watched.update((f"{name}@{allocation}", a) for name, a in arrays.items())
            before = {name: array.copy() for name, array in watched.items()}
            medians, spread = _time(impls, budget_s)
            for name, array in watched.items():  # nothing was optimized away or failed
                wide = array.astype(np.float32)
                if (
                    np.array_equal(wide, before[name].astype(np.float32))
                    or not np.isfinite(wide).all()
                ):
                    raise RuntimeError(f"{name} did not update {kernel} at {size} properly")
            mixed_master = master and dtype != "float32"
            for allocation in allocations:
                row = Row(kernel, label, sum(shapes), _placed(medians, allocation),
                          _placed(spread, allocation), dtype, mixed_master, allocation)  # fmt: skip
                rows.append(row)
                print(_format_row(row), flush=True)
    return rows


def _placed(values: dict[str, float], allocation: str) -> dict[str, float]:
    """The entries ``name@allocation`` of ``values``, by ``name``."""
    suffix = f"@{allocation}"
    return {k[: -len(suffix)]: v for k, v in values.items() if k.endswith(suffix)}


HEADER = (
    f"{'kernel':9s} {'alloc':>10s} {'size':>10s} {'lrfast':>10s} {'floor':>10s} {'numpy':>10s}"
    f" {'torch':>10s} {'floor/lrf':>9s} {'np/lrf':>8s} {'torch/lrf':>9s} {'GB/s':>6s}"
)


def _fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def _format_row(row: Row) -> str:
    m = row.median_s
    spec = SPEC_BY_NAME[row.kernel]
    gbps = spec.bytes_per_element(row.dtype, row.master) * row.elements / m["lrfast"] / 1e9

    def ratio(a: str, b: str) -> str:
        r = row.ratio(a, b)
        return "-" if r is None else f"{r:.2f}"

    return (
        f"{row.kernel:9s} {row.allocation:>10s} {row.size:>10s} {_fmt_time(m.get('lrfast')):>10s} "
        f"{_fmt_time(m.get('floor')):>10s} {_fmt_time(m.get('numpy')):>10s} "
        f"{_fmt_time(m.get('torch')):>10s} {ratio('floor', 'lrfast'):>9s} "
        f"{ratio('numpy', 'lrfast'):>8s} {ratio('torch', 'lrfast'):>9s} {gbps:6.1f}"
    )


def plot(rows: Sequence[Row], path: Path) -> None:
    """Draws floor time / lrfast time (1.0 = at the physical limit) per kernel and size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(f"plotting needs matplotlib: {install_hint('plot')}") from err
    kernels = sorted({r.kernel for r in rows}, key=[s.name for s in SPECS].index)
    sizes = list(dict.fromkeys(r.size for r in rows))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(kernels))
    for i, k in enumerate(kernels):
        values = [
            next(
                (r.ratio("floor", "lrfast") or 0 for r in rows if r.kernel == k and r.size == s), 0
            )
            for s in sizes
        ]
        ax.bar([j + i * width for j in range(len(sizes))], values, width, label=k)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], sizes)
    ax.set_ylabel("floor time / lrfast time")
    dtype = rows[0].dtype if rows else "float32"
    suffix = " with float32 master" if rows and rows[0].master else ""
    placement = rows[0].allocation if rows else "zeros_like"
    ax.set_title(
        f"lrfast against the memory floor (1.0 = physical limit), {dtype}{suffix}, "
        f"arrays placed as {placement}"
    )
    ax.legend(ncol=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lrfast bench", description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument("--kernels", default=",".join(s.name for s in SPECS))
    parser.add_argument(
        "--sizes",
        default="10,12,16,20,24,1000x4096",
        help="log2 sizes, and 1000x4096 for a list of 1,000 arrays",
    )
    parser.add_argument(
        "--budget", type=float, default=1.0, help="seconds of timing per kernel and size"
    )
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="float16/bfloat16: mixed precision (16-bit params and grads, float32 state)",
    )
    parser.add_argument(
        "--master",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --dtype float16/bfloat16, keep a float32 master copy (default: yes)",
    )
    parser.add_argument(
        "--allocation",
        default="zeros_like",
        choices=[*ALLOCATIONS, "all"],
        help="where the arrays lie (see the module docs); default: as np.zeros_like puts them",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="draw the floor ratios to this PNG")
    args = parser.parse_args(argv)
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    unknown = [k for k in kernels if k not in SPEC_BY_NAME]
    if unknown:
        parser.error(f"unknown kernels {unknown}; choose from {sorted(SPEC_BY_NAME)}")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    machine = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "processor": _cpu_model(), "threads": get_num_threads(), "simd": simd_level(),
        "numpy": np.__version__,
    }  # fmt: skip
    master = args.master and args.dtype != "float32"
    precision = args.dtype + (" params with float32 state and master" if master else "")
    if args.dtype != "float32" and not master:
        precision += " params with float32 state"
    machine["precision"] = precision
    print(
        f"lrfast bench: {precision}, {machine['threads']} threads, SIMD {machine['simd']}, "
        f"{machine['processor']}"
    )
    print(HEADER)
    allocations = ALLOCATIONS if args.allocation == "all" else (args.allocation,)
    if "torch" in allocations and args.no_torch:
        parser.error("--allocation torch needs torch; drop --no-torch")
    rows = run(kernels, sizes, args.budget, not args.no_torch, args.dtype, master, allocations)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=1)
        )
    if args.plot:
        plot([r for r in rows if r.allocation == allocations[0]], args.plot)
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
