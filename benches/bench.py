"""`python benches/bench.py --help`: lrfast against the memory floor, NumPy and PyTorch.

The benchmark itself lives in `lrfast.cli.bench` so that `lrfast bench` runs it from an install.
"""

import sys

from lrfast.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
