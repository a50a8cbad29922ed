"""`ChannelMask`: the layer that masks whole channels during gradual pruning.

`prune_channels_gradually` inserts one in front of each layer consuming
prunable channels; `ChannelMaskUpdater` (driven by `UpdatePruningStep`)
grows the masks; `strip_channels` removes the masked channels for real.

The schedule and criterion are the model's, not a mask's: they are stored
once, on one mask (the *lead*, the first one `prune_channels_gradually`
creates); the other masks hold `pruning_schedule=None, criterion=None` and
follow it (`channel_plan`).
"""

import keras
from keras import ops

from tfopt.pruning import schedules as schedules_lib
from tfopt.pruning.importance import weight_criteria
from tfopt.pruning.params import MISSING_CALLBACK


@keras.saving.register_keras_serializable(package="tfopt")
class ChannelMask(keras.layers.Layer):
    """Multiplies the channels (last axis) of its input by a 0/1 mask.

    Inserted by `prune_channels_gradually` in front of each layer that
    consumes prunable channels. The mask and a `pruning_step` counter are
    non-trainable variables (saved with the model); the masks are updated
    by the `UpdatePruningStep` callback, for the groups listed in `targets`,
    from the schedule and criterion of the model's lead mask (the first
    mask holding a schedule; see `channel_plan`).

    Args:
        pruning_schedule: A `PruningSchedule` (the ratio of channels removed
            over steps; each group's final ratio scales it, see `targets`),
            or None on the masks that follow the lead mask's schedule (a
            model whose masks have none uses `ConstantSparsity(0.5, 0)`).
        criterion: `"l1"` or `"l2"`, or None on a following mask (the
            default then is `"l1"`).
        targets: `{group_name: final_ratio}` for the groups whose channels
            pass through this mask.
        **kwargs: Passed to `keras.layers.Layer`.

    Raises:
        ValueError: For a criterion that is not a weight criterion.
        TypeError: For a schedule that is not a `PruningSchedule`.

    Example:

    ```python
    wrapped = tfopt.pruning.prune_channels_gradually(model, schedule)
    masks = [l for l in wrapped.layers if isinstance(l, tfopt.pruning.ChannelMask)]
    ```
    """

    def __init__(self, pruning_schedule=None, criterion="l1", targets=None, **kwargs):
        super().__init__(**kwargs)
        if pruning_schedule is not None:
            pruning_schedule = schedules_lib.resolve(pruning_schedule)
        if criterion is not None and criterion not in weight_criteria():
            raise ValueError(
                f"criterion={criterion!r}: gradual channel pruning scores channels "
                f"from the weights during training, one of {weight_criteria()}."
            )
        self.pruning_schedule = pruning_schedule
        self.criterion = criterion
        self.targets = dict(targets or {})
        self._pruning_started = False

    def build(self, input_shape):
        self.mask = self.add_weight(
            name="mask", shape=(input_shape[-1],), initializer="ones",
            dtype="float32", trainable=False, aggregation="only_first_replica")
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), initializer="zeros", dtype="int64",
            trainable=False, aggregation="only_first_replica")
        self.built = True

    def start_pruning(self):
        """Allows training calls: done by `UpdatePruningStep.on_train_begin`.

        A mask trained before this raises a ValueError naming the missing
        callback on its first training call.
        """
        self._pruning_started = True

    def call(self, inputs, training=None):
        if training:
            if not self._pruning_started:
                raise ValueError(MISSING_CALLBACK.format(name=self.name))
            self.pruning_step.assign_add(1)
        return inputs * ops.cast(self.mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            pruning_schedule=(None if self.pruning_schedule is None
                              else schedules_lib.serialize(self.pruning_schedule)),
            criterion=self.criterion,
            targets=dict(self.targets),
        )
        return config


def channel_masks(model):
    """The `ChannelMask` layers of a model (top level)."""
    return [l for l in getattr(model, "layers", []) if isinstance(l, ChannelMask)]


def has_channel_masks(model):
    """Whether `model` holds `ChannelMask` layers (top level)."""
    return bool(channel_masks(model))


def channel_plan(masks):
    """`(lead_mask, schedule, criterion)` of a model's `ChannelMask` layers.

    The lead is the first mask holding a schedule (models saved before the
    schedule was stored once hold it on every mask: the first one leads).

    Args:
        masks: The model's masks (`channel_masks(model)`), not empty.

    Returns:
        The lead mask (the first mask if none holds a schedule), the
        schedule (default `ConstantSparsity(0.5, 0)`) and the criterion
        (default `"l1"`).
    """
    lead = next((m for m in masks if m.pruning_schedule is not None), masks[0])
    schedule = lead.pruning_schedule
    if schedule is None:
        schedule = schedules_lib.resolve(None)
    return lead, schedule, lead.criterion or "l1"
