"""Optimizers check their parameters when built; checkpoints are written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import lrfast


def test_bad_parameters_are_refused_when_the_optimizer_is_built() -> None:
    a = np.ones(4, np.float32)
    read_only = np.ones(4, np.float32)
    read_only.flags.writeable = False
    buffer = np.ones(8, np.float32)
    cases = [
        ([a, a], r"params\[0\] and params\[1\] share memory"),
        ([a, buffer[:4], buffer[2:6].copy(), buffer[3:7]], r"params\[1\] and params\[3\]"),
        ([a, read_only], r"params\[1\] is read-only"),
        ([a, np.ones((4, 4), np.float32)[:, 0]], r"params\[1\] must be C-contiguous"),
    ]
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            lrfast.Adam(params)
    with pytest.raises(TypeError, match=r"params\[0\] must have dtype"):
        lrfast.SGD([np.ones(3, np.int64)])


def test_save_writes_the_path_given_and_a_failed_save_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = np.ones(16, np.float32)
    opt = lrfast.Adam([p], lr=0.1)
    opt.step([np.ones_like(p)])
    path = tmp_path / "ckpt.bin"
    opt.save(path)
    assert path.exists() and not (tmp_path / "ckpt.bin.npz").exists()
    before = path.read_bytes()

    def full_disk(file: object, **arrays: object) -> None:
        file.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    opt.step([np.ones_like(p)])
    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        opt.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ckpt.bin"]
    restored = lrfast.Adam([np.ones(16, np.float32)], lr=0.1)
    restored.load(path)
    assert restored.step_count == 1
    with pytest.raises(IsADirectoryError, match="directory"):
        opt.save(tmp_path)


def test_monitors_have_a_repr() -> None:
    opt = lrfast.SGD([np.ones(3)], lr=0.1)
    assert repr(lrfast.ReduceLROnPlateau(opt, patience=3)).startswith(
        "ReduceLROnPlateau(<SGD>, mode='min', factor=0.1, patience=3"
    )
    assert "patience=5" in repr(lrfast.EarlyStopping(patience=5))


def test_a_step_over_several_dtypes_is_checked_whole_before_any_update() -> None:
    p32, p64 = np.ones(8, np.float32), np.ones(8, np.float64)
    opt = lrfast.Adam([p32, p64], lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[1\] and params\[1\] share memory"):
        opt.step([np.ones(8, np.float32), p64])
    assert (p32 == 1).all() and (p64 == 1).all() and opt.step_count == 0
    misaligned = np.zeros(8 * 8 + 1, np.uint8)[1:].view(np.float64)
    with pytest.raises(ValueError, match=r"grads\[1\] is not aligned"):
        opt.step([np.ones(8, np.float32), misaligned])
    assert (p32 == 1).all() and opt.step_count == 0


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_max_grad_norm_over_several_dtypes(norm_type: float) -> None:
    rng = np.random.default_rng(0)
    g32, g64 = rng.standard_normal(50).astype(np.float32), rng.standard_normal(30)
    p32, p64 = np.zeros(50, np.float32), np.zeros(30)
    opt = lrfast.SGD([p32, p64], lr=1.0, max_grad_norm=0.5, grad_norm_type=norm_type)
    opt.step([g32, g64])
    both = np.concatenate([g32.astype(np.float64), g64])
    expected = np.linalg.norm(both, ord=norm_type)
    assert opt.last_grad_norm == pytest.approx(expected, rel=1e-12)
    scale = 0.5 / (expected + 1e-6)
    np.testing.assert_allclose(p64, -scale * g64, rtol=1e-12)
    np.testing.assert_allclose(p32, -scale * g32, rtol=1e-6)


def test_one_optimizer_refuses_a_second_concurrent_step() -> None:
    p = np.ones(4)
    opt = lrfast.Adam([p])
    opt._stepping.acquire()  # as a step running in another thread holds it
    try:
        with pytest.raises(RuntimeError, match="running in another thread"):
            opt.step([np.ones(4)])
    finally:
        opt._stepping.release()
    assert (p == 1).all() and opt.step_count == 0
    opt.step([np.ones(4)])
    assert opt.step_count == 1


def test_load_state_dict_checks_every_key_before_changing_anything() -> None:
    p = np.ones(4, np.float32)
    source = lrfast.NAdam([p.copy()], lr=0.01)
    source.step([np.ones(4, np.float32)])
    good = source.state_dict()
    target = lrfast.NAdam([p], lr=0.5)
    target.step([np.ones(4, np.float32)])
    before = target.state_dict()

    def with_(**changes: object) -> dict[str, object]:
        return {**good, **changes}

    def with_group(**changes: object) -> dict[str, object]:
        return {**good, "param_groups": [{**good["param_groups"][0], **changes}]}

    group = good["param_groups"][0]

    bad_state = [
        {"exp_avg": good["state"][0]["exp_avg"]},  # exp_avg_sq missing
        {**good["state"][0], "bogus": np.zeros(4, np.float32)},
        {**good["state"][0], "exp_avg": [0.0, 0.0, 0.0, 0.0]},
    ]
    cases: list[dict[str, object]] = [
        *(with_(step=s) for s in ("x", None, -5, 2**64, 1.5, "7", True)),
        *(with_(scalars={"lr_scale": v}) for v in (math.nan, -1.0, 0.0)),
        *(with_group(mu_product=v) for v in (5.0, math.nan, "0.5")),
        *(with_group(step=s) for s in ("x", None, -5, 2**64, 1.5, True)),
        with_(scalars={"lr_scale": 1.0, "extra": 1.0}),
        with_group(lr=-1.0),
        with_group(nope=1),
        with_group(params=[0, 1]),
        {**good, "param_groups": [{k: v for k, v in group.items() if k != "eps"}]},
        {**good, "param_groups": [group, group]},
        {**good, "param_groups": group},
        {k: v for k, v in good.items() if k != "param_groups"},
        {**good, "extra": 1},
        *(with_(state=[s]) for s in bad_state),
        with_(state=[None]),
        with_(state=[[]]),
        {k: v for k, v in good.items() if k != "step"},
    ]
    for case in cases:
        with pytest.raises((TypeError, ValueError)):
            target.load_state_dict(case)
        after = target.state_dict()
        assert after["step"] == before["step"] and after["scalars"] == before["scalars"]
        assert after["param_groups"] == before["param_groups"]
        for key, value in before["state"][0].items():
            np.testing.assert_array_equal(after["state"][0][key], value)
    target.load_state_dict(good)
    assert target.state_dict()["param_groups"][0]["lr"] == 0.01


def test_a_missing_master_copy_is_refused() -> None:
    p16 = np.ones(4, np.float16)
    opt = lrfast.Adam([p16], master_weights=True)
    opt.step([np.ones(4, np.float16)])
    sd = opt.state_dict()
    del sd["state"][0]["master"]
    with pytest.raises(ValueError, match="has no 'master'"):
        lrfast.Adam([np.ones(4, np.float16)], master_weights=True).load_state_dict(sd)


def test_a_checkpoint_has_the_mode_of_a_plain_file(tmp_path: Path) -> None:
    import os

    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    opt = lrfast.SGD([np.ones(3)], lr=0.1)
    opt.save(tmp_path / "ckpt")
    assert os.stat(tmp_path / "ckpt").st_mode == os.stat(plain).st_mode
