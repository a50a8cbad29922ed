"""Graph rewrites for QAT: BatchNormalization folding, separable splitting.

Folding uses the trained moving statistics, as TFLite does when it converts:
`w' = w * gamma / sqrt(var + eps)` per output channel and
`b' = (b - mean) * gamma / sqrt(var + eps) + beta`. QAT then trains the
folded convolution, so the int8 file holds exactly the weights that were
trained with fake quantization (tfmot instead re-folds batch statistics each
step; freezing them is the common choice for short QAT fine-tunes).
"""

import numpy as np
from keras import layers

from tfopt import _compat

FOLDABLE = (layers.Conv1D, layers.Conv2D, layers.DepthwiseConv1D, layers.DepthwiseConv2D, layers.Dense)


def bn_scale_shift(bn):
    """Per-channel `(scale, shift)` of a BatchNormalization in inference."""
    weights = {w.name: w.numpy() for w in bn.weights}
    variance, mean = weights["moving_variance"], weights["moving_mean"]
    gamma = weights.get("gamma", np.ones_like(variance))
    beta = weights.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale, beta - mean * scale


def can_fold(producer, bn):
    """Whether `bn` can be folded into `producer` (a linear kernel layer)."""
    if not isinstance(producer, FOLDABLE) or not isinstance(bn, layers.BatchNormalization):
        return False
    activation = getattr(producer.activation, "__name__", "linear")
    axis = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
    return activation == "linear" and axis in (-1, len(bn.input.shape) - 1)


def folded_weights(producer, bn):
    """`[kernel, bias]` of `producer` with `bn` folded in (numpy)."""
    kernel = producer.kernel.numpy()
    bias = producer.bias.numpy() if producer.use_bias else 0.0
    scale, shift = bn_scale_shift(bn)
    if isinstance(producer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        # Depthwise output channel c = input channel * multiplier + m.
        channel_scale = scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        channel_scale = scale
    return [kernel * channel_scale, bias * scale + shift]


def folded_config(producer):
    """The producer's config with a bias (folding always adds one)."""
    return {**producer.get_config(), "use_bias": True}


def split_separable(layer):
    """A SeparableConv as `(depthwise, pointwise)` configs and weights.

    TFLite runs a separable convolution as DEPTHWISE_CONV_2D then a 1x1
    CONV_2D; splitting it lets QAT quantize the tensor between the two.
    """
    config = layer.get_config()
    rank = 1 if isinstance(layer, layers.SeparableConv1D) else 2
    depthwise_cls = layers.DepthwiseConv1D if rank == 1 else layers.DepthwiseConv2D
    pointwise_cls = layers.Conv1D if rank == 1 else layers.Conv2D
    depthwise = depthwise_cls(
        kernel_size=config["kernel_size"], strides=config["strides"], padding=config["padding"],
        depth_multiplier=config["depth_multiplier"], dilation_rate=config["dilation_rate"],
        data_format=config["data_format"], use_bias=False, name=f"{layer.name}_depthwise",
    )
    pointwise = pointwise_cls(
        filters=config["filters"], kernel_size=1, use_bias=config["use_bias"],
        activation=config["activation"], data_format=config["data_format"],
        name=f"{layer.name}_pointwise",
    )
    weights = layer.get_weights()
    return (depthwise, [weights[0]]), (pointwise, weights[1:])


def _channels(layer):
    from tfopt import _compat

    nodes = _compat.inbound_nodes(layer)
    if not nodes or not nodes[0].input_tensors:
        return None
    return nodes[0].input_tensors[0].shape[-1]


def affine_unsupported(layer):
    """Why `layer` cannot become a per-channel affine (None if it can)."""
    channels = _channels(layer)
    if channels is None:
        return "its input has an undefined channel (last) axis"
    if isinstance(layer, layers.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        nodes = _compat.inbound_nodes(layer)
        rank = len(nodes[0].input_tensors[0].shape)
        if axis not in (-1, rank - 1):
            return f"it normalizes axis {axis}, not the channel (last) axis"
        return None
    if isinstance(layer, layers.Normalization):
        axis = layer.axis if isinstance(layer.axis, (tuple, list)) else (layer.axis,)
        if tuple(axis) not in ((-1,), ()) and layer.mean is not None and np.size(layer.mean) not in (1, channels):
            return f"it normalizes axis {axis}, not only the channel (last) axis"
        if layer.mean is None or np.size(layer.mean) not in (1, channels):
            return f"its mean/variance are not per channel ({channels} channels)"
        return None
    if isinstance(layer, layers.Rescaling):
        for value in (layer.scale, layer.offset):
            if np.size(value) not in (1, channels):
                return f"its scale/offset are not per channel ({channels} channels)"
        return None
    gamma = getattr(layer, "gamma", None)
    if gamma is not None and tuple(gamma.shape) == (channels,):
        return None  # LayerScale
    return "it is not a per-channel affine tfopt knows"


def affine_scale_shift(layer):
    """`(scale, shift)` numpy vectors with `layer(x) == x * scale + shift`.

    For standalone BatchNormalization (moving statistics), Normalization,
    Rescaling and ConvNeXt's LayerScale, broadcast to the channel count.
    """
    channels = _channels(layer)
    if isinstance(layer, layers.BatchNormalization):
        scale, shift = bn_scale_shift(layer)
    elif isinstance(layer, layers.Normalization):
        import keras

        mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), dtype="float64").reshape(-1)
        std = np.sqrt(np.asarray(keras.ops.convert_to_numpy(layer.variance), dtype="float64").reshape(-1))
        std = np.maximum(std, keras.backend.epsilon())
        scale, shift = (std, mean) if layer.invert else (1.0 / std, -mean / std)
    elif isinstance(layer, layers.Rescaling):
        scale = np.asarray(layer.scale, dtype="float64").reshape(-1)
        shift = np.asarray(layer.offset, dtype="float64").reshape(-1)
    else:
        scale, shift = layer.gamma.numpy().reshape(-1), np.zeros(1)
    ones = np.ones(channels)
    return (scale * ones).astype("float32"), (shift * ones).astype("float32")
