"""The ``lrfast`` command line: applications built on the library (it never imports them).

``lrfast demo`` runs the learning-rate study on handwritten digits (``lrfast.cli.demo``).
``lrfast train`` trains a small multilayer perceptron on a synthetic two-spirals problem with
lrfast's optimizers and prints the loss and accuracy per epoch. ``lrfast bench`` times the
kernels against the memory floor, NumPy and PyTorch (``lrfast.cli.bench``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from .. import __version__
from .models import OPTIMIZERS, train

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lrfast", description="lrfast: optimizer kernels and learning-rate tools"
    )
    parser.add_argument("--version", action="version", version=f"lrfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    p_train = commands.add_parser("train", help="train an MLP on two spirals with lrfast")
    p_train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    p_train.add_argument("--epochs", type=int, default=30)
    p_train.add_argument("--batch-size", type=int, default=64)
    p_train.add_argument("--seed", type=int, default=0)
    commands.add_parser("bench", help="benchmarks (see lrfast bench --help)", add_help=False)
    commands.add_parser(
        "demo", help="the learning-rate study on digits (see lrfast demo --help)", add_help=False
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["demo"]:
        from .demo import main as demo_main

        return demo_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.optimizer, args.epochs, args.batch_size, args.seed)
    return 0
