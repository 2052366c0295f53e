"""``python -m lrfast``: the command line (:mod:`lrfast.cli`)."""

from .cli import main

raise SystemExit(main())
