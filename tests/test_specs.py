"""The one definition per optimizer (the Rust specs) and everything generated from it."""

from __future__ import annotations

import doctest
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import lrfast
from lrfast import specs

SPECS = lrfast.optimizers()


def test_the_committed_stub_is_what_the_specs_generate() -> None:
    stub = Path(lrfast.kernels.__file__).with_suffix(".pyi").read_text()
    assert stub == specs.stub_source(), "run: python -m lrfast.specs > python/lrfast/kernels.pyi"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_docstring_example_runs(spec: lrfast.OptimizerSpec) -> None:
    function = getattr(lrfast, spec.function_name)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(
        function.__doc__, {"np": np, "lrfast": lrfast}, spec.function_name, None, 0
    )
    assert test.examples, "every kernel's docstring has an example"
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.failures == 0


def test_module_docstring_examples_run() -> None:
    for obj in (specs.optimizers, lrfast, lrfast.quantized):
        test = doctest.DocTestParser().get_doctest(
            obj.__doc__ or "", {"np": np, "lrfast": lrfast}, "doc", None, 0
        )
        runner = doctest.DocTestRunner()
        runner.run(test)
        assert runner.failures == 0


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_signatures_show_the_specs_names_and_defaults(spec: lrfast.OptimizerSpec) -> None:
    kernel = inspect.signature(getattr(lrfast, spec.function_name)).parameters
    for h in spec.kernel_hyperparameters:
        assert kernel[h.name].default == h.default
        assert kernel[h.name].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(kernel)[2 : 2 + len(spec.slots)] == [s.name for s in spec.slots]
    cls = getattr(lrfast, spec.torch_name)
    params = inspect.signature(cls).parameters
    assert list(params)[:2] == ["params", "lr"]
    for h in spec.hyperparameters:
        assert params[h.name].default == h.default
    doc = inspect.getdoc(getattr(lrfast, spec.function_name)) or ""
    for line in spec.rule:
        assert line in doc
    assert "Args:" in doc and "Raises:" in doc and ">>>" in doc


def test_lr_is_positional_in_the_classes_as_in_torch() -> None:
    p = np.ones(4, np.float32)
    opt = lrfast.Adam([p], 0.1)
    assert opt.defaults["lr"] == 0.1
    assert lrfast.Adagrad([p]).defaults["initial_accumulator_value"] == 0.0


def test_rust_checks_are_the_specs_ranges() -> None:
    p, g = np.ones(3), np.ones(3)
    m, v = np.zeros(3), np.zeros(3)
    for spec in SPECS:
        for h in spec.kernel_hyperparameters:
            if h.range in ("unit_open", "unit_closed"):
                bad = 1.5 if not isinstance(h.default, tuple) else (1.5, 0.5)
                states = [np.zeros(3) for s in spec.slots if s.need == "always"]
                with pytest.raises(ValueError, match=h.name):
                    getattr(lrfast, spec.function_name)(p, g, *states, step=1, **{h.name: bad})
    assert (p == 1).all() and (m == 0).all() and (v == 0).all()


def test_wrong_kinds_name_the_argument() -> None:
    p, g, m, v = np.ones(3), np.ones(3), np.zeros(3), np.zeros(3)
    with pytest.raises(TypeError, match="eps must be a real number"):
        lrfast.adam_step(p, g, m, v, step=1, eps="1e-8")
    with pytest.raises(TypeError, match="maximize must be True or False"):
        lrfast.adam_step(p, g, m, v, step=1, maximize=1)
    with pytest.raises(TypeError, match="betas must be a sequence of two"):
        lrfast.adam_step(p, g, m, v, step=1, betas=(0.9,))
    with pytest.raises(TypeError, match=r"momentum_buffer must be a numpy\.ndarray"):
        lrfast.sgd_step(p, g, "garbage", step=1, lr=0.1)
    assert (p == 1).all() and (m == 0).all() and (v == 0).all()
    lrfast.adam_step(p, g, m, v, step=1, betas=[0.9, 0.999])  # any length-2 sequence
    assert (p != 1).all()


def test_nadam_from_scratch_costs_the_same_at_any_step() -> None:
    import time

    p, g, m, v = np.ones(3), np.ones(3), np.zeros(3), np.zeros(3)
    start = time.perf_counter()
    for step in (2**31 + 1, 2**63 - 1, 10**7):
        product = lrfast.nadam_step(p.copy(), g, m.copy(), v.copy(), step=step)
        assert 0.0 <= product < 1e-30
    assert time.perf_counter() - start < 1.0
    # Early steps still multiply every factor, as PyTorch does.
    beta1, decay = 0.9, 4e-3
    expected = np.prod([beta1 * (1 - 0.5 * 0.96 ** (t * decay)) for t in range(1, 10)])
    assert lrfast.nadam_step(p, g, m, v, step=10, mu_product=None) == pytest.approx(
        expected * beta1 * (1 - 0.5 * 0.96 ** (10 * decay)), rel=1e-15
    )


def test_set_num_threads_is_bounded() -> None:
    for bad in (0, -1, 2**40, True, 1.5):
        with pytest.raises(ValueError, match="threads must be an integer from 1"):
            lrfast.set_num_threads(bad)  # type: ignore[arg-type]


def test_version_comes_from_the_crate() -> None:
    from importlib.metadata import version

    assert lrfast.__version__ == version("lrfast")


def test_readme_examples_run() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    test = doctest.DocTestParser().get_doctest(
        readme.read_text(), {"np": np, "lrfast": lrfast}, "README.md", str(readme), 0
    )
    assert test.examples
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.failures == 0


def test_stubtest_catches_a_renamed_argument(tmp_path: Path) -> None:
    """The stub check in CI has no allowlist: renaming one argument in the stub fails it."""
    import os
    import subprocess
    import sys

    stub = Path(lrfast._lrfast.__file__).parent / "_lrfast.pyi"

    def stubtest(text: str) -> subprocess.CompletedProcess[str]:
        package = tmp_path / "lrfast"
        package.mkdir(exist_ok=True)
        (package / "__init__.pyi").write_text("")
        (package / "_lrfast.pyi").write_text(text)
        env = {**os.environ, "MYPYPATH": str(tmp_path)}
        command = [sys.executable, "-m", "mypy.stubtest", "lrfast._lrfast"]
        return subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )

    original = stub.read_text()
    assert stubtest(original).returncode == 0
    renamed = original.replace(
        "norm_type: float = 2.0) -> float:", "norm_kind: float = 2.0) -> float:"
    )
    assert renamed != original
    result = stubtest(renamed)
    assert result.returncode != 0 and "norm_type" in result.stdout


def _readme_python_blocks() -> list[tuple[int, str]]:
    """Every ```python block of the README that is not a doctest, with its line number."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", readme, re.S | re.M):
        code = match.group(1)
        if not code.lstrip().startswith(">>>"):
            blocks.append((readme[: match.start()].count("\n") + 1, code))
    return blocks


@pytest.mark.parametrize("line, code", _readme_python_blocks(), ids=lambda v: str(v)[:12])
def test_every_readme_code_block_runs(
    line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # blocks may write checkpoints or reports
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme"})
