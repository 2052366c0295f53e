"""Choosing the rate: range test, sensitivity, diagnose, hypergradient descent, the demo."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrfast
from lrfast.cli import demo

# A least-squares problem whose Hessian has eigenvalues from 0.5 to CURVATURE: SGD converges for
# rates below 2 / CURVATURE and diverges above; the best fixed rate is about 1 / CURVATURE.
CURVATURE = 8.0
EIGENVALUES = np.geomspace(0.5, CURVATURE, 20)


def quadratic_loss(theta: np.ndarray) -> float:
    return float(0.5 * np.sum(EIGENVALUES * theta**2))


def quadratic_step(theta: np.ndarray, lr: float, rng: np.random.Generator) -> float:
    loss = quadratic_loss(theta)
    grad = EIGENVALUES * theta + 0.01 * rng.standard_normal(theta.shape)
    lrfast.sgd_step(theta, grad, step=1, lr=lr)
    return loss


def range_test(seed: int = 0, **kwargs: Any) -> lrfast.RangeTestResult:
    theta = np.ones(20)

    def step_fn(lr: float, rng: np.random.Generator) -> float:
        return quadratic_step(theta, lr, rng)

    return lrfast.lr_range_test(step_fn, start_lr=1e-4, end_lr=10.0, seed=seed, **kwargs)


def test_range_test_finds_the_known_rate() -> None:
    # What a range test can know here is where training stops working: SGD diverges above
    # 2/CURVATURE. The loss still falls for a few steps past that limit while the unstable
    # direction grows from its small start, so the largest rate that still improves (max_lr)
    # sits near the limit (within 1.5x; the raw minimum of this sweep is at 1.3x), and every
    # suggestion inside the stable range.
    limit = 2 / CURVATURE
    result = range_test(num_steps=200)
    assert result.stop_reason.startswith("raw loss above 30x its best at lr")
    base, top = result.cyclic_bounds
    assert 0.25 * limit <= top <= 1.5 * limit
    assert base == pytest.approx(min(top / 4, result.suggestion))
    for name, lr in result.suggestions.items():
        assert 1e-3 * limit <= lr < limit, (name, lr)
    assert result.confidence in ("high", "medium")
    assert "suggested lr" in result.summary()
    # The online average lags: read naively, its minimum lands beyond the limit.
    lagged = np.nanargmin(result.online_average[result.burn_in :]) + result.burn_in
    assert result.rates[int(lagged)] > limit
    # The lagging average alone would have let the sweep run further into the blow-up.
    late = lrfast.tuning.finder.replay(result.rates, result.losses, raw_diverge_threshold=1e9)
    assert late.stop_reason == "end of the recorded losses"
    with pytest.raises(ValueError, match="losses has 3 values for 2 rates"):
        lrfast.tuning.finder.replay(np.array([1e-3, 1e-2]), [1.0, 0.9, 0.8])


def test_range_test_reads_no_signal_from_a_loss_that_ignores_the_rate() -> None:
    result = lrfast.lr_range_test(lambda lr: 1.0, num_steps=50)
    assert not result.has_signal and result.confidence == "none"
    with pytest.raises(ValueError, match="no signal"):
        _ = result.suggestion
    assert "no suggestion: no signal" in result.summary()
    rng = np.random.default_rng(0)
    noise = lrfast.lr_range_test(lambda lr: 1.0 + 0.01 * rng.standard_normal(), num_steps=100)
    assert noise.confidence == "none"


def test_range_test_stops_on_a_raw_blow_up_the_average_hides() -> None:
    # The loss falls, then one step explodes 100x its best: the average moves little, the raw
    # rule stops the sweep.
    losses = iter(np.r_[np.linspace(2.0, 0.5, 60), [50.0], np.full(39, 0.5)])
    result = lrfast.lr_range_test(lambda lr: next(losses), num_steps=100)
    assert result.stop_reason.startswith("raw loss above 30x") and len(result.losses) == 61


@pytest.mark.parametrize("shift", [0.0, -3.0, -1.2])
def test_range_test_takes_losses_of_any_sign(shift: float) -> None:
    # The same curve lowered below zero, or falling through it, gives the same suggestion.
    def run(offset: float) -> lrfast.RangeTestResult:
        theta = np.ones(20)

        def step_fn(lr: float, rng: np.random.Generator) -> float:
            return quadratic_step(theta, lr, rng) + offset

        return lrfast.lr_range_test(step_fn, start_lr=1e-4, end_lr=0.2, seed=0, num_steps=100)

    base, moved = run(0.0), run(shift)
    assert moved.stop_reason == base.stop_reason == "end_lr reached"
    assert moved.has_signal
    assert moved.suggestion == pytest.approx(base.suggestion, rel=0.3)


def test_cyclic_bounds_bracket_the_suggestion() -> None:
    for seed in range(5):
        result = range_test(seed=seed, num_steps=150)
        base, top = result.cyclic_bounds
        assert base <= result.suggestion <= top


def test_range_test_is_reproducible_and_stops_cleanly() -> None:
    a, b = range_test(seed=3), range_test(seed=3)
    assert np.array_equal(a.losses, b.losses) and a.suggestion == b.suggestion
    assert not np.array_equal(a.losses, range_test(seed=4).losses)

    losses = iter([1.0, 0.9, 0.8, math.nan, 0.5])
    result = lrfast.lr_range_test(lambda lr: next(losses), num_steps=5)
    assert result.stop_reason.startswith("loss not finite") and len(result.losses) == 4
    with pytest.raises(ValueError, match="too few points"):
        _ = result.suggestion


def test_range_test_with_an_lrfast_optimizer_restores_everything() -> None:
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(20)]
    opt = lrfast.Adam(params, lr=0.01)
    for _ in range(3):
        opt.step([params[0] * EIGENVALUES])
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    calls = []

    def loss_fn(batch_rng: np.random.Generator) -> tuple[float, list[np.ndarray]]:
        return quadratic_loss(params[0]), [EIGENVALUES * params[0]]

    result = lrfast.lr_range_test(
        optimizer=opt, loss_fn=loss_fn, num_steps=50, reset=lambda: calls.append(1)
    )
    assert len(result.losses) >= 10 and calls == [1]
    assert np.array_equal(params[0], before_params[0])
    assert opt.step_count == before_state["step"] and opt.lr == 0.01
    for name, value in opt.state[0].items():
        assert np.array_equal(value, before_state["state"][0][name])


def test_range_test_groups_and_linear_mode() -> None:
    seen: list[Any] = []

    def step_fn(lr: Any) -> float:
        seen.append(lr)
        return 1.0 / (1 + len(seen))

    result = lrfast.lr_range_test(
        step_fn, start_lr=[1e-3, 1e-2], end_lr=[1.0, 10.0], num_steps=20, mode="linear"
    )
    assert result.lrs.shape == (20, 2)
    assert seen[0] == (1e-3, 1e-2) and seen[-1] == pytest.approx((1.0, 10.0))
    assert np.allclose(np.diff(result.lrs[:, 0]), np.diff(result.lrs[:, 0])[0])
    groups = result.suggestion_for_groups()
    assert groups.shape == (2,) and groups[1] == pytest.approx(10 * groups[0], rel=1e-6)


def test_range_test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        lrfast.lr_range_test()
    with pytest.raises(ValueError, match="start_lr"):
        lrfast.lr_range_test(lambda lr: 1.0, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        lrfast.lr_range_test(lambda lr: 1.0, num_steps=1)
    with pytest.raises(ValueError, match="mode"):
        lrfast.lr_range_test(lambda lr: 1.0, mode="log")


def test_range_test_plot(tmp_path: Path) -> None:
    result = range_test()
    fig = result.plot(tmp_path / "finder.png")
    assert (tmp_path / "finder.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "learning-rate range test"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["loss (raw)", "smoothed"]
    # The plotted smoothed line is the result's `smoothed`; the four markers differ in style.
    assert np.array_equal(ax.get_lines()[1].get_ydata(), result.smoothed, equal_nan=True)
    styles = {(line.get_linestyle(), line.get_color()) for line in ax.get_lines()[2:]}
    assert len(styles) == 4
    # Everything recorded is in view, the blow-up included.
    low, high = ax.get_ylim()
    assert low <= np.nanmin(result.losses) and high >= np.nanmax(result.losses)


# -- sensitivity ------------------------------------------------------------------------------
def train_quadratic(lr: float) -> dict[str, Any]:
    """30 full-batch gradient steps on the quadratic: a U-shaped final loss with its bottom
    near 2 / (0.5 + CURVATURE) (the rate that balances the extreme eigenvalues)."""
    theta = np.ones(20)
    history = []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(30):
            history.append(quadratic_loss(theta))
            theta -= lr * EIGENVALUES * theta
    return {"loss": quadratic_loss(theta), "history": history}


def test_sensitivity_finds_the_bottom_of_the_u() -> None:
    best = 2 / (0.5 + CURVATURE)
    coarse = lrfast.sensitivity(train_quadratic, low=1e-3, high=10.0, per_decade=2)
    assert len(coarse.lrs) == 9
    fine = lrfast.sensitivity(train_quadratic, low=1e-3, high=10.0, per_decade=2, refine=3)
    assert abs(math.log10(fine.best_lr / best)) < abs(math.log10(coarse.best_lr / best)) + 1e-9
    assert abs(math.log10(fine.best_lr / best)) < 0.05
    assert fine.final[-1] > 1e10  # the largest rates diverge, and are reported so
    assert "<- best" in fine.table()


def test_sensitivity_random_and_parallel(tmp_path: Path) -> None:
    a = lrfast.sensitivity(train_quadratic, strategy="random", num=6, seed=1)
    b = lrfast.sensitivity(train_quadratic, strategy="random", num=6, seed=1, processes=2)
    assert np.array_equal(a.lrs, b.lrs)
    assert np.array_equal(a.final, b.final, equal_nan=True)
    assert np.all((a.lrs >= 1e-6) & (a.lrs <= 1.0))
    a.plot(tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="strategy"):
        lrfast.sensitivity(train_quadratic, strategy="bayes")
    assert lrfast.log_grid(1e-6, 1.0).tolist() == pytest.approx(np.logspace(-6, 0, 7).tolist())


def train_or_fail(lr: float) -> dict[str, Any]:
    """train_quadratic, except that the rate 0.1 raises (module level: picklable)."""
    if lr == pytest.approx(0.1):
        raise RuntimeError("out of memory at this rate")
    return train_quadratic(lr)


@pytest.mark.parametrize("processes", [None, 2])
def test_sensitivity_records_a_failing_rate_and_keeps_the_others(processes: Any) -> None:
    result = lrfast.sensitivity(train_or_fail, [0.01, 0.1, 0.2], processes=processes)
    assert result.errors == [None, "RuntimeError: out of memory at this rate", None]
    assert math.isnan(result.final[1]) and np.isfinite(result.final[[0, 2]]).all()
    assert result.best_lr == 0.2
    assert "0.1  failed: RuntimeError: out of memory at this rate" in result.table()


def test_sensitivity_best_is_a_smoothed_value_not_one_lucky_batch() -> None:
    # A noisy history whose single lowest value (0.0005) is a fluke: the best is the lowest
    # mean over a tenth of the history.
    rng = np.random.default_rng(0)
    history = list(0.12 + 0.02 * rng.standard_normal(100))
    history[50] = 0.0005

    def train_fn(lr: float) -> dict[str, Any]:
        return {"loss": history[-1], "history": history}

    result = lrfast.sensitivity(train_fn, [0.1])
    assert 0.09 < result.best[0] < 0.13


def test_sensitivity_plot_has_a_title_and_log_axes(tmp_path: Path) -> None:
    result = lrfast.sensitivity(train_or_fail, [1e-3, 1e-2, 0.1, 0.2, 5.0])
    ax = result.plot(tmp_path / "u.png").axes[0]
    assert ax.get_title() == "sensitivity to the learning rate"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "diverged or failed" in [line.get_label() for line in ax.get_lines()]


# -- diagnose ---------------------------------------------------------------------------------
STEPS = np.arange(200)
NOISE = np.random.default_rng(0).standard_normal(200)
CURVES = {
    "diverged": (np.r_[np.exp(-STEPS[:50] / 20), [math.nan] * 5], "too_high", "diverged"),
    "overflowing": (np.array([1e308, -1e308] * 20), "too_high", "diverged"),
    "diverging": (1 + 0.01 * np.exp(STEPS / 30) + 0.01 * NOISE, "too_high", "diverging"),
    "spiking": (
        2 * np.exp(-STEPS / 30) + 0.05 + np.where((STEPS > 40) & (STEPS < 70), 3.0, 0.0),
        "too_high",
        "spiking",
    ),
    "oscillating": (
        1.5 * np.exp(-STEPS / 30) + 0.3 + 0.8 * np.sin(STEPS / 12) ** 2 + 0.01 * NOISE,
        "too_high",
        "oscillating",
    ),
    "stuck": (1 + np.exp(-STEPS / 3) + 0.01 * NOISE, "too_high", "stuck"),
    "too_low": (2.0 - 0.003 * STEPS + 0.002 * NOISE, "too_low", ""),
    "at chance": (np.full(200, 2.303), "not_learning", ""),
    "flat": (1.0 + 0.01 * NOISE, "not_learning", ""),
    "healthy": (2.3 * np.exp(-STEPS / 25) + 0.01 + 0.002 * np.abs(NOISE), "healthy", ""),
}


@pytest.mark.parametrize("name", sorted(CURVES))
def test_diagnose_synthetic_curves(name: str) -> None:
    losses, verdict, kind = CURVES[name]
    d = lrfast.diagnose(losses.tolist())
    assert (d.verdict, d.kind) == (verdict, kind), str(d)
    assert str(d).startswith(verdict)
    assert kind in lrfast.tuning.diagnosis.VERDICTS[verdict]


def test_diagnose_real_training_runs() -> None:
    # The demo's network on digits, plain SGD: at 0.5 and above the loss drops to chance level
    # (2.30) in the first epoch and stays there; at 1e-4 it falls slowly.
    data = demo.load_digits_split(0)
    verdicts = {}
    for lr in (3.0, 0.5, 1e-4, 0.03):
        run = demo.train(data, lambda p, lr=lr: lrfast.SGD(p, lr=lr), epochs=30, seed=0)
        d = lrfast.diagnose(run.epoch_losses)
        verdicts[lr] = (d.verdict, d.kind)
    assert verdicts == {
        3.0: ("too_high", "stuck"),
        0.5: ("too_high", "stuck"),
        1e-4: ("too_low", ""),
        0.03: ("healthy", ""),
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda p: lrfast.SGD(p, lr=0.03, momentum=0.9),
        lambda p: lrfast.SGD(p, lr=0.003, momentum=0.9),
        lambda p: lrfast.AdamHD(p, lr=1e-3, hypergrad_lr=1e-7),
    ],
    ids=["momentum 0.03", "momentum 0.003", "Adam-HD"],
)
def test_diagnose_reads_a_run_per_step_as_per_epoch(make: Any) -> None:
    # Runs the old rules read differently per step (too_high, healthy, oscillating) and per
    # epoch (healthy, too_low, healthy); all three reach 97% test accuracy.
    data = demo.load_digits_split(0)
    rng = np.random.default_rng(0)
    model = demo.MLP([64, 128, 10], rng, "relu")
    opt = make(model.params)
    steps: list[float] = []
    epochs: list[float] = []
    for _ in range(30):
        order = rng.permutation(len(data.x_train))
        losses = []
        for i in range(0, len(order), demo.BATCH):
            batch = order[i : i + demo.BATCH]
            loss, grads = model.loss_and_grads(data.x_train[batch], data.y_train[batch])
            losses.append(loss)
            opt.step(grads)
        steps += losses
        epochs.append(float(np.mean(losses)))
    assert model.accuracy(data.x_test, data.y_test) > 0.96
    assert lrfast.diagnose(steps).verdict == lrfast.diagnose(epochs).verdict == "healthy"


def test_diagnose_needs_a_history_and_a_sound_window() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        lrfast.diagnose([1.0, 0.5])
    losses = list(np.linspace(2.0, 1.0, 80))
    for window in (0, -3, 11):
        with pytest.raises(ValueError, match="window must be between 1 and 10"):
            lrfast.diagnose(losses, window=window)
    for window in (2.5, True, "4"):
        with pytest.raises(TypeError, match="window"):
            lrfast.diagnose(losses, window=window)  # type: ignore[arg-type]
    assert lrfast.diagnose(losses, window=10).verdict == lrfast.diagnose(losses).verdict


# -- hypergradient descent --------------------------------------------------------------------
def sgd_hd_reference(
    p: np.ndarray, grads: list[np.ndarray], lr: float, beta: float, momentum: float,
    weight_decay: float, maximize: bool, lr_max: float,
) -> tuple[np.ndarray, list[float]]:  # fmt: skip
    """SGD-HD as Baydin et al. write it, in float64."""
    p = p.astype(np.float64).copy()
    d = np.zeros_like(p)
    rates = []
    for t, g in enumerate(grads, start=1):
        g = -g if maximize else g.astype(np.float64)
        g = g + weight_decay * p
        lr = min(max(lr + beta * float(np.dot(g, d)), 0.0), lr_max)
        d = g if momentum == 0 else (g.copy() if t == 1 else momentum * d + g)
        p = p - lr * d
        rates.append(lr)
    return p, rates


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay, maximize", [(0.0, False), (0.01, True)])
def test_sgd_hd_matches_the_paper(momentum: float, weight_decay: float, maximize: bool) -> None:
    rng = np.random.default_rng(5)
    start = rng.standard_normal(37)
    grads = [rng.standard_normal(37) for _ in range(6)]
    expected_p, expected_rates = sgd_hd_reference(
        start, grads, 0.05, 0.02, momentum, weight_decay, maximize, 0.07
    )
    p, d, lr, rates = start.copy(), np.zeros(37), 0.05, []
    for t, g in enumerate(grads, start=1):
        lr = lrfast.sgd_hd_step(
            p, g, d, step=t, lr=lr, hypergrad_lr=0.02, momentum=momentum,
            weight_decay=weight_decay, maximize=maximize, lr_max=0.07,
        )  # fmt: skip
        rates.append(lr)
    np.testing.assert_allclose(rates, expected_rates, rtol=1e-12)
    np.testing.assert_allclose(p, expected_p, rtol=1e-12, atol=1e-14)
    assert max(rates) <= 0.07  # the clamp holds


def test_adam_hd_matches_the_paper() -> None:
    rng = np.random.default_rng(6)
    p = rng.standard_normal(41)
    grads = [rng.standard_normal(41) + 0.5 for _ in range(6)]
    ref_p, m, v, lr, u_prev = p.copy(), np.zeros(41), np.zeros(41), 1e-2, np.zeros(41)
    b1, b2, eps, beta = 0.9, 0.999, 1e-8, 1e-3
    ref_rates = []
    for t, g in enumerate(grads, start=1):
        lr = max(lr + beta * float(np.dot(g, u_prev)), 0.0)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u_prev = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        ref_p = ref_p - lr * u_prev
        ref_rates.append(lr)
    state = [np.zeros(41), np.zeros(41)]
    lr, rates = 1e-2, []
    for t, g in enumerate(grads, start=1):
        lr = lrfast.adam_hd_step(p, g, *state, step=t, lr=lr, hypergrad_lr=beta)
        rates.append(lr)
    np.testing.assert_allclose(rates, ref_rates, rtol=1e-12)
    # Adam's kernel divides by √v/√bc2 + eps rather than √(v/bc2) + eps: last-bit differences.
    np.testing.assert_allclose(p, ref_p, rtol=1e-12)
    assert rates[-1] > rates[0]  # gradients agree step to step: the rate grows


def test_hypergradient_optimizers() -> None:
    rng = np.random.default_rng(0)
    for cls, kwargs in ((lrfast.SGDHD, {"lr": 0.01}), (lrfast.AdamHD, {"hypergrad_lr": 1e-4})):
        params = [rng.standard_normal(20)]
        opt = cls(params, **kwargs)
        for _ in range(20):
            opt.step([EIGENVALUES * params[0]])
        assert opt.lr > kwargs.get("lr", 1e-3) and len(opt.lr_history) == 20
        again = cls([params[0].copy()], **kwargs)
        again.load_state_dict(opt.state_dict())
        assert again.lr == opt.lr
    with pytest.raises(ValueError, match="hypergrad_lr"):
        lrfast.SGDHD([np.zeros(3)], hypergrad_lr=-1.0)
    with pytest.raises(ValueError, match="lr_max"):
        lrfast.AdamHD([np.zeros(3)], lr_min=0.1, lr_max=0.01)
    with pytest.raises(ValueError, match="grad"):
        lrfast.sgd_hd_step(np.zeros(3), np.zeros(4), np.zeros(3), step=1, lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        lrfast.sgd_hd_step(np.zeros(3), np.zeros(3), np.zeros(3), step=1, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        lrfast.adam_hd_step(*(np.zeros(3) for _ in range(4)), step=2, lr=0.1, betas=(1.0, 0.9))
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="param"):
        lrfast.sgd_hd_step(frozen, np.zeros(3), np.zeros(3), step=1, lr=0.1)


# -- the demo ---------------------------------------------------------------------------------
def test_demo_reproduces_the_classic_picture(tmp_path: Path) -> None:
    data = demo.load_digits_split(0)
    high = demo.train(data, lambda p: lrfast.SGD(p, lr=0.5), epochs=30, seed=0)
    low = demo.train(data, lambda p: lrfast.SGD(p, lr=1e-4), epochs=30, seed=0)
    good = demo.train(data, lambda p: lrfast.SGD(p, lr=0.03), epochs=30, seed=0)
    assert high.test_accuracy < 0.3  # fails to learn
    assert 0.3 < low.test_accuracy < good.test_accuracy - 0.2  # learns, slowly
    assert good.test_accuracy > 0.95


def test_demo_command_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert lrfast.cli.main(["demo", "--epochs", "3", "--out", str(out), "--no-progress"]) == 0
    text = (out / "report.md").read_text()
    for heading in ("Fixed rates", "Sensitivity", "range test", "Optimizers", "Schedules",
                    "8-bit optimizer state", "Searching for the rate", "## Summary"):  # fmt: skip
        assert heading in text
    for png in ("fixed_rates", "sensitivity", "range_test", "optimizers", "schedules", "search"):
        assert (out / f"{png}.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        demo.main(["--sections", "nope"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs: must be at least 1, got 0"),
        (["--epochs", "many"], "--epochs: expected a whole number, got 'many'"),
        (["--seed", "-1"], "--seed: must be >= 0, got -1"),
    ],
)
def test_demo_rejects_bad_options_by_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        demo.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_demo_refuses_a_file_as_its_report_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.txt"
    path.write_text("mine")
    with pytest.raises(SystemExit):
        demo.main(["--out", str(path), "--epochs", "1"])
    assert "is not a folder" in capsys.readouterr().err and path.read_text() == "mine"


def test_sgd_hd_without_momentum_checks_everything_before_writing_the_direction() -> None:
    def call(**change: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "param": [np.ones(4, np.float32), np.ones(3, np.float32)],
            "grad": [np.full(4, 0.5, np.float32), np.full(3, 0.5, np.float32)],
            "direction": [np.full(4, 2.0, np.float32), np.full(3, 2.0, np.float32)],
            "step": 2,
            "lr": 0.1,
        }
        args.update(change)
        return args

    shared = np.ones(4, np.float32)
    misaligned = np.frombuffer(np.zeros(4 * 4 + 1, np.uint8).data, np.float32, 4, offset=1)
    read_only = np.ones(3, np.float32)
    read_only.flags.writeable = False
    gs = [np.full(3, 1.0, np.float32), np.full(3, 7.0, np.float32)]
    cases = [
        call(step=2**64),
        call(hypergrad_lr=1e308),
        call(param=[shared, shared[:3]]),
        call(param=[np.ones(4, np.float32), np.ones(3, np.float64)]),
        call(param=[misaligned, np.ones(3, np.float32)]),
        call(grad=[misaligned, np.full(3, 0.5, np.float32)]),
        call(param=[np.ones(4, np.float32), read_only]),
        call(param=[np.ones(4, np.float16), np.ones(3, np.float16)]),
    ]
    for args in cases:
        before = [d.copy() for d in args["direction"]]
        with pytest.raises((TypeError, ValueError)):
            lrfast.sgd_hd_step(**args)
        for d, b in zip(args["direction"], before):
            np.testing.assert_array_equal(d, b)
    # A direction that is another element's gradient: refused, the gradient unchanged.
    params = [np.ones(3, np.float32) for _ in gs]
    with pytest.raises(ValueError, match=r"grad\[0\] and direction\[1\] share memory"):
        lrfast.sgd_hd_step(params, gs, [np.zeros(3, np.float32), gs[0]], step=1, lr=0.1)
    assert (gs[0] == 1).all() and (params[0] == 1).all()
