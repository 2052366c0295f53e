"""The model and data the distributed runs and their single-process reference share."""

import torch

STEPS = 6


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
    ).double()


def batches(steps: int):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=generator, dtype=torch.float64)
        yield x, torch.randn(16, 4, generator=generator, dtype=torch.float64)
