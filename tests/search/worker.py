"""One process of a shared Optuna study: ``python worker.py STORAGE NAME NUM [--die-after K]``
searches the rate of the tests' quadratic with TPE in the study NAME of STORAGE until it holds
NUM trainings; with ``--die-after K`` the process kills itself (SIGKILL, no cleanup) during its
K+1-th training, as a machine that goes down does. Each training's metric is this process's
id; the trainings' rates are printed, one per line, at the end."""

import os
import signal
import sys
import time

import numpy as np

import lrfast

EIGENVALUES = np.geomspace(0.5, 8.0, 20)
DIE_AFTER = int(sys.argv[sys.argv.index("--die-after") + 1]) if "--die-after" in sys.argv else -1
trained = 0


def train(lr: float) -> dict:
    global trained
    if trained == DIE_AFTER:
        os.kill(os.getpid(), signal.SIGKILL)
    trained += 1
    time.sleep(0.2)  # long enough for the two processes to interleave
    theta = np.ones(20)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(30):
            theta -= lr * EIGENVALUES * theta
    return {"loss": float(0.5 * np.sum(EIGENVALUES * theta**2)), "metric": float(os.getpid())}


if __name__ == "__main__":
    storage, name, num = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = lrfast.sensitivity(
        train, strategy="tpe", low=1e-3, high=10.0, num=num, seed=None, storage=storage,
        study_name=name,
    )  # fmt: skip
    print("\n".join(repr(float(lr)) for lr in result.lrs))
