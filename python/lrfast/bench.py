"""Benchmarks: lrfast against the memory floor, a well-written NumPy version and PyTorch.

Run ``python benches/bench.py`` or ``lrfast bench``. For each kernel and size, all
implementations are timed interleaved in one process (A B C D A B C D ...) after a warm-up, and
the medians are compared: on a shared machine absolute times drift 20-30% between runs, so only
ratios taken in the same run mean anything.

- **lrfast**: the kernel, one call (a list of arrays for the many-tensor case).
- **floor**: ``lrfast._lrfast._memory_floor_step``, which reads and writes exactly the arrays the
  optimizer does (``p += g; s += g``) with the same dispatch and threads: the physical limit.
- **numpy**: the update written well in NumPy (in place, ``out=``, preallocated temporaries).
- **torch**: ``torch.optim`` with ``fused=True`` where PyTorch has it, else ``foreach=True``,
  when torch is installed.
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

from . import _lrfast, get_num_threads, simd_level
from .optim import state_like

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

    @property
    def bytes_per_element(self) -> int:
        """Bytes moved per float32 element: param, grad and states read; param, states written."""
        return 4 * (2 + self.states + 1 + self.states)


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
    "adam": _lrfast.adam_step, "adamw": _lrfast.adamw_step, "sgd": _lrfast.sgd_step,
    "adagrad": _lrfast.adagrad_step, "rmsprop": _lrfast.rmsprop_step,
    "adadelta": _lrfast.adadelta_step, "adamax": _lrfast.adamax_step,
    "nadam": _lrfast.nadam_step, "radam": _lrfast.radam_step,
}  # fmt: skip


@dataclass
class Row:
    kernel: str
    size: str
    elements: int
    median_s: dict[str, float]
    spread: dict[str, float]  # (p90 - p10) / median

    def ratio(self, a: str, b: str) -> Optional[float]:
        if a in self.median_s and b in self.median_s:
            return self.median_s[a] / self.median_s[b]
        return None


def _make_case(
    spec: Spec, sizes: Sequence[int], seed: int = 0
) -> tuple[Arrays, Arrays, list[Arrays]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [(rng.standard_normal(n) * 1e-2).astype(np.float32) for n in sizes]
    # States staggered as lrfast's optimizer classes allocate them (see `lrfast.state_like`).
    states = [[state_like(p, k, 1e-3) for k in range(spec.states)] for p in params]
    return params, grads, states


def _implementations(
    spec: Spec, sizes: Sequence[int], torch: Any
) -> tuple[dict[str, Callable[[], None]], dict[str, np.ndarray]]:
    many = len(sizes) > 1
    impls: dict[str, Callable[[], None]] = {}
    watched: dict[str, np.ndarray] = {}  # a parameter of each, to check it was really updated

    p, g, s = _make_case(spec, sizes)
    kernel = LRFAST_KERNELS[spec.name]
    state_args = [list(x) for x in zip(*s)] if many else list(s[0])
    counter = [0]
    lrfast_kwargs = dict(spec.lrfast_kwargs)

    def run_lrfast() -> None:
        counter[0] += 1
        result = kernel(
            p if many else p[0],
            g if many else g[0],
            *state_args,
            step=counter[0],
            **lrfast_kwargs,
        )
        if spec.name == "nadam":  # carry the running product, as the optimizer class does
            lrfast_kwargs["mu_product"] = result

    impls["lrfast"] = run_lrfast
    watched["lrfast"] = p[0]

    fp, fg, fs = _make_case(spec, sizes)
    floor_states = [list(x) for x in zip(*fs)] if many else list(fs[0])

    def run_floor() -> None:
        _lrfast._memory_floor_step(fp if many else fp[0], fg if many else fg[0], *floor_states)

    impls["floor"] = run_floor
    watched["floor"] = fp[0]

    np_p, np_g, np_s = _make_case(spec, sizes)
    tmps = [np.empty_like(x) for x in np_p]
    np_counter = [0]

    def run_numpy() -> None:
        np_counter[0] += 1
        for x, gx, sx, tx in zip(np_p, np_g, np_s, tmps):
            spec.numpy(x, gx, sx, np_counter[0], tx)

    impls["numpy"] = run_numpy
    watched["numpy"] = np_p[0]

    if torch is not None:
        tp, tg, _ = _make_case(spec, sizes)
        tensors = [torch.from_numpy(x).requires_grad_(False) for x in tp]
        for tensor, grad in zip(tensors, tg):
            tensor.grad = torch.from_numpy(grad)
        kwargs = dict(spec.torch_kwargs)
        kwargs["fused" if spec.torch_fused else "foreach"] = True
        opt = getattr(torch.optim, spec.torch_class)(tensors, **kwargs)

        def run_torch() -> None:
            opt.step()

        impls["torch"] = run_torch
        watched["torch"] = tp[0]
    return impls, watched


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
    kernels: Sequence[str], sizes: Sequence[str], budget_s: float, with_torch: bool = True
) -> list[Row]:
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
            impls, watched = _implementations(spec, shapes, torch)
            before = {name: array.copy() for name, array in watched.items()}
            medians, spread = _time(impls, budget_s)
            for name, array in watched.items():  # nothing was optimized away or failed
                if np.array_equal(array, before[name]) or not np.isfinite(array).all():
                    raise RuntimeError(f"{name} did not update {kernel} at {size} properly")
            rows.append(Row(kernel, label, sum(shapes), medians, spread))
            print(_format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'kernel':9s} {'size':>10s} {'lrfast':>10s} {'floor':>10s} {'numpy':>10s} {'torch':>10s}"
    f" {'floor/lrf':>9s} {'np/lrf':>8s} {'torch/lrf':>9s} {'GB/s':>6s}"
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
    gbps = spec.bytes_per_element * row.elements / m["lrfast"] / 1e9

    def ratio(a: str, b: str) -> str:
        r = row.ratio(a, b)
        return "-" if r is None else f"{r:.2f}"

    return (
        f"{row.kernel:9s} {row.size:>10s} {_fmt_time(m.get('lrfast')):>10s} "
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
        raise SystemExit("plotting needs matplotlib: pip install 'lrfast[plot]'") from err
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
    ax.set_title("lrfast against the memory floor (1.0 = physical limit), float32")
    ax.legend(ncol=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="lrfast bench", description=__doc__.splitlines()[0])
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
    print(
        f"lrfast bench: float32, {machine['threads']} threads, SIMD {machine['simd']}, "
        f"{machine['processor']}"
    )
    print(HEADER)
    rows = run(kernels, sizes, args.budget, with_torch=not args.no_torch)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=1)
        )
    if args.plot:
        plot(rows, args.plot)
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
