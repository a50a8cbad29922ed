"""Pruning for Keras 3: magnitude (schedules, masks, wrapper, callbacks) and structured."""

from tfopt.pruning.api import prune_low_magnitude
from tfopt.pruning.api import sparsity_report
from tfopt.pruning.api import strip_pruning
from tfopt.pruning.callbacks import PruningSummaries
from tfopt.pruning.callbacks import UpdatePruningStep
from tfopt.pruning.introspection import count_prunable, pattern_support, prunable_weights  # noqa: E501
from tfopt.pruning.registry import PRUNE_TABLE
from tfopt.pruning.registry import PrunableLayer
from tfopt.pruning.registry import PruneRule
from tfopt.pruning.schedules import ConstantSparsity
from tfopt.pruning.schedules import PolynomialDecay
from tfopt.pruning.schedules import PruningSchedule
from tfopt.pruning.sensitivity import plot_sensitivity
from tfopt.pruning.sensitivity import ratios_from_sensitivity
from tfopt.pruning.sensitivity import sensitivity_analysis
from tfopt.pruning.channel_gradual import prune_channels_gradually
from tfopt.pruning.channel_mask import ChannelMask
from tfopt.pruning.channel_oneshot import channel_groups
from tfopt.pruning.channel_oneshot import prunable_layers  # old name of channel_groups
from tfopt.pruning.channel_oneshot import prune_channels
from tfopt.pruning.channel_strip import strip_channels
from tfopt.pruning.channel_strip import strip_structured  # old name of strip_channels
from tfopt.pruning.wrapper import PruneLowMagnitude

__all__ = [
    "ChannelMask",
    "channel_groups",
    "ConstantSparsity",
    "PolynomialDecay",
    "PRUNE_TABLE",
    "PrunableLayer",
    "PruneRule",
    "PruneLowMagnitude",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "count_prunable", "pattern_support", "prunable_weights",
    "plot_sensitivity",
    "prunable_layers",
    "prune_channels",
    "prune_channels_gradually",
    "prune_low_magnitude",
    "ratios_from_sensitivity",
    "sensitivity_analysis",
    "sparsity_report",
    "strip_pruning",
    "strip_channels",
    "strip_structured",
]
