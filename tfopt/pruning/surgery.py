"""Building the narrower model: configs shrunk, weights sliced.

Given a `ChannelGraph` and the kept channels of some groups, every layer is
cloned: producers get fewer filters/units and their kernels lose the removed
output columns and input rows (the axes come from the layer's
`CHANNEL_TABLE` rule; a SeparableConv with `depth_multiplier=m` loses `m`
pointwise rows per input channel), channel-wise layers (BatchNormalization,
DepthwiseConv2D with its `m` outputs per channel, PReLU, LayerScale,
GroupNormalization with fewer `groups`, AdditiveAttention's scale) are
sliced, MultiHeadAttention layers
keep only their kept heads, and Reshape targets (layers and `keras.ops`
nodes) shrink. Layers with nothing to change are copied with their weights;
raw ops nodes are stateless and reused. A model with nested models comes
back flat.
"""

import keras
import numpy as np

from tfopt.graph import clone_with
from tfopt.pruning.channel_graph import expand_multiplier

_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def rebuild(graph, keep, bypass=()):
    """Returns a new model with only the `keep` channels of each group.

    Args:
        graph: The `ChannelGraph` of the model to shrink.
        keep: `{group_root: sorted kept indices}` (channels, or heads of a
            MultiHeadAttention group); other groups keep all.
        bypass: Layer types dropped from the graph (the channel masks of a
            gradually pruned model); they must be single-input identities
            once the channels are gone.

    Returns:
        A new, built Keras model (Sequential stays Sequential unless layers
        are bypassed or nested models flattened) with its weights set.
    """
    keep = {graph.find(root): np.asarray(k, dtype="int64") for root, k in keep.items()}

    def clone_layer(layer):
        info = graph.layers.get(layer.name)
        if not isinstance(layer, keras.layers.Layer):
            # A raw keras.ops node: stateless; only a reshape target changes.
            if info is not None and info.kind == "reshape":
                return type(layer)(_new_shape(graph, info, layer.newshape, keep), name=layer.name), None
            return layer, None
        if isinstance(layer, bypass):
            return layer.__class__.from_config(layer.get_config()), None
        config = layer.get_config()
        if info is None or info.kind == "copy":
            return layer.__class__.from_config(config), layer.get_weights()
        if info.kind == "heads":
            kept = keep.get(graph.find(info.group))
            if kept is None:
                return layer.__class__.from_config(config), layer.get_weights()
            config["num_heads"] = int(len(kept))
            return layer.__class__.from_config(config), _slice_heads(layer, kept)
        if info.kind == "reshape":
            config["target_shape"] = _new_shape(graph, info, config["target_shape"], keep)
            return layer.__class__.from_config(config), layer.get_weights()
        positions = graph.expand(info.in_layout, keep)
        if info.kind == "producer":
            out = graph.kept(info.group, keep)
            if out is not None:
                config[info.rule.size_key] = int(len(out))
            return layer.__class__.from_config(config), _slice_producer(layer, info.rule, positions, out)
        size_key = info.rule.size_key if info.rule is not None else None
        if "filters" in config and config.get("groups", 1) != 1:  # a depthwise conv written as a grouped Conv
            config["groups"] = config["filters"] = int(len(positions))
        elif size_key and size_key in config:
            # GroupNormalization counts groups of `factor` channels.
            config[size_key] = int(len(positions)) // info.factor
        multiplier = info.factor if isinstance(layer, _DEPTHWISE) else 1
        return layer.__class__.from_config(config), _slice_channelwise(layer, positions, multiplier)

    if not bypass:
        return clone_with(graph.source, clone_layer)

    def skip_bypassed(layer, *args, **kwargs):
        if isinstance(layer, bypass):
            return args[0]
        return layer(*args, **kwargs)

    return clone_with(graph.functional, clone_layer, call_function=skip_bypassed)


def _new_shape(graph, info, shape, keep):
    shape = tuple(shape)
    if shape[-1] == -1:
        return shape
    width = len(graph.expand(info.in_layout, keep)) * info.factor
    return shape[:-1] + (int(width),)


def _slice_producer(layer, rule, rows, columns):
    """Kernels lose input rows and output columns (axes from the rule).

    A rule's third item (SeparableConv's `"depth_multiplier"`) repeats each
    input row that many times on that kernel's input axis.
    """
    axes = {id(getattr(layer, attr)): spec for attr, spec in rule.weights.items()
            if getattr(layer, attr, None) is not None}
    bias = id(getattr(layer, "bias", None))
    values = []
    for variable in layer.weights:
        value = variable.numpy()
        if id(variable) in axes:
            in_axis, out_axis, *repeat = axes[id(variable)]
            if in_axis is not None:
                mult = int(getattr(layer, repeat[0])) if repeat else 1
                value = np.take(value, expand_multiplier(rows, mult), axis=in_axis)
            if out_axis is not None and columns is not None:
                value = np.take(value, columns, axis=out_axis)
        elif id(variable) == bias:
            if columns is not None:
                value = np.take(value, columns, axis=0)
        else:
            raise ValueError(
                f"Layer {layer.name!r} holds weight {variable.path!r}, which structured "
                "pruning does not know how to slice (LoRA or a custom weight?). "
                "Leave this layer out with layers=[...]."
            )
        values.append(value)
    return values


def head_axes(layer):
    """`{id(variable): head axis}` of a MultiHeadAttention layer's weights.

    Q/K/V kernels are `(dim, heads, key_dim)` (head axis 1), their biases
    `(heads, key_dim)` (axis 0); the output kernel is `(heads, value_dim,
    dim)` (axis 0); the output bias has no head axis.
    """
    axes = {}
    for name in ("query_dense", "key_dense", "value_dense"):
        dense = getattr(layer, name)
        axes[id(dense.kernel)] = 1
        if getattr(dense, "bias", None) is not None:
            axes[id(dense.bias)] = 0
    axes[id(layer.output_dense.kernel)] = 0
    return axes


def _slice_heads(layer, kept):
    axes = head_axes(layer)
    values = []
    for variable in layer.weights:
        value = variable.numpy()
        if id(variable) in axes:
            value = np.take(value, kept, axis=axes[id(variable)])
        values.append(value)
    return values


def _slice_channelwise(layer, positions, multiplier=1):
    """Per-channel weights of BN, DepthwiseConv, PReLU, LayerScale, GroupNorm follow the channels.

    A depthwise kernel `(..., channels, multiplier)` loses whole input
    channels (axis -2); its bias `(channels * multiplier,)` loses each
    channel's `multiplier` outputs.
    """
    depthwise = id(getattr(layer, "kernel", None)) if isinstance(layer, _DEPTHWISE) else None
    values = []
    for variable in layer.weights:
        value = variable.numpy()
        if id(variable) == depthwise:
            values.append(np.take(value, positions, axis=-2))
        else:
            values.append(np.take(value, expand_multiplier(positions, multiplier), axis=-1))
    return values
