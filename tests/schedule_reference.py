"""Plain-Python reference of every schedule formula (``docs/semantics.md``), written
independently of the Rust code: the tests compare the two at random parameters and steps.

``REFERENCE[name](params, t)`` is the rate of schedule class ``name`` with constructor arguments
``params`` at scheduler step ``t`` (an int >= 0).
"""

from __future__ import annotations

import math
from typing import Any, Callable

Params = dict[str, Any]


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def constant(p: Params, t: int) -> float:
    return float(p["lr"])


def step_lr(p: Params, t: int) -> float:
    return p["base_lr"] * p["gamma"] ** (t // p["step_size"])


def multistep(p: Params, t: int) -> float:
    return p["base_lr"] * p["gamma"] ** sum(1 for m in p["milestones"] if m <= t)


def exponential(p: Params, t: int) -> float:
    return p["base_lr"] * p["gamma"] ** float(t)


def inverse_time(p: Params, t: int) -> float:
    return p["base_lr"] / (1 + p["gamma"] * float(t))


def linear(p: Params, t: int) -> float:
    s, e, total = p["start_factor"], p["end_factor"], p["total_iters"]
    return p["base_lr"] * (s + (e - s) * min(t, total) / total)


def constant_then_base(p: Params, t: int) -> float:
    return p["base_lr"] * p["factor"] if t < p["total_iters"] else p["base_lr"]


def polynomial(p: Params, t: int) -> float:
    total = p["total_iters"]
    return p["base_lr"] * (1 - min(t, total) / total) ** p["power"]


def cosine(p: Params, t: int) -> float:
    eta_min, period = p["eta_min"], 2 * p["T_max"]
    angle = math.pi * (t % period) / p["T_max"]  # cos is 2·T_max-periodic in t: exact reduction
    return eta_min + (p["base_lr"] - eta_min) * (1 + math.cos(angle)) / 2


def warm_restarts(p: Params, t: int) -> float:
    # PyTorch's stepwise bookkeeping, skipping whole periods at a time.
    period, into, restarts = p["T_0"], t, 0
    if p["T_mult"] == 1:
        restarts, into = divmod(t, period)
    while into >= period:
        into -= period
        period *= p["T_mult"]
        restarts += 1
    peak = p["base_lr"] * p["decay"] ** restarts
    return p["eta_min"] + (peak - p["eta_min"]) * (1 + math.cos(math.pi * into / period)) / 2


def cyclic(p: Params, t: int) -> float:
    up = p["step_size_up"]
    down = p["step_size_down"] if p["step_size_down"] is not None else up
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + float(t) / total)
    x = 1.0 + float(t) / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if p["mode"] == "triangular":
        f = 1.0
    elif p["mode"] == "triangular2":
        f = math.ldexp(1.0, 1 - cycle)  # 1/2^(cycle-1), 0 rather than an overflow far out
    else:
        f = p["gamma"] ** float(t)
    return p["base_lr"] + (p["max_lr"] - p["base_lr"]) * scale * f


def one_cycle(p: Params, t: int) -> float:
    n = p["total_steps"]
    initial = p["max_lr"] / p["div_factor"]
    low = initial / p["final_div_factor"]
    pct = p["pct_start"]
    if p["three_phase"]:
        phases = [
            (pct * n - 1, initial, p["max_lr"]),
            (2 * pct * n - 2, p["max_lr"], initial),
            (n - 1, initial, low),
        ]
    else:
        phases = [(pct * n - 1, initial, p["max_lr"]), (n - 1, p["max_lr"], low)]
    step = min(t, n - 1)
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            frac = (step - start) / (end - start) if end > start else 1.0
            if p["anneal_strategy"] == "cos":
                return _cos_anneal(a, b, frac)
            return (b - a) * frac + a
        start = end
    raise AssertionError


def keras_exponential(p: Params, t: int) -> float:
    e = t // p["decay_steps"] if p["staircase"] else t / p["decay_steps"]
    return p["initial_learning_rate"] * p["decay_rate"] ** float(e)


def keras_inverse_time(p: Params, t: int) -> float:
    e = t // p["decay_steps"] if p["staircase"] else t / p["decay_steps"]
    return p["initial_learning_rate"] / (1 + p["decay_rate"] * float(e))


def keras_polynomial(p: Params, t: int) -> float:
    d = p["decay_steps"]
    if p["cycle"]:
        d = d * (1 if t == 0 else -(-t // d))
        s = float(t)
    else:
        s = float(min(t, d))
    end = p["end_learning_rate"]
    return (p["initial_learning_rate"] - end) * (1 - s / d) ** p["power"] + end


def piecewise(p: Params, t: int) -> float:
    for boundary, value in zip(p["boundaries"], p["values"]):
        if t <= boundary:
            return float(value)
    return float(p["values"][-1])


def cosine_decay(p: Params, t: int) -> float:
    def decayed(peak: float, s: int) -> float:
        frac = min(s, p["decay_steps"]) / p["decay_steps"]
        c = (1 + math.cos(math.pi * frac)) / 2
        return peak * ((1 - p["alpha"]) * c + p["alpha"])

    lr0, target, w = p["initial_learning_rate"], p["warmup_target"], p["warmup_steps"]
    if target is None:
        return decayed(lr0, t)
    if t < w:
        return lr0 + (target - lr0) * float(t) / w
    return decayed(target, t - w)


def cosine_decay_restarts(p: Params, t: int) -> float:
    frac = float(t) / p["first_decay_steps"]
    t_mul, m_mul, alpha = p["t_mul"], p["m_mul"], p["alpha"]
    if t_mul == 1.0:
        i = math.floor(frac)
        frac -= i
    else:
        i = math.floor(math.log(1 - frac * (1 - t_mul)) / math.log(t_mul))
        frac = (frac - (1 - t_mul**i) / (1 - t_mul)) / t_mul**i
    c = m_mul**i * (1 + math.cos(math.pi * frac)) / 2
    return p["initial_learning_rate"] * ((1 - alpha) * c + alpha)


REFERENCE: dict[str, Callable[[Params, int], float]] = {
    "Constant": constant,
    "StepLR": step_lr,
    "MultiStepLR": multistep,
    "ExponentialLR": exponential,
    "InverseTimeLR": inverse_time,
    "LinearLR": linear,
    "ConstantLR": constant_then_base,
    "PolynomialLR": polynomial,
    "CosineAnnealingLR": cosine,
    "CosineAnnealingWarmRestarts": warm_restarts,
    "CyclicLR": cyclic,
    "OneCycleLR": one_cycle,
    "ExponentialDecay": keras_exponential,
    "InverseTimeDecay": keras_inverse_time,
    "PolynomialDecay": keras_polynomial,
    "PiecewiseConstantDecay": piecewise,
    "CosineDecay": cosine_decay,
    "CosineDecayRestarts": cosine_decay_restarts,
}
