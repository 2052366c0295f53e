"""The corpus of real training runs (``data/make_loss_corpus.py`` makes it) and how well
``lrfast.diagnose`` reads it.

    python tests/loss_corpus.py    # prints the tables, writes data/loss_corpus_confusion.md
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import lrfast
from lrfast.tuning.finder import replay

DATA = Path(__file__).parent / "data"
LABELS = ("good", "too_low", "too_high", "diverged", "no_learning")
VERDICTS = ("healthy", "too_low", "too_high", "not_learning")
# The range tests of the corpus planned this many steps (make_loss_corpus.range_test_numpy).
SWEEP_STEPS = 200
# The verdict that gives the right advice for each outcome.
RIGHT = {
    "good": "healthy",
    "too_low": "too_low",
    "too_high": "too_high",
    "diverged": "too_high",
    "no_learning": "not_learning",
}


@dataclass
class Run:
    meta: dict[str, Any]
    step_losses: np.ndarray
    epoch_losses: np.ndarray

    @property
    def label(self) -> str:
        label: str = self.meta["label"]
        return label


def load() -> tuple[list[Run], list[dict[str, Any]]]:
    """The runs (metadata, histories) and the range-test sweeps."""
    meta = json.loads((DATA / "loss_corpus.json").read_text())
    histories = np.load(DATA / "loss_corpus.npz")
    runs = [
        Run(record, histories[f"step_{i}"].astype(float), histories[f"epoch_{i}"])
        for i, record in enumerate(meta["runs"])
    ]
    return runs, meta["sweeps"]


def verdict(losses: np.ndarray) -> str:
    """diagnose()'s verdict, or ``too_high`` for a run that stopped before 8 points (it blew
    up: the corpus ends a run when its loss does)."""
    if len(losses) < 8:
        return "too_high"
    return lrfast.diagnose(losses).verdict


@dataclass
class Scores:
    confusion: Counter[tuple[str, str]]
    total: int
    right: int

    @property
    def accuracy(self) -> float:
        return self.right / self.total

    def table(self) -> str:
        head = "| outcome \\ verdict | " + " | ".join(VERDICTS) + " | right |"
        lines = [head, "|---" * (len(VERDICTS) + 2) + "|"]
        for label in LABELS:
            row = [self.confusion[(label, v)] for v in VERDICTS]
            n = sum(row)
            if n == 0:
                continue
            right = self.confusion[(label, RIGHT[label])]
            cells = " | ".join(str(c) for c in row)
            lines.append(f"| {label} | {cells} | {right}/{n} |")
        lines.append(f"\n{self.right} of {self.total} right ({100 * self.accuracy:.1f}%)")
        return "\n".join(lines)


def score(runs: list[Run], split: str, per: str) -> Scores:
    """Verdicts on the ``split`` runs' ``per``-step or ``per``-epoch histories."""
    confusion: Counter[tuple[str, str]] = Counter()
    chosen = [r for r in runs if r.meta["split"] == split]
    for run in chosen:
        losses = run.step_losses if per == "step" else run.epoch_losses
        confusion[(run.label, verdict(losses))] += 1
    right = sum(n for (label, v), n in confusion.items() if RIGHT[label] == v)
    return Scores(confusion, len(chosen), right)


def agreement(runs: list[Run], split: str) -> float:
    """The share of runs whose per-step and per-epoch histories get the same verdict, over the
    first 9, 11, 13, 17 and all 20 epochs of each complete run (so that the stretches diagnose
    averages over do not always line up with epochs)."""
    same = total = 0
    for run in runs:
        if run.meta["split"] != split or len(run.epoch_losses) < 20:
            continue
        per_epoch = len(run.step_losses) // len(run.epoch_losses)
        for epochs in (9, 11, 13, 17, 20):
            steps = run.step_losses[: per_epoch * epochs]
            same += verdict(steps) == verdict(run.epoch_losses[:epochs])
            total += 1
    return same / total


def sweep_rows(sweeps: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, float, bool, bool]]:
    """Each recorded range test replayed through today's stop rule and suggestion: (sweep,
    confidence, suggestion, right, within a decade). Right: the suggestion lies among the
    rates its family found good, give or take half a decade (the grid's step)."""
    rows = []
    for sweep in sweeps:
        result = replay(np.array(sweep["rates"]), sweep["losses"], burn_in=SWEEP_STEPS // 10)
        good = sweep["good_rates"]
        try:
            suggestion = result.suggestion
        except ValueError:
            suggestion = math.nan
        low, high = min(good), max(good)
        right = low / 10**0.25 <= suggestion <= high * 10**0.25
        near = low / 10 <= suggestion <= high * 10
        rows.append((sweep, result.confidence, suggestion, right, near))
    return rows


def confidence_table(sweeps: list[dict[str, Any]]) -> str:
    rows = sweep_rows(sweeps)
    lines = [
        "| problem | optimizer | seed | good rates | suggestion | confidence | right |",
        "|---|---|---|---|---|---|---|",
    ]
    for sweep, confidence, suggestion, right, near in rows:
        good = sweep["good_rates"]
        verdict = "yes" if right else "within a decade" if near else "no"
        lines.append(
            f"| {sweep['problem']} | {sweep['optimizer']} | {sweep['seed']} | "
            f"{min(good):.2g}-{max(good):.2g} | {suggestion:.2g} | {confidence} | {verdict} |"
        )
    lines.append("")
    lines.append("| confidence | sweeps | right | within a decade |")
    lines.append("|---|---|---|---|")
    for level in ("high", "medium", "low", "none"):
        chosen = [r for r in rows if r[1] == level]
        right = sum(r[3] for r in chosen)
        near = sum(r[4] for r in chosen)
        lines.append(f"| {level} | {len(chosen)} | {right} | {near} |")
    return "\n".join(lines)


def report() -> str:
    runs, sweeps = load()
    parts = ["# diagnose() on the corpus of training runs", ""]
    parts.append(
        "Rows: the outcome of each run (its label); columns: the verdict of `lrfast.diagnose`. "
        "Right means the verdict gives the advice the outcome calls for (a diverged run read "
        "as too high). Made by `python tests/loss_corpus.py`."
    )
    for split in ("held_out", "tune"):
        for per in ("epoch", "step"):
            s = score(runs, split, per)
            parts += ["", f"## {split}, per {per}", "", s.table()]
        parts += [
            "",
            "Same verdict for a run's per-step and per-epoch histories (their first 9, 11, 13, "
            f"17 and 20 epochs): {100 * agreement(runs, split):.1f}%",
        ]
    parts += [
        "",
        "# The range test's confidence against a known answer",
        "",
        "Each range test of the corpus (200 mini-batches, plain SGD and momentum from 1e-6 to "
        "100, Adam from 1e-7 to 10; constant rate) replayed through `lrfast.tuning.finder."
        "replay`; the known answer is the set of rates its family's 20-epoch runs found good. "
        "A `none` confidence means no signal (no suggestion).",
        "",
        confidence_table(sweeps),
    ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    text = report()
    print(text)
    (DATA / "loss_corpus_confusion.md").write_text(text)
