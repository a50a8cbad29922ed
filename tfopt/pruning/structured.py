"""Structured pruning: remove whole filters, channels and neurons.

Two ways in:

- `prune_channels(model, ratio)`: one shot. Scores channels, removes the
  weakest and returns a new, narrower model (fine-tune it afterwards).
- `prune_channels_gradually(model, pruning_schedule)`: during `fit`.
  Inserts `ChannelMask` layers in front of the layers that consume prunable
  channels; the `UpdatePruningStep` callback grows the masks along the
  schedule; `strip_pruning` (or `strip_structured`) then removes the masked
  channels for real.

Masks sit where channels are *consumed* (the input of the next Conv/Dense),
after BatchNormalization, activations and residual Adds: a zeroed channel
there contributes exactly nothing, so the masked model and the surgered
model compute the same function. Coupled channels (Add, Concatenate) are
handled by `ChannelGraph`; surgery by `surgery.rebuild`.
"""

import math

import keras
import numpy as np
from keras import ops

from tfopt.pruning import schedules as schedules_lib
from tfopt.pruning import surgery
from tfopt.pruning.channel_graph import PRODUCERS
from tfopt.pruning.channel_graph import ChannelGraph
from tfopt.pruning.importance import CRITERIA
from tfopt.pruning.importance import WEIGHT_CRITERIA
from tfopt.pruning.importance import group_importance
from tfopt.pruning.importance import validate_criterion

_MISSING_CALLBACK = (
    "{name} is being trained, but channel pruning was never started. Add "
    "`tfopt.pruning.UpdatePruningStep()` to the callbacks of `fit`."
)


# -- one shot ---------------------------------------------------------------------


def prune_channels(model, ratio, criterion="l1", data=None, layers=None):
    """Removes the least important channels; returns a new, narrower model.

    Output channels of Conv1D/2D/3D, Conv2DTranspose, SeparableConv, Dense
    and Embedding layers and the heads of MultiHeadAttention layers are
    removed, together with everything that carries them: BatchNormalization,
    DepthwiseConv2D and LayerScale channels, the next layers' input rows
    (through pooling, activations, padding, Dropout, UpSampling, Resizing,
    Flatten, Concatenate, safe Reshapes and raw `keras.ops` nodes such as
    `x + 3`). Producers joined by Add/Multiply/`x * gate`... share one set
    of kept channels, scored by the sum over the group. Layers whose
    channels reach a model output (the classifier) or a layer that mixes
    them (LayerNormalization) are not pruned: see
    `tfopt.pruning.channel_graph.CHANNEL_TABLE`. Nested models are
    flattened (the result is flat). The original model is untouched.

    Args:
        model: A built Sequential or Functional model.
        ratio: Fraction of each prunable layer's channels to remove, in
            `[0, 1)` (rounded to the nearest count), or a dict
            `{layer_name: ratio}` (unnamed layers are not pruned; naming one
            member of a coupled group prunes the whole group).
        criterion: `"l1"`, `"l2"` (filter norms), `"taylor"` (first-order
            loss change, needs `data=(x, y)`), `"mean_activation"` or
            `"apoz"` (need `data=x`).
        data: Sample data for the data criteria.
        layers: With a float `ratio`, the names of the layers to prune
            (default: every prunable layer).

    Returns:
        A new, built Keras model with fewer channels and copied weights.

    Raises:
        ValueError: For a ratio outside `[0, 1)` or one that would remove
            every channel of a layer, an unknown layer name, a layer that
            cannot be pruned structurally (the message names the layer that
            prevents it), a missing `data`, or an unbuilt model.
        TypeError: For a ratio of the wrong type, or a subclassed model
            (`UnsupportedModelError`, also a ValueError).

    Example:

    ```python
    small = tfopt.pruning.prune_channels(model, 0.5)           # L1, all layers
    small = tfopt.pruning.prune_channels(model, {"conv2d": 0.3, "dense": 0.5})
    tfopt.models.compile_classifier(small).fit(x, y, epochs=2)  # fine-tune
    ```
    """
    validate_criterion(criterion, data)
    graph = ChannelGraph(model)
    ratios = resolve_ratios(graph, ratio, layers)
    scores = group_importance(graph, criterion, data, roots=list(ratios))
    keep = {root: keep_indices(scores[root], r, graph.group(root)) for root, r in ratios.items()}
    return surgery.rebuild(graph, keep)


def prunable_layers(model):
    """The prune groups of a model: what `prune_channels` may remove.

    Args:
        model: A built Sequential or Functional model.

    Returns:
        A list of dicts `{"layer", "producers", "channels", "blocked",
        "kind"}`, one per group (`"layer"` is the name to use in ratio dicts;
        `"blocked"` is None or why the group cannot be pruned; `"kind"` is
        `"channels"`, or `"heads"` for a MultiHeadAttention layer, whose
        `"channels"` count its heads).

    Example:

    ```python
    for row in tfopt.pruning.prunable_layers(model):
        print(row["layer"], row["channels"], row["blocked"] or "ok")
    ```
    """
    graph = ChannelGraph(model)
    return [
        {"layer": g.name, "producers": list(g.producers), "channels": g.size, "blocked": g.blocked,
         "kind": g.kind}
        for g in graph.groups()
    ]


