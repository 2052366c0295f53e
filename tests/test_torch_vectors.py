"""lrfast's optimizers against vectors computed by PyTorch itself (tests/data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrfast

# Computed by PyTorch 2.13 itself; see tests/data/README.md.
DATA = Path(__file__).resolve().parent / "data"
CASES = json.loads((DATA / "torch_optim_vectors.json").read_text())["cases"]
VECTORS = np.load(DATA / "torch_optim_vectors.npz")

# float64: the operations are the same as PyTorch's, so agreement is near machine precision.
# NAdam: PyTorch keeps mu_product in float32 and lrfast in float64, so they differ by up to
# ~1e-7 relative in the step size (lrfast's is the more accurate one).
# float32: a few ULPs per step, measured below (the order of a few multiply-adds differs, e.g.
# PyTorch's lerp for the first moment).
RTOL = {"float64": 1e-13, "float32": 2e-6}
NADAM_RTOL_FLOAT64 = 2e-7


@pytest.mark.parametrize("case", CASES, ids=[c["key"] for c in CASES])
def test_matches_pytorch(case: dict[str, Any]) -> None:
    key = case["key"]
    param = VECTORS[f"{key}.param0"].copy()
    grads = VECTORS[f"{key}.grads"]
    expected = VECTORS[f"{key}.params"]
    assert param.dtype == np.dtype(case["dtype"])
    optimizer = getattr(lrfast, case["optimizer"])(param, **case["kwargs"])
    rtol = RTOL[case["dtype"]]
    if case["optimizer"] == "NAdam" and case["dtype"] == "float64":
        rtol = NADAM_RTOL_FLOAT64
    for t, grad in enumerate(grads):
        optimizer.step([np.ascontiguousarray(grad)])
        # Relative to the parameter's magnitude: values near zero carry the rounding of the step.
        scale = np.abs(expected[t]).max()
        np.testing.assert_allclose(
            param, expected[t], rtol=0, atol=rtol * scale, err_msg=f"after update {t + 1}"
        )
