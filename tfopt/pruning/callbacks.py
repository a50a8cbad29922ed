"""Callbacks that drive pruning during `fit`."""

import warnings

import keras
import numpy as np

from tfopt.pruning import masks as mask_math
from tfopt.pruning import wrapper as wrapper_lib
from tfopt.pruning.schedules import UpdateTracker


def _wrappers(model):
    from tfopt.pruning.api import pruning_wrappers

    return pruning_wrappers(model)


def _weight_label(wrapper, weight):
    from tfopt.pruning.api import _weight_label as label

    return label(wrapper, weight)


class UpdatePruningStep(keras.callbacks.Callback):
    """Starts and advances pruning; required when training a pruned model.

    At the start of training it marks every `PruneLowMagnitude` wrapper as
    started (a wrapper trained without this callback raises a clear error on
    the first batch). The step itself is a variable of each wrapper that
    advances inside the compiled train step, once per training call of the
    wrapper (once per batch; a layer shared by several inputs advances once
    per use), so there is no per-batch Python work for `scope="layer"`, and
    a model restored from a `.keras` file or a checkpoint continues from its
    saved step. For `scope="global"` wrappers the callback computes the
    shared threshold before the batches on which the schedule prunes (with
    `steps_per_execution > 1`, before the next execution). Models from
    `prune_channels_gradually` are driven the same way: before a batch on
    which their schedule prunes, the callback rescores the channels and
    grows the `ChannelMask`s.

    Example:

    ```python
    pruned.fit(x, y, epochs=2, callbacks=[tfopt.pruning.UpdatePruningStep()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._global = []
        self._channels = None
        self._tracker = None

    def on_train_begin(self, logs=None):
        from tfopt.pruning import structured

        wrappers = _wrappers(self.model)
        # Structured pruning (ChannelMask layers) is driven by this callback too.
        self._channels = (structured.ChannelMaskUpdater(self.model)
                          if structured.has_channel_masks(self.model) else None)
        if not wrappers and self._channels is None:
            warnings.warn(
                "UpdatePruningStep: the model has no PruneLowMagnitude or "
                "ChannelMask layers; did you train the model returned by "
                "prune_low_magnitude or prune_channels_gradually?",
                stacklevel=2,
            )
        for wrapper in wrappers:
            wrapper.start_pruning()
        self._global = [w for w in wrappers if w.scope == "global" and w.prunable_weights]
        # A callback reused on another model (or schedule) starts afresh; the
        # same model's next fit keeps catching up from where it stopped.
        schedule = self._global[0].pruning_schedule if self._global else None
        if self._tracker is not None and self._tracker.schedule is not schedule:
            self._tracker = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._channels is not None:
            self._channels.on_batch_begin()
        if not self._global:
            return
        # The wrappers' own step is the truth (it survives restores and
        # counts every batch even with steps_per_execution > 1, where this
        # hook runs once per execution).
        step = int(self._global[0].pruning_step.numpy())
        if self._tracker is None:
            self._tracker = UpdateTracker(self._global[0].pruning_schedule)
        due, sparsity = self._tracker.due(step)
        if due:
            update_global_masks(self._global, sparsity)


def update_global_masks(wrappers, sparsity):
    """Recomputes masks of `wrappers` from one threshold across all of them.

    Args:
        wrappers: `PruneLowMagnitude` layers with `scope="global"`.
        sparsity: Target fraction of zeros over all their prunable weights.
    """
    weights, masks, thresholds = [], [], []
    for wrapper in wrappers:
        weights += wrapper.prunable_weights
        masks += wrapper.masks
        thresholds += wrapper.thresholds
    magnitudes = [np.abs(w.numpy() * m.numpy()) for w, m in zip(weights, masks)]
    if sum(m.size for m in magnitudes) >= wrapper_lib.WARM_START_MIN_SIZE:
        # Warm-started from the last shared threshold, XLA-compiled.
        new_masks, threshold = wrapper_lib.compiled_global_masks()(
            magnitudes, np.float32(sparsity), thresholds[0].numpy()
        )
    else:
        new_masks, threshold = mask_math.global_threshold_masks(magnitudes, sparsity)
    for variable, value in zip(masks, new_masks):
        variable.assign(value)
    for variable in thresholds:
        variable.assign(threshold)


class PruningSummaries(keras.callbacks.Callback):
    """Writes per-weight sparsity and threshold to TensorBoard each epoch.

    Args:
        log_dir: Directory of the TensorBoard event files.

    Example:

    ```python
    callbacks = [tfopt.pruning.UpdatePruningStep(),
                 tfopt.pruning.PruningSummaries("logs/pruning")]
    ```
    """

    def __init__(self, log_dir):
        super().__init__()
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(f"log_dir={log_dir!r} must be a non-empty path.")
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf  # TensorBoard's event format is TF's

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            for wrapper in _wrappers(self.model):
                for weight, mask, threshold in zip(
                    wrapper.prunable_weights, wrapper.masks, wrapper.thresholds
                ):
                    tag = f"{wrapper.layer.name}/{_weight_label(wrapper, weight)}"
                    sparsity = 1.0 - float(np.mean(mask.numpy()))
                    tf.summary.scalar(f"{tag}/sparsity", sparsity)
                    tf.summary.scalar(f"{tag}/threshold", float(threshold.numpy()))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