def keep_indices(scores, ratio, group):
    """Sorted indices of the channels kept when removing `ratio` of them."""
    n = len(scores)
    remove = int(math.floor(ratio * n + 0.5))
    kept = n - remove
    if kept < 1:
        raise ValueError(
            f"ratio={ratio} would remove all {n} channels of layer {group.name!r}"
            + (f" (coupled with {group.producers[1:]})" if len(group.producers) > 1 else "")
            + f"; use a ratio below {(n - 0.5) / n:.3f} for it (a dict of per-layer "
            "ratios) or leave it out."
        )
    order = np.argsort(-np.asarray(scores, dtype="float64"), kind="stable")
    return np.sort(order[:kept])


def _check_ratio(value, name="ratio"):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name}={value!r} must be a float in [0, 1).")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"{name}={value!r} is outside [0, 1): it is the fraction of a layer's "
            "channels removed, and removing all of them is not allowed."
        )
    return float(value)


def resolve_ratios(graph, ratio, layers=None):
    """`{group_root: ratio}` for the groups to prune, validated.

    Raises:
        ValueError / TypeError: As documented in `prune_channels`.
    """
    if isinstance(ratio, dict):
        if layers is not None:
            raise ValueError(
                "Give per-layer ratios either as a dict or as a float with "
                "layers=[...], not both."
            )
        requested = {name: _check_ratio(r, f"ratio[{name!r}]") for name, r in ratio.items()}
    else:
        value = _check_ratio(ratio)
        if layers is None:
            groups = graph.prunable_groups()
            if not groups:
                reasons = "; ".join(f"{g.name}: {g.blocked}" for g in graph.groups()) or "no Conv/Dense layers"
                raise ValueError(
                    f"Model {graph.model.name!r} has no channels that can be pruned "
                    f"structurally ({reasons})."
                )
            return {g.id: value for g in groups if value > 0}
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise TypeError(f"layers={layers!r} must be a list of layer names.")
        requested = dict.fromkeys(layers, value)
    result, named = {}, {}
    for name, value in requested.items():
        group = _group_for_name(graph, name)
        if group.id in result and result[group.id] != value:
            raise ValueError(
                f"Layers {named[group.id]!r} and {name!r} are coupled (their channels "
                f"are joined, e.g. by Add: {group.producers}) and share one set of "
                f"channels; give them the same ratio (got {result[group.id]} and {value})."
            )
        result[group.id] = value
        named[group.id] = name
    return {root: r for root, r in result.items() if r > 0}


def _group_for_name(graph, name):
    model_layers = {layer.name: layer for layer in graph.functional.layers}
    if name not in model_layers:
        targets = [g.name for g in graph.prunable_groups()]
        raise ValueError(
            f"Layer {name!r} not found in model {graph.model.name!r} (layers of "
            f"nested models keep their names); prunable layers are {targets}."
        )
    layer = model_layers[name]
    group = graph.group_of_producer(name)
    if group is None:
        if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
                              keras.layers.BatchNormalization)):
            hint = "its channels follow its input; prune the layer that produces them"
        elif isinstance(layer, PRODUCERS):
            hint = "it is not on a path structured pruning can trace"
        else:
            hint = "only Conv, SeparableConv and Dense output channels are removed"
        raise ValueError(
            f"Layer {name!r} ({type(layer).__name__}) cannot be pruned "
            f"structurally: {hint}."
        )
    if group.blocked is not None:
        raise ValueError(
            f"Layer {name!r} cannot be pruned structurally: {group.blocked}. "
            "Leave it out (use a dict of ratios or layers=[...])."
        )
    return group


