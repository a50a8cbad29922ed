"""Structured pruning in one shot: score channels, remove the weakest.

`prune_channels(model, ratio)` returns a new, narrower model (fine-tune it
afterwards); `channel_groups(model)` lists what it may remove. The ratio
checks (`resolve_ratios`) and the choice of kept channels (`keep_indices`)
are shared with gradual channel pruning (`channel_gradual`).
"""

import math

import keras
import numpy as np

from tfopt.pruning import surgery
from tfopt.pruning.channel_graph import PRODUCERS
from tfopt.pruning.channel_graph import ChannelGraph
from tfopt.pruning.importance import group_importance
from tfopt.pruning.importance import validate_criterion


def prune_channels(model, ratio, criterion="l1", data=None, layers=None):
    """Removes the least important channels; returns a new, narrower model.

    Output channels of Conv1D/2D/3D, Conv2DTranspose, SeparableConv, Dense
    and Embedding layers and the heads of MultiHeadAttention layers are
    removed, together with everything that carries them: BatchNormalization,
    DepthwiseConv2D (with its `depth_multiplier` outputs per channel),
    LayerScale and AdditiveAttention-scale channels, whole
    GroupNormalization groups, Attention's coupled query/key channels, the next layers' input rows
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


def channel_groups(model):
    """The channel groups of a model: what `prune_channels` may remove.

    (Named apart from `PrunableLayer`, the protocol of magnitude pruning;
    `prunable_layers` is the old name of this function.)

    Args:
        model: A built Sequential or Functional model.

    Returns:
        A list of dicts `{"layer", "producers", "channels", "blocked",
        "kind", "unit"}`, one per group (`"layer"` is the name to use in
        ratio dicts; `"blocked"` is None or why the group cannot be pruned;
        `"kind"` is `"channels"`, or `"heads"` for a MultiHeadAttention
        layer, whose `"channels"` count its heads; `"unit"`: channels are
        removed in blocks of that many, whole GroupNormalization groups).

    Example:

    ```python
    for row in tfopt.pruning.channel_groups(model):
        print(row["layer"], row["channels"], row["blocked"] or "ok")
    ```
    """
    graph = ChannelGraph(model)
    return [
        {"layer": g.name, "producers": list(g.producers), "channels": g.size, "blocked": g.blocked,
         "kind": g.kind, "unit": g.unit}
        for g in graph.groups()
    ]


prunable_layers = channel_groups  # the old name, kept


def keep_indices(scores, ratio, group):
    """Sorted indices of the channels kept when removing `ratio` of them.

    A group with `unit > 1` (channels reaching a GroupNormalization) keeps
    whole blocks of `unit` adjacent channels, scored by their sum; `ratio`
    is then the fraction of blocks removed (rounded to the nearest count).
    """
    unit = int(getattr(group, "unit", 1) or 1)
    scores = np.asarray(scores, dtype="float64")
    n = len(scores) // unit
    remove = int(math.floor(ratio * n + 0.5))
    kept = n - remove
    if kept < 1:
        what = (f"channels of layer {group.name!r}" if unit == 1 else
                f"blocks of {unit} channels (whole GroupNormalization groups) of layer {group.name!r}")
        raise ValueError(
            f"ratio={ratio} would remove all {n} {what}"
            + (f" (coupled with {group.producers[1:]})" if len(group.producers) > 1 else "")
            + f"; use a ratio below {(n - 0.5) / n:.3f} for it (a dict of per-layer "
            "ratios) or leave it out."
        )
    blocks = scores.reshape(n, unit).sum(axis=1)
    order = np.sort(np.argsort(-blocks, kind="stable")[:kept])
    return (order[:, None] * unit + np.arange(unit)).reshape(-1)


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
