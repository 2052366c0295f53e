"""The tally of the adversarial suite: each family of hostile input counts what it tried and how
every attempt ended, and the terminal summary prints one line per family (``conftest.py``).

An attempt ends one way: **rejected** (the expected exception, its message naming the argument
at fault), **accepted** (no exception: right for inputs that are odd but valid), or a failure:
the wrong exception, a **panic** (PyO3's ``PanicException``), or a call slower than
``HANG_SECONDS`` (a hang, or a cost out of proportion to its size). Separately, every array the
call could have touched is compared before and after a rejected call: **changed** must stay 0.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Optional

import numpy as np

HANG_SECONDS = 2.0

COLUMNS = ("tried", "rejected", "accepted", "changed", "panics", "hangs", "wrong")
FAMILIES: dict[str, Counter[str]] = {}


def _bytes(arrays: Iterable[Any]) -> list[bytes]:
    return [a.tobytes() for a in arrays if isinstance(a, np.ndarray)]


def attempt(
    family: str,
    call: Callable[[], Any],
    *,
    rejects: Optional[tuple[type[BaseException], ...]] = (TypeError, ValueError),
    naming: Optional[str] = None,
    arrays: Sequence[Any] = (),
) -> Optional[BaseException]:
    """Runs ``call`` as one attempt of ``family`` and asserts it ended as it should: raised one
    of ``rejects`` with ``naming`` in its message and left every one of ``arrays`` unchanged, or,
    with ``rejects=None``, returned. Returns the exception raised, if any."""
    tally = FAMILIES.setdefault(family, Counter())
    tally["tried"] += 1
    before = _bytes(arrays)
    start = time.perf_counter()
    error: Optional[BaseException] = None
    try:
        call()
    except BaseException as e:  # a panic is a BaseException
        error = e
    elapsed = time.perf_counter() - start
    if elapsed > HANG_SECONDS:
        tally["hangs"] += 1
        raise AssertionError(f"{family}: the call took {elapsed:.1f} s")
    if error is not None and type(error).__name__ == "PanicException":
        tally["panics"] += 1
        raise AssertionError(f"{family}: panic: {error}")
    if rejects is None:
        if error is not None:
            tally["wrong"] += 1
            raise AssertionError(f"{family}: a valid call raised {error!r}") from error
        tally["accepted"] += 1
        return None
    if error is None:
        tally["wrong"] += 1
        raise AssertionError(f"{family}: accepted, but {rejects} was expected")
    if not isinstance(error, rejects) or (naming is not None and naming not in str(error)):
        tally["wrong"] += 1
        raise AssertionError(
            f"{family}: expected {rejects} naming {naming!r}, got {error!r}"
        ) from error
    if _bytes(arrays) != before:
        tally["changed"] += 1
        raise AssertionError(f"{family}: an array changed although the call failed")
    tally["rejected"] += 1
    return error


def report_lines() -> list[str]:
    """The per-family table the terminal summary prints."""
    if not FAMILIES:
        return []
    width = max(len(f) for f in FAMILIES)
    lines = [f"{'family':{width}s} " + " ".join(f"{c:>8s}" for c in COLUMNS)]
    for family in sorted(FAMILIES):
        tally = FAMILIES[family]
        lines.append(f"{family:{width}s} " + " ".join(f"{tally[c]:8d}" for c in COLUMNS))
    return lines
