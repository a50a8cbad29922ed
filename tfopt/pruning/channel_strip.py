"""Strip gradual channel pruning: remove the masked channels for real."""

import numpy as np

from tfopt.pruning import surgery
from tfopt.pruning.channel_gradual import ChannelMaskUpdater
from tfopt.pruning.channel_mask import ChannelMask
from tfopt.pruning.channel_mask import channel_masks


def strip_channels(model):
    """Removes the masked channels of a `prune_channels_gradually` model.

    The pair of `prune_channels_gradually` (`strip_pruning` calls it too);
    `strip_structured` is its old name.

    Args:
        model: A model returned by `prune_channels_gradually` (trained,
            possibly saved and reloaded).

    Returns:
        A new plain Keras model without `ChannelMask` layers, narrower by the
        masked channels, whose outputs equal the masked model's.

    Raises:
        ValueError: If the model has no `ChannelMask` layers.

    Example:

    ```python
    small = tfopt.pruning.strip_channels(wrapped)
    ```
    """
    if not channel_masks(model):
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no ChannelMask layers; "
            "it was not made by prune_channels_gradually."
        )
    updater = ChannelMaskUpdater(model, start=False)
    keep = {}
    for root, mask in updater.group_masks().items():
        kept = np.flatnonzero(mask > 0)
        if len(kept) == 0:
            raise ValueError(f"Every channel of layer {updater.graph.group(root).name!r} is masked.")
        keep[root] = kept
    return surgery.rebuild(updater.graph, keep, bypass=(ChannelMask,))


strip_structured = strip_channels  # the old name, kept
