"""Limiting the threads lrfast's kernels use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._lrfast import get_num_threads, set_num_threads

__all__ = ["threads"]


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Runs the block with at most ``count`` kernel threads, then restores the previous count.

    The count is process-wide (like ``threadpoolctl``'s limits), not per Python thread.
    """
    previous = get_num_threads()
    set_num_threads(count)
    try:
        yield
    finally:
        set_num_threads(previous)
