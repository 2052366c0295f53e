"""The models the command line trains: a NumPy MLP, two spirals, and the training loop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import optim, simd_level

OPTIMIZERS: dict[str, tuple[optim.OptimizerClass, dict[str, Any]]] = {
    "sgd": (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "adagrad": (optim.Adagrad, {"lr": 0.05}),
    "rmsprop": (optim.RMSprop, {"lr": 3e-3}),
    # Adadelta's steps start at about √eps; its default rate of 1 is too slow for a short run.
    "adadelta": (optim.Adadelta, {"lr": 10.0}),
    "adam": (optim.Adam, {"lr": 1e-2}),
    "adamw": (optim.AdamW, {"lr": 1e-2}),
    "adamax": (optim.Adamax, {"lr": 2e-2}),
    "nadam": (optim.NAdam, {"lr": 1e-2}),
    "radam": (optim.RAdam, {"lr": 1e-2}),
}


def two_spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in the plane: a classic problem a linear model cannot solve."""
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3 * np.pi
    label = rng.integers(0, 2, n)
    sign = np.where(label == 0, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3 * np.pi)
    x += rng.normal(0.0, 0.02, x.shape)
    return x.astype(np.float32), label


class MLP:
    """x → f(x·W1 + b1) → f(·W2 + b2) → ·W3 + b3 → softmax, f = tanh or ReLU; plain NumPy.

    Weights start Gaussian with variance 1/fan_in (tanh) or 2/fan_in (ReLU, He et al.)."""

    def __init__(
        self, sizes: Sequence[int], rng: np.random.Generator, activation: str = "tanh"
    ) -> None:
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.relu = activation == "relu"
        self.params: list[np.ndarray] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            scale = np.sqrt((2.0 if self.relu else 1.0) / fan_in)
            self.params.append(rng.normal(0.0, scale, (fan_in, fan_out)).astype(np.float32))
            self.params.append(np.zeros(fan_out, np.float32))

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        activations = [x]
        h = x
        layers = len(self.params) // 2
        for i in range(layers):
            h = h @ self.params[2 * i] + self.params[2 * i + 1]
            if i < layers - 1:
                h = np.maximum(h, 0.0) if self.relu else np.tanh(h)
            activations.append(h)
        return h, activations

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        out, acts = self.logits(x)
        shifted = out - out.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        n = len(y)
        loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())
        delta = probs
        delta[np.arange(n), y] -= 1.0
        delta /= n
        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        for i in reversed(range(len(self.params) // 2)):
            grads[2 * i] = np.ascontiguousarray(acts[i].T @ delta)
            grads[2 * i + 1] = delta.sum(axis=0)
            if i > 0:
                back = delta @ self.params[2 * i].T
                delta = back * (acts[i] > 0) if self.relu else back * (1.0 - acts[i] ** 2)
        return loss, grads

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.logits(x)[0].argmax(axis=1) == y).mean())


def train(optimizer_name: str, epochs: int, batch_size: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    x_train, y_train = two_spirals(4000, rng)
    x_test, y_test = two_spirals(1000, rng)
    model = MLP([2, 64, 64, 2], rng)
    cls, kwargs = OPTIMIZERS[optimizer_name]
    opt = cls(model.params, **kwargs)
    print(f"lrfast {optimizer_name} {kwargs} on two spirals; SIMD: {simd_level()}")
    start = time.perf_counter()
    accuracy = 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            loss, grads = model.loss_and_grads(x_train[batch], y_train[batch])
            opt.step(grads)
            losses.append(loss)
        accuracy = model.accuracy(x_test, y_test)
        print(f"epoch {epoch:3d}  train loss {np.mean(losses):.4f}  test accuracy {accuracy:.3f}")
    print(f"{opt.step_count} updates in {time.perf_counter() - start:.1f} s")
    return accuracy