# -- gradual -----------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfopt")
class ChannelMask(keras.layers.Layer):
    """Multiplies the channels (last axis) of its input by a 0/1 mask.

    Inserted by `prune_channels_gradually` in front of each layer that
    consumes prunable channels. The mask and a `pruning_step` counter are
    non-trainable variables (saved with the model); the masks are updated
    by the `UpdatePruningStep` callback from the schedule and criterion
    stored here, for the groups listed in `targets`.

    Args:
        pruning_schedule: A `PruningSchedule` (the ratio of channels removed
            over steps; each group's final ratio scales it, see `targets`).
        criterion: `"l1"` or `"l2"`.
        targets: `{group_name: final_ratio}` for the groups whose channels
            pass through this mask.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, pruning_schedule=None, criterion="l1", targets=None, **kwargs):
        super().__init__(**kwargs)
        pruning_schedule = schedules_lib.resolve(pruning_schedule)
        if criterion not in WEIGHT_CRITERIA:
            raise ValueError(
                f"criterion={criterion!r}: gradual channel pruning scores channels "
                f"from the weights during training, one of {WEIGHT_CRITERIA}."
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

    def call(self, inputs, training=None):
        if training:
            if not self._pruning_started:
                raise ValueError(_MISSING_CALLBACK.format(name=self.name))
            self.pruning_step.assign_add(1)
        return inputs * ops.cast(self.mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            pruning_schedule=schedules_lib.serialize(self.pruning_schedule),
            criterion=self.criterion,
            targets=dict(self.targets),
        )
        return config


def prune_channels_gradually(model, pruning_schedule, criterion="l1", layers=None):
    """Wraps a model so that whole channels are pruned during `fit`.

    `ChannelMask` layers are inserted in front of every layer consuming
    prunable channels. Train with `tfopt.pruning.UpdatePruningStep()`: at
    each step the schedule prunes, the callback scores the channels of each
    group (from the producers' kernels; masked channels stay masked) and
    masks the weakest, so the fraction removed follows the schedule. Then
    `strip_pruning` (or `strip_structured`) removes the masked channels and
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
    if not isinstance(pruning_schedule, schedules_lib.PruningSchedule):
        raise TypeError(
            "pruning_schedule must be a tfopt.pruning.PruningSchedule (e.g. "
            f"PolynomialDecay), got {pruning_schedule!r}."
        )
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} must be one of {WEIGHT_CRITERIA}.")
    if criterion not in WEIGHT_CRITERIA:
        raise ValueError(
            f"criterion={criterion!r} needs sample data; gradual pruning supports "
            f"{WEIGHT_CRITERIA}. Use prune_channels(model, ratio, criterion, data) "
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
    masked = {}
    for consumer, _, layout in graph.edges:
        roots = {root for root, _, _ in graph.segment_slices(layout)}
        targets = {names[r]: ratios[r] for r in roots if r in ratios}
        if targets:
            masked[consumer.name] = targets
    clones = {}

    def clone_layer(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer, None  # a raw keras.ops node: stateless
        new = layer.__class__.from_config(layer.get_config())
        clones[id(new)] = layer.name
        return new, layer.get_weights()

    def call_function(layer, *args, **kwargs):
        targets = masked.get(clones.get(id(layer)))
        if targets:
            mask = ChannelMask(pruning_schedule, criterion, targets,
                               name=f"channel_mask_{layer.name}")
            args = (mask(args[0]),) + args[1:]
        return layer(*args, **kwargs)

    from tfopt.graph import clone_with

    return clone_with(graph.functional, clone_layer, call_function=call_function)  # flat


def channel_masks(model):
    """The `ChannelMask` layers of a model."""
    return [l for l in getattr(model, "layers", []) if isinstance(l, ChannelMask)]


class ChannelMaskUpdater:
    """Grows the channel masks of a model along its schedule (callback side).

    Created by `UpdatePruningStep.on_train_begin` when the model has
    `ChannelMask` layers; `on_batch_begin` runs before each batch.
    """

    def __init__(self, model, start=True):
        self.masks = channel_masks(model)
        self.graph = ChannelGraph(model, passthrough=(ChannelMask,))
        self.schedule = self.masks[0].pruning_schedule
        self.criterion = self.masks[0].criterion
        self.end = float(self.schedule.end_sparsity()) or 1.0
        targets = {}
        for mask in self.masks:
            targets.update(mask.targets)
            if start:
                mask._pruning_started = True
        # Keyed by a producer's name: robust to which member names the group.
        self.targets = {self.graph.group_of_producer(name).id: ratio
                        for name, ratio in targets.items()}
        self._last_step = None

    def on_batch_begin(self):
        step = int(self.masks[0].pruning_step.numpy())
        should, sparsity = self.schedule(step)
        missed = self._last_step is not None and step - self._last_step > 1 and any(
            bool(self.schedule(s)[0]) for s in range(self._last_step + 1, step))
        if bool(should) or missed:
            self.update(float(sparsity))
        self._last_step = step

    def group_masks(self):
        """`{root: 0/1 array}` read from the mask layers."""
        result = {}
        for mask in self.masks:
            value = mask.mask.numpy()
            layout = self.graph.layers[mask.name].in_layout
            for root, starts, size in self.graph.segment_slices(layout):
                if root in self.targets:
                    result[root] = value[starts[0]:starts[0] + size]
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
            for root, starts, size in self.graph.segment_slices(layout):
                if root in new:
                    for begin in starts:
                        value[begin:begin + size] = new[root]
            layer.mask.assign(value)


def strip_structured(model):
    """Removes the masked channels of a `prune_channels_gradually` model.

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
    small = tfopt.pruning.strip_structured(wrapped)
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


def has_channel_masks(model):
    """Whether `model` holds `ChannelMask` layers (top level)."""
    return bool(channel_masks(model))

