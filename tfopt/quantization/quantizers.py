"""Fake quantization after TFLite's int8 specification.

Weights: per-channel, symmetric, narrow range ([-127, 127], zero point 0),
so a zero weight stays exactly zero. Activations: per-tensor, asymmetric
([-128, 127]) with a range tracked as variables. Both go through
`keras.quantizers.fake_quant_with_min_max_vars`, which on the TensorFlow
backend emits the `FakeQuantWithMinMaxVars*` ops that the TFLite converter
turns into int8 kernels.
"""

import keras
from keras import ops

NUM_BITS = 8


GRANULARITIES = ("per_channel", "per_tensor", "depthwise", "transpose")


def fake_quant_weight(weight, granularity="per_channel"):
    """Symmetric narrow-range int8 fake quantization of a kernel.

    Args:
        weight: A kernel tensor, output channels on the last axis.
        granularity: `"per_channel"` (one range per output channel, TFLite's
            scheme for convolutions), `"per_tensor"` (one range, what the
            converter supports for FULLY_CONNECTED from fake-quant graphs:
            it transposes Dense kernels, which per-axis ranges cannot
            follow) or `"depthwise"` (`(h, w, in, multiplier)` kernels, one
            range per `in * multiplier` output channel) or `"transpose"`
            (`(h, w, out, in)` kernels of transposed convolutions, one range
            per output channel on axis -2).

    Returns:
        The fake-quantized kernel (same shape and dtype).

    Raises:
        ValueError: For an unknown granularity.
    """
    _check_granularity(granularity)
    if granularity == "transpose":
        return _swap_last_axes(fake_quant_weight(_swap_last_axes(weight), "per_channel"))
    shape = ops.shape(weight)
    flat, bound = _flat_and_bound(weight, granularity)
    quantized = keras.quantizers.fake_quant_with_min_max_vars(
        flat, -bound, bound, num_bits=NUM_BITS, narrow_range=True,
        axis=None if granularity == "per_tensor" else -1,
    )
    return ops.reshape(quantized, shape) if granularity == "depthwise" else quantized


def _check_granularity(granularity):
    if granularity not in GRANULARITIES:
        raise ValueError(f"Unknown granularity {granularity!r}; use one of {GRANULARITIES}.")


def _swap_last_axes(weight):
    """`(h, w, out, in)` <-> `(h, w, in, out)`."""
    rank = len(weight.shape)
    return ops.transpose(weight, tuple(range(rank - 2)) + (rank - 1, rank - 2))


def _flat_and_bound(weight, granularity):
    """The kernel with its output channels on the last axis, and each one's `max |w|`."""
    flat = weight
    if granularity == "depthwise":
        flat = ops.reshape(weight, tuple(weight.shape[:-2]) + (weight.shape[-2] * weight.shape[-1],))
    if granularity == "per_tensor":
        bound = ops.max(ops.abs(flat))
    else:
        bound = ops.max(ops.abs(flat), axis=tuple(range(len(flat.shape) - 1)))
    # An all-zero channel (common after pruning: a depthwise channel has only
    # 9 weights) must not get a vanishing range: TFLite quantizes the bias
    # with scale input_scale * weight_scale, which would overflow int32. Its
    # weights are zero at any scale, so borrow the largest channel's range.
    bound = ops.where(bound > 0, bound, ops.maximum(ops.max(bound), 1e-3))
    # The range follows the weights but is not trained through (as tfmot's
    # last-value quantizer).
    return flat, ops.stop_gradient(bound)


def weight_scales(weight, granularity="per_channel"):
    """TFLite's int8 scale of each output channel of a kernel (`bound / 127`).

    The same ranges as `fake_quant_weight`: a vector over the output
    channels (the bias's layout), or a scalar for `"per_tensor"`.

    Args:
        weight: A kernel tensor (float, before fake quantization).
        granularity: One of `GRANULARITIES`, as for `fake_quant_weight`.

    Returns:
        The scales (no gradient).

    Raises:
        ValueError: For an unknown granularity.
    """
    _check_granularity(granularity)
    if granularity == "transpose":
        return weight_scales(_swap_last_axes(weight), "per_channel")
    return _flat_and_bound(weight, granularity)[1] / 127.0


def fake_quant_bias(bias, input_scale, weight_scale):
    """A bias rounded to TFLite's int32 grid `input_scale * weight_scale`.

    The converter stores a kernel's bias as int32 with that scale; QAT adds
    the rounded value so the Keras model sums what the file sums
    (straight-through gradient).
    """
    scale = ops.stop_gradient(ops.cast(input_scale, bias.dtype) * ops.cast(weight_scale, bias.dtype))
    scale = ops.where(scale > 0, scale, 1.0)
    rounded = ops.round(bias / scale) * scale
    return bias + ops.stop_gradient(rounded - bias)


def fake_quant_activation(x, minimum, maximum):
    """Per-tensor asymmetric int8 fake quantization of an activation."""
    return keras.quantizers.fake_quant_with_min_max_vars(
        x, minimum, maximum, num_bits=NUM_BITS, narrow_range=False
    )


def int8_parameters(minimum, maximum, narrow_range=False):
    """TFLite's (scale, zero_point) for a float range, as the converter nudges.

    Mirrors `FakeQuantWithMinMaxVars`: the range is widened to contain 0 and
    the zero point rounded to an integer; used by tests and reports.
    """
    import numpy as np

    minimum, maximum = min(float(minimum), 0.0), max(float(maximum), 0.0)
    qmin, qmax = (-127, 127) if narrow_range else (-128, 127)
    scale = (maximum - minimum) / (qmax - qmin)
    if scale == 0:
        return 1.0, 0
    # TF nudges with floor(x + 0.5), not banker's rounding.
    zero_point = int(np.clip(np.floor(qmin - minimum / scale + 0.5), qmin, qmax))
    return scale, zero_point
