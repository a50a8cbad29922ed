"""Structured pruning during `fit`: channel masks grown along a schedule.

`prune_channels_gradually(model, schedule)` inserts `ChannelMask` layers in
front of the layers that consume prunable channels; `UpdatePruningStep`
drives a `ChannelMaskUpdater`, which rescores the channels and grows the
masks when the schedule prunes; `strip_channels` (or `strip_pruning`) then
removes the masked channels for real.

Masks sit where channels are *consumed* (the input of the next Conv/Dense),
after BatchNormalization, activations and residual Adds: a zeroed channel
there contributes exactly nothing, so the masked model and the surgered
model compute the same function. Coupled channels (Add, Concatenate) are
handled by `ChannelGraph`.
"""

import keras
import numpy as np

from tfopt import _compat
from tfopt.graph import clone_with
from tfopt.pruning import schedules as schedules_lib
from tfopt.pruning.channel_graph import ChannelGraph
from tfopt.pruning.channel_graph import first_argument
from tfopt.pruning.channel_mask import ChannelMask
from tfopt.pruning.channel_mask import channel_masks
from tfopt.pruning.channel_mask import channel_plan
from tfopt.pruning.channel_oneshot import keep_indices
from tfopt.pruning.channel_oneshot import resolve_ratios
from tfopt.pruning.importance import criteria
from tfopt.pruning.importance import weight_criteria
from tfopt.pruning.importance import group_importance
from tfopt.pruning.params import check_schedule


