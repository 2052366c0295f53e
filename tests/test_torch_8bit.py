"""lrfast.torch with ``state_bits=8``: the NumPy classes' 8-bit updates bit for bit, state dicts
that resume exactly and convert to and from torch.optim's, the checks, and a CNN's accuracy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra: pip install '.[test]'")
import lrfast  # noqa: E402
import lrfast.torch as lt  # noqa: E402
from lrfast import QuantizedState  # noqa: E402

# The optimizers the 8-bit issue names, with options that use every slot they have.
OPTIONS: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 1e-2, "momentum": 0.9},
    "Adagrad": {"lr": 1e-2, "initial_accumulator_value": 0.1},
    "RMSprop": {"lr": 1e-3, "momentum": 0.9},
    "Adam": {"lr": 1e-2},
    "AdamW": {"lr": 1e-2, "weight_decay": 0.1},
}
# 8-bit: the two float32 tensors of 4,096 elements or more; the small one and the float64 one
# keep their usual state.
SHAPES = [((64, 128), torch.float32), ((100,), torch.float32), ((5000,), torch.float32),
          ((5000,), torch.float64)]  # fmt: skip
EIGHT_BIT = [True, False, True, False]


def _tensors(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype) for shape, dtype in SHAPES]


def _step(optimizer: Any, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone()
    optimizer.step()


def _states_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_state_bits_8_updates_as_the_numpy_class_bit_for_bit(name: str) -> None:
    """Large float32 tensors keep ``{key}_codes`` (uint8) and ``{key}_absmax`` (float32) and
    no ``{key}``; the others their usual state; parameters and codes equal the NumPy class's
    with state_bits=8 after every step (the same kernels)."""
    params = [t.requires_grad_() for t in _tensors(0)]
    arrays = [t.detach().numpy().copy() for t in params]
    ours = getattr(lt, name)(params, state_bits=8, **OPTIONS[name])
    reference = getattr(lrfast, name)(arrays, state_bits=8, **OPTIONS[name])
    for seed in range(1, 5):
        grads = _tensors(seed)
        _step(ours, params, grads)
        reference.step([g.numpy() for g in grads])
        for p, a in zip(params, arrays):
            assert np.array_equal(p.detach().numpy(), a), seed
    for i, (p, eight_bit) in enumerate(zip(params, EIGHT_BIT)):
        state = ours.state[p]
        for slot in ours.spec.slots:
            if slot.name not in reference.state[i]:
                continue
            theirs = reference.state[i][slot.name]
            assert isinstance(theirs, QuantizedState) == eight_bit
            if eight_bit:
                assert slot.torch_key not in state
                codes, absmax = state[f"{slot.torch_key}_codes"], state[f"{slot.torch_key}_absmax"]
                assert codes.dtype == torch.uint8 and codes.shape == p.shape
                assert np.array_equal(codes.numpy(), theirs.codes)
                assert np.array_equal(absmax.numpy(), theirs.absmax)
            else:
                assert np.array_equal(state[slot.torch_key].numpy(), theirs)


def test_8bit_state_dicts_resume_bit_for_bit_and_convert_to_and_from_torch_optim(
    tmp_path: Path,
) -> None:
    """A saved 8-bit state dict (torch.save, loaded with weights_only) resumes exactly; loaded
    into a 32-bit lrfast.torch optimizer it is decoded (and that one's state dict loads into
    torch.optim); torch.optim's float32 state loaded with state_bits=8 is encoded."""
    params = [t.requires_grad_() for t in _tensors(0)]
    ours = lt.AdamW(params, lr=1e-2, state_bits=8)
    for seed in range(1, 4):
        _step(ours, params, _tensors(seed))
    path = tmp_path / "adamw8.pt"
    torch.save(ours.state_dict(), path)
    saved = torch.load(path, weights_only=True)
    copies = [p.detach().clone().requires_grad_() for p in params]
    resumed = lt.AdamW(copies, lr=1e-2, state_bits=8)
    resumed.load_state_dict(saved)
    for seed in range(4, 7):
        grads = _tensors(seed)
        _step(ours, params, grads)
        _step(resumed, copies, grads)
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
        assert _states_equal(ours.state[p], resumed.state[q])

    weights = params[0]
    wide_params = [p.detach().clone().requires_grad_() for p in params]
    wide = lt.AdamW(wide_params, lr=1e-2)
    wide.load_state_dict(saved)
    state = wide.state[wide_params[0]]
    assert "exp_avg_codes" not in state and state["exp_avg"].dtype == torch.float32
    codes = saved["state"][0]["exp_avg_codes"].numpy()
    absmax = saved["state"][0]["exp_avg_absmax"].numpy()
    decoded = QuantizedState(codes, absmax, signed=True).dequantize()
    assert np.array_equal(state["exp_avg"].numpy(), decoded)
    original = torch.optim.AdamW([p.detach().clone().requires_grad_() for p in params], lr=1e-2)
    original.load_state_dict(wide.state_dict())
    _step(original, original.param_groups[0]["params"], _tensors(9))

    narrow_params = [p.detach().clone().requires_grad_() for p in params]
    narrow = lt.AdamW(narrow_params, lr=1e-2, state_bits=8)
    narrow.load_state_dict(original.state_dict())
    exp_avg = original.state[original.param_groups[0]["params"][0]]["exp_avg"]
    encoded = QuantizedState.from_array(exp_avg.numpy(), signed=True)
    state = narrow.state[narrow_params[0]]
    assert "exp_avg" not in state
    assert np.array_equal(state["exp_avg_codes"].numpy(), encoded.codes)
    assert np.array_equal(state["exp_avg_absmax"].numpy(), encoded.absmax)
    # The small tensor keeps float32 state through all of it.
    assert narrow.state[narrow_params[1]]["exp_avg"].dtype == torch.float32
    assert weights.shape == (64, 128)


