"""TrainingLogger: what it records from NumPy and torch optimizers, read back from the CSV and
JSON-lines files and from TensorBoard's event files (with tensorboard's own reader)."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrfast
from lrfast import schedules

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the test extra installs tensorboard (its event reader)",
)


def _read_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        out.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return out


def _read_jsonl(path: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        out.setdefault(record["tag"], []).append((record["step"], float(record["value"])))
    return out


def _read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    reader = event_accumulator.EventAccumulator(str(folder))
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
            for tag in reader.Tags()["scalars"]}  # fmt: skip


def _expected_numpy_run() -> tuple[list[np.ndarray], dict[str, list[tuple[int, float]]]]:
    """Two groups of SGD with momentum (the second on a schedule), 6 steps; the records a
    logger must write, computed here from copies of the parameters and the gradients."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(50), rng.standard_normal((4, 5))]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(6)]
    rate = schedules.StepLR(0.2, step_size=2, gamma=0.5)
    expected: dict[str, list[tuple[int, float]]] = {}
    shadow = lrfast.SGD([{"params": [params[0].copy()], "lr": 0.1},
                         {"params": [params[1].copy()], "lr": rate}], momentum=0.9)  # fmt: skip
    for t, g in enumerate(grads, 1):
        before = [p.copy() for p in shadow.params]
        expected.setdefault("lr/group0", []).append((t, 0.1))
        expected.setdefault("lr/group1", []).append((t, rate(t - 1)))
        shadow.step(g)
        norm = math.sqrt(sum(float(np.sum(x**2)) for x in g))
        moved = math.sqrt(sum(float(np.sum((p - b) ** 2)) for p, b in zip(shadow.params, before)))
        size = math.sqrt(sum(float(np.sum(b**2)) for b in before))
        expected.setdefault("grad_norm", []).append((t, norm))
        expected.setdefault("update_ratio", []).append((t, moved / size))
        expected.setdefault("loss", []).append((t, 1.0 / t))
    return grads, expected


def _assert_records(seen: dict[str, list[tuple[int, float]]], expected: Any, rel: float) -> None:
    assert set(seen) == set(expected)
    for tag, records in expected.items():
        assert [s for s, _ in seen[tag]] == [s for s, _ in records], tag
        for (_, got), (_, want) in zip(seen[tag], records):
            assert got == pytest.approx(want, rel=rel), tag


@pytest.mark.parametrize("backend", ["torch", "tensorboardX"])
def test_a_numpy_optimizers_steps_are_logged_to_every_sink(tmp_path: Path, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch.utils.tensorboard", reason="the test extra installs torch")
    else:
        pytest.importorskip("tensorboardX", reason="the test extra installs tensorboardX")
    grads, expected = _expected_numpy_run()
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(50), rng.standard_normal((4, 5))]
    rate = schedules.StepLR(0.2, step_size=2, gamma=0.5)
    opt = lrfast.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": rate}],
                     momentum=0.9)  # fmt: skip
    paths = {"tensorboard": tmp_path / "tb", "csv": tmp_path / "log.csv",
             "jsonl": tmp_path / "log.jsonl"}  # fmt: skip
    with lrfast.TrainingLogger(**paths, backend=backend) as log:
        log.attach(opt)
        for t, g in enumerate(grads, 1):
            opt.step(g)
            log.log(loss=1.0 / t)
    _assert_records(_read_csv(paths["csv"]), expected, 1e-12)
    _assert_records(_read_jsonl(paths["jsonl"]), expected, 1e-12)
    _assert_records(_read_events(paths["tensorboard"]), expected, 1e-6)  # float32 in events


def test_a_torch_optimizers_steps_are_logged(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the test extra installs torch")
    import lrfast.torch as lt

    for make in (lambda p: lt.AdamW(p, lr=0.01), lambda p: torch.optim.SGD(p, lr=0.05)):
        model = torch.nn.Linear(6, 3)
        opt = make(model.parameters())
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
        folder = tmp_path / type(opt).__module__
        expected: dict[str, list[tuple[int, float]]] = {}
        with lrfast.TrainingLogger(tensorboard=folder, csv=folder / "log.csv") as log:
            log.attach(opt)
            generator = torch.Generator().manual_seed(0)
            for t in range(1, 6):
                x = torch.randn(8, 6, generator=generator)
                opt.zero_grad()
                loss = model(x).pow(2).mean()
                loss.backward()
                before = [p.detach().double().clone() for p in model.parameters()]
                norm = math.sqrt(
                    sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())
                )
                expected.setdefault("lr/group0", []).append((t, opt.param_groups[0]["lr"]))
                opt.step()
                scheduler.step()
                moved = math.sqrt(sum(float((p.detach().double() - b).pow(2).sum())
                                      for p, b in zip(model.parameters(), before)))  # fmt: skip
                size = math.sqrt(sum(float(b.pow(2).sum()) for b in before))
                expected.setdefault("grad_norm", []).append((t, norm))
                expected.setdefault("update_ratio", []).append((t, moved / size))
                log.log(loss=loss.item())
                expected.setdefault("loss", []).append((t, loss.item()))
        _assert_records(_read_csv(folder / "log.csv"), expected, 1e-9)
        _assert_records(_read_events(folder), expected, 1e-6)


