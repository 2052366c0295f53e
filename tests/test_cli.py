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
