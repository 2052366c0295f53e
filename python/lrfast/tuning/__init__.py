"""Tools to configure the learning rate: the range test, sensitivity and search, loss-curve
diagnosis, and the hypergradient optimizers whose rate learns itself."""

from .diagnosis import Diagnosis, diagnose
from .finder import RangeTestResult, lr_range_test
from .hypergradient import SGDHD, AdamHD, adam_hd_step, sgd_hd_step
from .sensitivity import Pruned, SensitivityResult, log_grid, sensitivity

__all__ = [
    "lr_range_test",
    "RangeTestResult",
    "sensitivity",
    "SensitivityResult",
    "Pruned",
    "log_grid",
    "diagnose",
    "Diagnosis",
    "sgd_hd_step",
    "adam_hd_step",
    "SGDHD",
    "AdamHD",
]
