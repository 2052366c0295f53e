"""The optional dependencies (extras) and how to install them."""

from __future__ import annotations

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: from a clone of lrfast, ``pip install ".[extra]"``
    (the same extra name works as ``lrfast[extra]`` once installed from an index)."""
    return f'pip install ".[{extra}]" in a clone of lrfast (the "{extra}" extra)'