def prune_channels_gradually(model, pruning_schedule, criterion="l1", layers=None):
    """Wraps a model so that whole channels are pruned during `fit`.

    `ChannelMask` layers are inserted in front of every layer consuming
    prunable channels. Train with `tfopt.pruning.UpdatePruningStep()`: at
    each step the schedule prunes, the callback scores the channels of each
    group (from the producers' kernels; masked channels stay masked) and
    masks the weakest, so the fraction removed follows the schedule. Then
    `strip_pruning` (or `strip_channels`) removes the masked channels and
    returns the narrower model, whose outputs equal the masked model's.

    Args:
        model: A built Sequential or Functional model (a Sequential model
            becomes Functional, as masks are inserted between layers).
        pruning_schedule: A `PruningSchedule`, e.g. `PolynomialDecay(0.0,
            0.5, 0, 1000)`; its sparsity is the fraction of channels removed.
        criterion: `"l1"` or `"l2"` (data criteria are one-shot only).
        layers: Names of the layers to prune (default all prunable), or a
            dict `{name: final_ratio}`: the group's ratio is then the
            schedule's sparsity scaled to reach `final_ratio` at its end.

    Returns:
        A new model with `ChannelMask` layers; the original is untouched.

    Raises:
        ValueError / TypeError: As `prune_channels`, plus for a non-weight
            criterion or an invalid schedule.

    Example:

    ```python
    schedule = tfopt.pruning.PolynomialDecay(0.0, 0.5, 0, 500, frequency=50)
    wrapped = tfopt.pruning.prune_channels_gradually(model, schedule)
    tfopt.models.compile_classifier(wrapped)
    wrapped.fit(x, y, epochs=4, callbacks=[tfopt.pruning.UpdatePruningStep()])
    small = tfopt.pruning.strip_pruning(wrapped)
    ```
    """
    check_schedule(pruning_schedule, required=True)
    if criterion not in criteria():
        raise ValueError(f"criterion={criterion!r} must be one of {weight_criteria()}.")
    if criterion not in weight_criteria():
        raise ValueError(
            f"criterion={criterion!r} needs sample data; gradual pruning supports "
            f"{weight_criteria()}. Use prune_channels(model, ratio, criterion, data) "
            "for data criteria, then fine-tune."
        )
    graph = ChannelGraph(model)
    if any(isinstance(l, ChannelMask) for l in graph.functional.layers):
        raise ValueError(f"Model {model.name!r} is already wrapped for channel pruning.")
    end = float(pruning_schedule.end_sparsity())
    if isinstance(layers, dict):
        ratios = resolve_ratios(graph, layers)
    else:
        ratios = resolve_ratios(graph, end if end > 0 else 0.5, layers)
        ratios = {root: end for root in ratios}
    heads = [graph.group(root).name for root in ratios if graph.group(root).kind == "heads"]
    if heads and (layers is not None):
        raise ValueError(
            f"Attention heads of {heads} are pruned in one shot only: use "
            "prune_channels(model, ratio) for them (then fine-tune), and leave them "
            "out of prune_channels_gradually."
        )
    # With a model-wide ratio, gradual pruning removes channels and neurons;
    # attention heads (no tensor carries them to mask) are left whole.
    ratios = {root: r for root, r in ratios.items() if graph.group(root).kind != "heads"}
    names = {root: graph.group(root).name for root in ratios}
    masked = {}  # consumer name -> {position in its flat first argument: targets}
    for consumer, tensor, layout in graph.edges:
        roots = {root for root, *_ in graph.segment_slices(layout)}
        targets = {names[r]: ratios[r] for r in roots if r in ratios}
        if targets:
            masked.setdefault(consumer.name, {})[_argument_index(consumer, tensor)] = targets
    clones = {}

    def clone_layer(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer, None  # a raw keras.ops node: stateless
        new = layer.__class__.from_config(layer.get_config())
        clones[id(new)] = layer.name
        return new, layer.get_weights()

    created = []

    def call_function(layer, *args, **kwargs):
        inputs = masked.get(clones.get(id(layer)))
        if inputs and not args and "inputs" in kwargs:  # called as layer(inputs=...)
            args = (kwargs.pop("inputs"),)
        if inputs:
            flat = keras.tree.flatten(args[0])
            for index, targets in sorted(inputs.items()):
                # The model-wide schedule and criterion live on the first mask only.
                lead = not created
                suffix = f"_{index}" if index else ""
                mask = ChannelMask(pruning_schedule if lead else None, criterion if lead else None,
                                   targets, name=f"channel_mask_{layer.name}{suffix}")
                created.append(mask)
                flat[index] = mask(flat[index])
            args = (keras.tree.pack_sequence_as(args[0], flat),) + args[1:]
        return layer(*args, **kwargs)

    return clone_with(graph.functional, clone_layer, call_function=call_function)  # flat


def _argument_index(consumer, tensor):
    """Position of `tensor` in the flat first argument of `consumer`'s call.

    A Conv/Dense reads one tensor (0); an Attention layer reads a list
    `[query, value, key]`, each input masked on its own.
    """
    for node in _compat.inbound_nodes(consumer):
        first = first_argument(node)
        if first is None:
            continue
        for index, candidate in enumerate(keras.tree.flatten(first)):
            if candidate is tensor:
                return index
    return 0


class ChannelMaskUpdater:
    """Grows the channel masks of a model along its schedule (callback side).

    Created by `UpdatePruningStep.on_train_begin` when the model has
    `ChannelMask` layers; `on_batch_begin` runs before each batch.
    """

    def __init__(self, model, start=True):
        self.masks = channel_masks(model)
        self.graph = ChannelGraph(model, passthrough=(ChannelMask,))
        self.lead, self.schedule, self.criterion = channel_plan(self.masks)
        self.end = float(self.schedule.end_sparsity()) or 1.0
        targets = {}
        for mask in self.masks:
            targets.update(mask.targets)
            if start:
                mask.start_pruning()
        # Keyed by a producer's name: robust to which member names the group.
        self.targets = {self.graph.group_of_producer(name).id: ratio
                        for name, ratio in targets.items()}
        self._tracker = schedules_lib.UpdateTracker(self.schedule)

    def on_batch_begin(self):
        due, sparsity = self._tracker.due(int(self.lead.pruning_step.numpy()))
        if due:
            self.update(sparsity)

    def group_masks(self):
        """`{root: 0/1 array}` read from the mask layers."""
        result = {}
        for mask in self.masks:
            value = mask.mask.numpy()
            layout = self.graph.layers[mask.name].in_layout
            for root, starts, size, mult in self.graph.segment_slices(layout):
                if root in self.targets:
                    result[root] = value[starts[0]:starts[0] + size * mult:mult]
        return result

    def update(self, sparsity):
        current = self.group_masks()
        scores = group_importance(self.graph, self.criterion, roots=list(self.targets))
        new = {}
        for root, final in self.targets.items():
            group = self.graph.group(root)
            # The schedule's sparsity is float32 (0.45 -> 0.4499999): snap it
            # so the final step removes what prune_channels(ratio) removes.
            ratio = min(final, round(final * sparsity / self.end, 6))
            # Masked channels stay masked: they rank below every live one.
            score = np.where(current[root] > 0, scores[root], -np.inf)
            kept = keep_indices(score, ratio, group)
            mask = np.zeros(group.size, "float32")
            mask[kept] = 1.0
            new[root] = np.minimum(mask, current[root])
        for layer in self.masks:
            layout = self.graph.layers[layer.name].in_layout
            value = layer.mask.numpy().copy()
            for root, starts, size, mult in self.graph.segment_slices(layout):
                if root in new:
                    for begin in starts:
                        value[begin:begin + size * mult] = np.repeat(new[root], mult)
            layer.mask.assign(value)
