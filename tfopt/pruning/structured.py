"""The old home of structured pruning, kept so existing imports work.

Structured pruning is split by concern into:

- `tfopt.pruning.channel_oneshot`: `prune_channels`, `channel_groups`
  (old name `prunable_layers`), `resolve_ratios`, `keep_indices`;
- `tfopt.pruning.channel_mask`: the `ChannelMask` layer, `channel_masks`,
  `has_channel_masks`, `channel_plan`;
- `tfopt.pruning.channel_gradual`: `prune_channels_gradually` and the
  callback side `ChannelMaskUpdater`;
- `tfopt.pruning.channel_strip`: `strip_channels` (old name
  `strip_structured`).

Import from `tfopt.pruning` (public names) or from those modules.
"""

from tfopt.pruning.channel_gradual import ChannelMaskUpdater
from tfopt.pruning.channel_gradual import prune_channels_gradually
from tfopt.pruning.channel_mask import ChannelMask
from tfopt.pruning.channel_mask import channel_masks
from tfopt.pruning.channel_mask import channel_plan
from tfopt.pruning.channel_mask import has_channel_masks
from tfopt.pruning.channel_oneshot import channel_groups
from tfopt.pruning.channel_oneshot import keep_indices
from tfopt.pruning.channel_oneshot import prunable_layers
from tfopt.pruning.channel_oneshot import prune_channels
from tfopt.pruning.channel_oneshot import resolve_ratios
from tfopt.pruning.channel_strip import strip_channels
from tfopt.pruning.channel_strip import strip_structured

__all__ = [
    "ChannelMask", "ChannelMaskUpdater", "channel_groups", "channel_masks", "channel_plan",
    "has_channel_masks", "keep_indices", "prunable_layers", "prune_channels",
    "prune_channels_gradually", "resolve_ratios", "strip_channels", "strip_structured",
]
