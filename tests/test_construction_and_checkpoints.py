"""Optimizers check their parameters when built; checkpoints are written atomically."""

from __future__ import annotations

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
