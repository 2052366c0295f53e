"""diagnose() on real training runs it was never tuned on (``tests/data/loss_corpus.*``)."""

from __future__ import annotations

import sys

import pytest
from loss_corpus import RIGHT, agreement, load, report, score, verdict

RUNS, _ = load()


@pytest.mark.parametrize("per", ["epoch", "step"])
def test_held_out_accuracy(per: str) -> None:
    # Measured when the thresholds were set: 83.3% of the 312 held-out runs, per step and per
    # epoch alike (the target was 90%: missed, see data/loss_corpus_confusion.md).
    held_out = score(RUNS, "held_out", per)
    assert held_out.total == 312
    assert held_out.accuracy >= 0.83, held_out.table()
    # A run that did not learn, or diverged, is never called healthy.
    for label in ("no_learning", "diverged"):
        assert held_out.confusion[(label, "healthy")] == 0, held_out.table()
    # The weak spot, measured: of the 94 held-out runs called healthy, 60 were good; most of
    # the others are rates a few times too low whose curves converge all the same.
    healthy = sum(n for (_, v), n in held_out.confusion.items() if v == "healthy")
    assert held_out.confusion[("good", "healthy")] >= 0.6 * healthy


def test_per_step_and_per_epoch_histories_of_a_run_agree() -> None:
    assert agreement(RUNS, "held_out") >= 0.95
    assert agreement(RUNS, "tune") >= 0.95


def test_every_label_has_a_verdict_and_the_table_is_current() -> None:
    assert {r.label for r in RUNS} == set(RIGHT)
    assert all(verdict(r.epoch_losses) in RIGHT.values() for r in RUNS)
    from loss_corpus import DATA

    assert (DATA / "loss_corpus_confusion.md").read_text() == report()


def test_the_stored_labels_are_what_the_labelling_rules_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The generator's label() applied to the recorded runs gives the labels stored with them
    # (so the tables above score what the rules documented there say).
    import importlib.util

    from loss_corpus import DATA

    spec = importlib.util.spec_from_file_location("make_loss_corpus", DATA / "make_loss_corpus.py")
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, maker)  # dataclasses look their module up
    spec.loader.exec_module(maker)
    runs, sweeps = maker.read()
    stored = [r.label for r in runs]
    maker.relabel(runs, sweeps)
    assert [r.label for r in runs] == stored
    assert all(sweep["good_rates"] for sweep in sweeps)
