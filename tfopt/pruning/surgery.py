"""Building the narrower model: configs shrunk, weights sliced.

Given a `ChannelGraph` and the kept channels of some groups, every layer is
cloned: producers get fewer filters/units and their kernels lose the removed
output columns and input rows, channel-wise layers (BatchNormalization,
DepthwiseConv2D, PReLU) are sliced, and Reshape targets shrink. Layers with
nothing to change are copied with their weights.
"""

import keras
import numpy as np

from tfopt.graph import clone_with


def rebuild(graph, keep, bypass=()):
    """Returns a new model with only the `keep` channels of each group.

    Args:
        graph: The `ChannelGraph` of the model to shrink.
        keep: `{group_root: sorted kept indices}`; other groups keep all.
        bypass: Layer types dropped from the graph (the channel masks of a
            gradually pruned model); they must be single-input identities
            once the channels are gone.

    Returns:
        A new, built Keras model (Sequential stays Sequential unless layers
        are bypassed) with its weights set.
    """
    keep = {graph.find(root): np.asarray(k, dtype="int64") for root, k in keep.items()}

    def clone_layer(layer):
        if isinstance(layer, bypass):
            return layer.__class__.from_config(layer.get_config()), None
        info = graph.layers.get(layer.name)
        config = layer.get_config()
        if info is None or info.kind == "copy":
            return layer.__class__.from_config(config), layer.get_weights()
        positions = graph.expand(info.in_layout, keep)
        if info.kind == "producer":
            out = keep.get(graph.find(info.group))
            if out is not None:
                config["units" if "units" in config else "filters"] = int(len(out))
            return layer.__class__.from_config(config), _slice_producer(layer, positions, out)
        if info.kind == "reshape":
            config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(len(positions)),)
            return layer.__class__.from_config(config), layer.get_weights()
        return layer.__class__.from_config(config), _slice_channelwise(layer, positions)

    if not bypass:
        return clone_with(graph.model, clone_layer)

    def skip_bypassed(layer, *args, **kwargs):
        if isinstance(layer, bypass):
            return args[0]
        return layer(*args, **kwargs)

    return clone_with(graph.functional, clone_layer, call_function=skip_bypassed)


def _slice_producer(layer, rows, columns):
    """Kernels lose input rows (axis -2) and output columns (axis -1)."""
    kernels = {id(getattr(layer, "kernel", None)), id(getattr(layer, "pointwise_kernel", None))}
    depthwise = id(getattr(layer, "depthwise_kernel", None))
    bias = id(getattr(layer, "bias", None))
    values = []
    for variable in layer.weights:
        value = variable.numpy()
        if id(variable) in kernels:
            value = np.take(value, rows, axis=-2)
            if columns is not None:
                value = np.take(value, columns, axis=-1)
        elif id(variable) == depthwise:
            value = np.take(value, rows, axis=-2)
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


def _slice_channelwise(layer, positions):
    """Per-channel weights of BN, DepthwiseConv, PReLU follow the channels."""
    depthwise = id(getattr(layer, "kernel", None)) if isinstance(
        layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)) else None
    values = []
    for variable in layer.weights:
        value = variable.numpy()
        axis = -2 if id(variable) == depthwise else -1
        values.append(np.take(value, positions, axis=axis))
    return values
