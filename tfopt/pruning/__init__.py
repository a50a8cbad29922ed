"""Magnitude pruning for Keras 3: schedules, masks, wrapper, callbacks."""

from tfopt.pruning.api import prune_low_magnitude
from tfopt.pruning.api import sparsity_report
from tfopt.pruning.api import strip_pruning
from tfopt.pruning.callbacks import PruningSummaries
from tfopt.pruning.callbacks import UpdatePruningStep
from tfopt.pruning.registry import PrunableLayer
from tfopt.pruning.schedules import ConstantSparsity
from tfopt.pruning.schedules import PolynomialDecay
from tfopt.pruning.schedules import PruningSchedule
from tfopt.pruning.wrapper import PruneLowMagnitude

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "sparsity_report",
    "strip_pruning",
]