def _trained() -> tuple[list[torch.Tensor], Any]:
    params = [t.requires_grad_() for t in _tensors(0)]
    optimizer = lt.Adam(params, lr=1e-2, state_bits=8)
    _step(optimizer, params, _tensors(1))
    return params, optimizer


@pytest.mark.parametrize(
    ("corrupt", "error", "words"),
    [
        (lambda s: s[0].update(exp_avg_codes=s[0]["exp_avg_codes"].float()), ValueError,
         r"\['state'\]\[0\]\['exp_avg_codes'\] has dtype torch.float32 and shape \(64, 128\); "
         r"8-bit codes are torch.uint8"),
        (lambda s: s[0].update(exp_avg_codes=s[0]["exp_avg_codes"].flatten()), ValueError,
         r"8-bit codes are torch.uint8 of the parameter's shape \(64, 128\)"),
        (lambda s: s[2].update(exp_avg_absmax=s[2]["exp_avg_absmax"][:-1]), ValueError,
         r"\['state'\]\[2\]\['exp_avg_absmax'\] has dtype torch.float32 and shape \(19,\); the "
         r"block scales are float32 of shape \(20,\)"),
        (lambda s: s[2].pop("exp_avg_sq_absmax"), ValueError,
         r"\['exp_avg_sq_codes'\] has no 'exp_avg_sq_absmax' beside it"),
        (lambda s: s[2].update(exp_avg_absmax=[1.0] * 20), TypeError,
         r"\['exp_avg_absmax'\] must be a tensor"),
    ],
)  # fmt: skip
def test_an_8bit_state_dict_that_does_not_fit_changes_nothing(corrupt, error, words) -> None:  # type: ignore[no-untyped-def]
    _, optimizer = _trained()
    before = copy.deepcopy(optimizer.state_dict())
    bad = copy.deepcopy(optimizer.state_dict())
    corrupt(bad["state"])
    with pytest.raises(error, match=words):
        optimizer.load_state_dict(bad)
    after = optimizer.state_dict()
    for index in before["state"]:
        assert _states_equal(before["state"][index], after["state"][index])


