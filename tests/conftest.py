import os

from hypothesis import HealthCheck, settings

# HYPOTHESIS_PROFILE=ci (the default, used by .ci/run) or =quick for a fast local run, or =thorough.
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("quick", max_examples=25, deadline=None)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """Reports the worst kernel-vs-reference error seen, per kernel and dtype."""
    import sys

    module = sys.modules.get("test_kernels_vs_reference")
    worst = getattr(module, "WORST", None)
    if worst:
        terminalreporter.section("worst error vs reference (units of dtype eps)")
        for (kernel, dtype), err in sorted(worst.items()):
            terminalreporter.write_line(f"{kernel:10s} {dtype:8s} {err:8.2f}")
    tally = getattr(sys.modules.get("adversarial"), "report_lines", None)
    if tally is not None and tally():
        terminalreporter.section("adversarial suite, per family")
        for line in tally():
            terminalreporter.write_line(line)
    torch_worst = getattr(sys.modules.get("test_torch"), "WORST", None)
    if torch_worst:
        terminalreporter.section("lrfast.torch vs torch.optim, worst error seen")
        for name, value in torch_worst.items():
            terminalreporter.write_line(f"{name:18s} {value:.3g}")