def test_every_and_update_ratio_choose_what_is_recorded(tmp_path: Path) -> None:
    p = np.ones(10)
    opt = lrfast.Adam([p], lr=0.1)
    with lrfast.TrainingLogger(csv=tmp_path / "a.csv", every=2, update_ratio=False) as log:
        log.attach(opt)
        for _ in range(5):
            opt.step([np.ones(10)])
        log.log(step=100, accuracy=0.5)
    seen = _read_csv(tmp_path / "a.csv")
    assert set(seen) == {"lr/group0", "grad_norm", "accuracy"}
    assert [s for s, _ in seen["grad_norm"]] == [2, 4]
    assert seen["accuracy"] == [(100, 0.5)]
    # Appending to the same file keeps one header.
    with lrfast.TrainingLogger(csv=tmp_path / "a.csv") as log:
        log.log(step=7, loss=math.inf)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines.count("step,wall_time,tag,value") == 1 and lines[-1].endswith(",loss,inf")


def test_detached_and_refused_steps_record_nothing(tmp_path: Path) -> None:
    p = np.ones(10)
    opt = lrfast.SGD([p], lr=0.1)
    log = lrfast.TrainingLogger(jsonl=tmp_path / "a.jsonl")
    log.attach(opt)
    with pytest.raises(ValueError):
        opt.step([np.ones(11)])  # refused: no record, no step counted
    opt.step([np.ones(10)])
    log.close()
    opt.step([np.ones(10)])  # after close: detached
    seen = _read_jsonl(tmp_path / "a.jsonl")
    assert seen["grad_norm"] == [(1, pytest.approx(math.sqrt(10)))]


def test_hooks_of_the_numpy_optimizers_register_and_remove() -> None:
    calls: list[str] = []
    opt = lrfast.SGD([np.ones(3)], lr=0.1)
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(f"pre {len(args[0])}"))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    opt.step([np.ones(3)])
    pre.remove()
    post.remove()
    opt.step([np.ones(3)])
    assert calls == ["pre 1", "post"]


def test_bad_arguments_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least one of tensorboard, csv and jsonl"):
        lrfast.TrainingLogger()
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        lrfast.TrainingLogger(csv=tmp_path / "a.csv", every=0)
    with pytest.raises(ValueError, match="is a folder"):
        lrfast.TrainingLogger(csv=tmp_path)
    with pytest.raises(ValueError, match="backend must be"):
        lrfast.TrainingLogger(csv=tmp_path / "a.csv", backend="tf")
    log = lrfast.TrainingLogger(csv=tmp_path / "b.csv")
    with pytest.raises(TypeError, match=r"optimizer must be an lrfast or torch\.optim optimizer"):
        log.attach(object())
    with pytest.raises(TypeError, match="accuracy must be a real number"):
        log.log(loss=1.0, accuracy="high")
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        log.log(step=-1, loss=1.0)
    log.close()
    assert _read_csv(tmp_path / "b.csv") == {}  # the refused calls wrote nothing
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(
        ImportError, match=r"needs torch.utils.tensorboard or tensorboardX: .*\[tensorboard\]"
    ):
        lrfast.TrainingLogger(tensorboard=tmp_path / "tb")


def test_the_demo_writes_its_runs_for_tensorboard(tmp_path: Path) -> None:
    from lrfast.cli import demo

    out, logs = tmp_path / "report", tmp_path / "runs"
    argv = ["--sections", "fixed", "--epochs", "2", "--out", str(out), "--no-progress",
            "--tensorboard", str(logs)]  # fmt: skip
    assert demo.main(argv) == 0
    assert sorted(p.name for p in logs.iterdir()) == ["too_high", "too_low", "well_chosen"]
    seen = _read_events(logs / "well_chosen")
    steps = len(seen["loss"])
    assert steps == 2 * math.ceil(1347 / demo.BATCH)
    assert [s for s, _ in seen["update_ratio"]] == list(range(1, steps + 1))
    assert seen["lr/group0"][0][1] == pytest.approx(0.03)
    assert len(seen["epoch_loss"]) == 2 and len(seen["test_accuracy"]) == 1
