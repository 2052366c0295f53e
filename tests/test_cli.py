import pytest

from lrfast.cli import main
from lrfast.cli.models import OPTIMIZERS, train


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_learns_the_spirals(name: str) -> None:
    # A linear model gets about 0.5 here; the MLP trained by lrfast must do far better.
    assert train(name, epochs=12, batch_size=64, seed=1) > 0.85


def test_command_line_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "2", "--optimizer", "sgd"]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("allocation", ["zeros_like", "torch", "state_like", "offset"])
def test_the_benchmark_places_arrays_as_asked(allocation: str) -> None:
    """Each placement runs every implementation (the run itself checks each one updated its
    parameters), and the arrays lie where the placement says."""
    import numpy as np

    from lrfast.cli import bench

    with_torch = allocation == "torch"
    if with_torch:
        pytest.importorskip("torch", reason="the torch extra: pip install '.[test]'")
    spec = bench.SPEC_BY_NAME["adam"]
    rows = bench.run(["adam"], ["10"], 0.01, with_torch, allocations=[allocation])
    assert rows[0].allocation == allocation and "floor" in rows[0].median_s
    n = 1 << 20  # large enough that NumPy's and torch's allocators give pages of their own
    case = bench._make_case(spec, [n], allocation=allocation, seed=1)
    arrays = [case.params[0], case.grads[0], *case.states[0]]
    # What the benchmark controls (where the allocator puts an array alone is its own affair:
    # glibc's heap and mmap give different page offsets from one run to the next).
    if allocation == "zeros_like":
        assert all(a.flags.owndata for a in arrays)  # each allocated alone
    elif allocation == "torch":
        assert all(a.ctypes.data % 64 == 0 and not a.flags.owndata for a in arrays)
    elif allocation == "state_like":
        param = arrays[0].ctypes.data
        assert [(s.ctypes.data - param) % 4096 for s in arrays[2:]] == [1024, 2048]
    else:
        assert all(a.base is not None and a.base.dtype == np.uint8 for a in arrays)
    assert all(np.all(s == np.float32(1e-3)) for s in case.states[0])