@pytest.mark.parametrize(
    ("corrupt", "error", "words"),
    [
        (lambda s, p: s[p[0]].update(exp_avg_codes=s[p[0]]["exp_avg_codes"].to(torch.int16)),
         ValueError, r"state 'exp_avg_codes' of param_groups\[0\]\['params'\]\[0\] has dtype "
         r"torch.int16 and shape \(64, 128\); 8-bit state needs torch.uint8"),
        (lambda s, p: s[p[2]].update(exp_avg_absmax=torch.zeros(20, dtype=torch.float64)),
         ValueError, r"state 'exp_avg_absmax' of param_groups\[0\]\['params'\]\[2\] has dtype "
         r"torch.float64 and shape \(20,\); the update needs torch.float32 and \(20,\)"),
        (lambda s, p: s[p[2]].pop("exp_avg_absmax"), ValueError,
         r"state 'exp_avg_codes' of param_groups\[0\]\['params'\]\[2\] has no 'exp_avg_absmax'"),
        (lambda s, p: (s[p[2]].pop("exp_avg_sq_codes"), s[p[2]].pop("exp_avg_sq_absmax"),
                       s[p[2]].update(exp_avg_sq=torch.zeros(5000))), ValueError,
         r"state 'exp_avg_sq' of param_groups\[0\]\['params'\]\[2\] is float32 beside 8-bit "
         r"state"),
        (lambda s, p: (s[p[3]].pop("exp_avg"), s[p[3]].update(
            exp_avg_codes=torch.zeros(5000, dtype=torch.uint8),
            exp_avg_absmax=torch.zeros(20))), TypeError,
         r"param_groups\[0\]\['params'\]\[3\] has 8-bit state, but 8-bit state is for float32"),
    ],
)  # fmt: skip
def test_8bit_state_that_does_not_fit_is_refused_by_name_with_nothing_written(
    corrupt, error, words
) -> None:  # type: ignore[no-untyped-def]
    params, optimizer = _trained()
    corrupt(optimizer.state, params)
    before = [p.detach().clone() for p in params]
    state_before = [copy.deepcopy(optimizer.state[p]) for p in params]
    for p, g in zip(params, _tensors(2)):
        p.grad = g
    with pytest.raises(error, match=words):
        optimizer.step()
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)
    for p, state in zip(params, state_before):
        assert _states_equal(optimizer.state[p], state)


def test_state_bits_and_slots_that_cannot_be_8bit_are_refused_by_name() -> None:
    p = torch.zeros(5000, requires_grad=True)
    with pytest.raises(ValueError, match="state_bits must be 32 or 8, got 4"):
        lt.Adam([p], state_bits=4)
    with pytest.raises(ValueError, match="min_8bit_size must be an integer >= 0"):
        lt.Adam([p], state_bits=8, min_8bit_size=-1)
    with pytest.raises(
        ValueError, match=r"param_groups\[0\]: state_bits=8: grad_avg cannot be stored"
    ):
        lt.RMSprop([p], centered=True, state_bits=8)
    optimizer = lt.RMSprop([p], state_bits=8)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: state_bits=8: grad_avg"):
        optimizer.add_param_group(
            {"params": [torch.zeros(3, requires_grad=True)], "centered": True}
        )
    assert len(optimizer.param_groups) == 1
    every = lt.Adam([torch.zeros(3, requires_grad=True)], state_bits=8, min_8bit_size=0)
    every.param_groups[0]["params"][0].grad = torch.ones(3)
    every.step()
    assert "exp_avg_codes" in every.state[every.param_groups[0]["params"][0]]


def _digits_split() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    parts = train_test_split(
        digits.images / 16.0, digits.target, test_size=0.25, random_state=0,
        stratify=digits.target,
    )  # fmt: skip
    x_train, x_test, y_train, y_test = (torch.tensor(a) for a in parts)
    return x_train.float().unsqueeze(1), x_test.float().unsqueeze(1), y_train, y_test


def _cnn_accuracy(make: Any, bits: int, data: tuple[torch.Tensor, ...], seed: int) -> float:
    x_train, x_test, y_train, y_test = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10),
    )  # fmt: skip
    optimizer = make(model.parameters(), bits)
    order = torch.Generator().manual_seed(seed + 1)
    for _ in range(10):
        for batch in torch.randperm(len(x_train), generator=order).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    eight_bit = [p for p in model.parameters() if "exp_avg_codes" in optimizer.state[p]
                 or "momentum_buffer_codes" in optimizer.state[p]]  # fmt: skip
    assert len(eight_bit) == (2 if bits == 8 else 0)  # the second convolution and the head
    with torch.no_grad():
        return float((model(x_test).argmax(1) == y_test).double().mean())


@pytest.mark.parametrize(
    "make",
    [
        lambda p, bits: lt.SGD(p, lr=0.01, momentum=0.9, state_bits=bits),
        lambda p, bits: lt.Adam(p, lr=1e-3, state_bits=bits),
        lambda p, bits: lt.AdamW(p, lr=1e-3, weight_decay=0.01, state_bits=bits),
    ],
    ids=["SGD momentum", "Adam", "AdamW"],
)
def test_a_pytorch_cnn_keeps_its_test_accuracy_with_8bit_state(make: Any) -> None:
    """A CNN on digits (98% of its parameters in the two tensors that get 8-bit state), 10
    epochs, two seeds: test accuracy within 0.5 points of float32 state (the issue's target;
    measured: at most +0.22, one test image of 450)."""
    data = _digits_split()
    for seed in (0, 1):
        full, eight = (_cnn_accuracy(make, bits, data, seed) for bits in (32, 8))
        assert full > 0.9
        assert abs(eight - full) <= 0.005, (seed, full, eight)
