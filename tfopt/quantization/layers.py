"""The layers quantization-aware training inserts into a model."""

import keras
from keras import layers
from keras import ops

from tfopt.quantization import quantizers
from tfopt.substitution import SubstitutingWrapper
from tfopt.substitution import call_with_values

# Decay of the moving average of activation ranges. tfmot uses 0.999; QAT
# fine-tunes here run a few hundred steps, so the ranges follow faster.
RANGE_DECAY = 0.99


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeActivation(layers.Layer):
    """Fake-quantizes a tensor to int8 with a range learned in training.

    In training mode the range is a moving average of batch min/max
    (initialised from the first batch) and always contains 0; in inference
    it is frozen. The range variables are saved and checkpointed.

    Args:
        decay: Moving-average decay of the range.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, decay=RANGE_DECAY, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay!r} must be in [0, 1).")
        self.decay = decay

    def build(self, input_shape):
        def scalar(name, value):
            return self.add_weight(
                name=name, shape=(), initializer=keras.initializers.Constant(value),
                trainable=False, aggregation="only_first_replica",
            )

        # tfmot's initial range; replaced by the first training batch's.
        self.range_min = scalar("range_min", -6.0)
        self.range_max = scalar("range_max", 6.0)
        self.range_seen = scalar("range_seen", 0.0)  # 0 until the first batch

    def call(self, inputs, training=None):
        if training:
            # Ranges are statistics, not trained: no gradient through them.
            batch_min = ops.stop_gradient(ops.minimum(ops.min(inputs), 0.0))
            batch_max = ops.stop_gradient(ops.maximum(ops.max(inputs), 0.0))
            first = ops.equal(self.range_seen, 0.0)
            new_min = ops.where(first, batch_min, self.decay * self.range_min + (1 - self.decay) * batch_min)
            new_max = ops.where(first, batch_max, self.decay * self.range_max + (1 - self.decay) * batch_max)
            self.range_min.assign(new_min)
            self.range_max.assign(new_max)
            self.range_seen.assign(1.0)
            return quantizers.fake_quant_activation(inputs, new_min, new_max)
        return quantizers.fake_quant_activation(inputs, self.range_min, self.range_max)

    def get_prunable_weights(self):
        # Ranges, not weights: supported by pruning, never pruned.
        return []

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "decay": self.decay}


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeWrapper(SubstitutingWrapper):
    """Computes a layer with per-channel int8 fake-quantized kernels.

    The kernels named by the layer's `QuantizeConfig` are replaced, inside
    the call only, by their fake-quantized values; the float variables keep
    training (straight-through gradients). With `preserve_sparsity`, a mask
    of the kernel's zeros (taken when the wrapper is created) keeps them
    exactly zero through training and in the int8 file.

    Args:
        layer: The layer to quantize.
        quantize_config: A `QuantizeConfig` (default: tfopt's for the type).
        preserve_sparsity: Keep the kernels' zeros at zero.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, layer, quantize_config=None, preserve_sparsity=False, **kwargs):
        from tfopt.quantization import config as config_lib

        if isinstance(layer, QuantizeWrapper):
            raise ValueError(f"Layer {layer.name!r} is already quantized; quantize each layer once.")
        if isinstance(quantize_config, dict):
            quantize_config = keras.saving.deserialize_keras_object(quantize_config)
        if quantize_config is None:
            quantize_config = config_lib.default_config(layer)
            if quantize_config is None:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) has no default "
                    "QuantizeConfig; pass one (see tfopt.quantization.QuantizeConfig)."
                )
        if not isinstance(quantize_config, config_lib.QuantizeConfig):
            raise TypeError(f"quantize_config must be a QuantizeConfig, got {quantize_config!r}.")
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config
        self.preserve_sparsity = bool(preserve_sparsity)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._kernels = self.quantize_config.checked_weights(self.layer)
        self.sparsity_masks = [
            self.add_weight(
                name=f"sparsity_mask_{i}", shape=kernel.shape, initializer="ones",
                trainable=False, aggregation="only_first_replica",
            )
            for i, (kernel, _) in enumerate(self._kernels)
        ] if self.preserve_sparsity else []
        self.built = True

    def get_prunable_weights(self):
        """The quantized kernels, so a QAT model can be pruned while it trains.

        Pruning wraps this wrapper: the mask applies first and the kernel is
        fake-quantized after, with ranges of the pruned values, as the int8
        file will hold them.
        """
        return [kernel for kernel, _ in self._kernels]

    def capture_sparsity(self):
        """Records the kernels' current zeros as the masks to preserve."""
        for (kernel, _), mask in zip(self._kernels, self.sparsity_masks):
            mask.assign(ops.cast(ops.not_equal(kernel, 0), mask.dtype))

    def quantized_kernels(self):
        """The kernels as the int8 file will hold them (dequantized)."""
        values = []
        for i, (kernel, granularity) in enumerate(self._kernels):
            value = ops.convert_to_tensor(kernel)
            if self.preserve_sparsity:
                value = value * ops.cast(self.sparsity_masks[i], value.dtype)
            values.append(quantizers.fake_quant_weight(value, granularity))
        return values

    def call(self, inputs, *args, **kwargs):
        if _is_plain_conv1d(self.layer):
            return self._conv1d_as_conv2d(inputs)
        replacements = [(k, q) for (k, _), q in zip(self._kernels, self.quantized_kernels())]
        outputs, losses = call_with_values(self.layer, replacements, inputs, *args, **kwargs)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def _conv1d_as_conv2d(self, inputs):
        # Keras's Conv1D expands its kernel to 4-D after we would quantize
        # it, which moves the per-channel axis and breaks TFLite conversion
        # (why tfmot cannot quantize Conv1D). Quantizing the 4-D kernel of
        # the equivalent 1xk Conv2D gives the graph TFLite builds anyway.
        layer = self.layer
        kernel = ops.expand_dims(ops.convert_to_tensor(layer.kernel), 0)
        if self.preserve_sparsity:
            kernel = kernel * ops.expand_dims(ops.convert_to_tensor(self.sparsity_masks[0]), 0)
        kernel = quantizers.fake_quant_weight(kernel)
        x = ops.expand_dims(inputs, 1)
        padding = layer.padding
        if padding == "causal":
            left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            x = ops.pad(x, [[0, 0], [0, 0], [left, 0], [0, 0]])
            padding = "valid"
        y = ops.conv(x, kernel, strides=(1, layer.strides[0]), padding=padding,
                     dilation_rate=(1, layer.dilation_rate[0]), data_format="channels_last")
        y = ops.squeeze(y, 1)
        if layer.use_bias:
            y = y + layer.bias
        return layer.activation(y)

    def get_config(self):
        return {
            **super().get_config(),
            "quantize_config": keras.saving.serialize_keras_object(self.quantize_config),
            "preserve_sparsity": self.preserve_sparsity,
        }


def _is_plain_conv1d(layer):
    return (isinstance(layer, layers.Conv1D) and not isinstance(layer, layers.Conv1DTranspose)
            and layer.data_format == "channels_last" and layer.groups == 1)
