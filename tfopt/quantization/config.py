"""What to quantize in a layer: `QuantizeConfig` and the built-in choices."""

import keras
from keras import layers


class QuantizeConfig:
    """Says which kernels of a layer are fake-quantized to int8.

    Subclass it for a custom layer and pass an instance to
    `quantize_annotate_layer`. Register the subclass with
    `keras.saving.register_keras_serializable()` so models load.

    Methods to implement:
        get_weights(layer): the kernels to quantize per output channel, a
            list of `keras.Variable`s of the layer (never biases: TFLite
            keeps biases int32 and derives their scale).
        get_config(): a JSON-able dict (default: empty).

    Example:

    ```python
    @keras.saving.register_keras_serializable()
    class MyDenseConfig(tfopt.quantization.QuantizeConfig):
        def get_weights(self, layer):
            return [layer.w]
    ```
    """

    def get_weights(self, layer):
        raise NotImplementedError(f"{type(self).__name__} must implement get_weights(layer).")

    def granularity(self, layer):
        """`"per_channel"` (default), `"per_tensor"` or `"depthwise"`."""
        return "per_channel"

    def checked_weights(self, layer):
        """`get_weights` validated: `(variable, granularity)` pairs.

        Raises:
            ValueError: If a returned object is not one of the layer's own
                float variables of rank >= 2.
        """
        own = {id(v) for v in layer.weights}
        result = []
        for weight in self.get_weights(layer):
            if id(weight) not in own:
                raise ValueError(
                    f"{type(self).__name__}.get_weights({layer.name!r}) returned "
                    f"{getattr(weight, 'path', weight)!r}, which is not one of the "
                    "layer's weights; return the layer's own kernel variables."
                )
            if len(weight.shape) < 2:
                raise ValueError(
                    f"{type(self).__name__}.get_weights({layer.name!r}) returned "
                    f"{weight.path!r} of shape {tuple(weight.shape)}; per-channel "
                    "quantization needs a kernel (rank >= 2), not a bias or scale."
                )
            result.append((weight, self.granularity(layer)))
        return result

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfopt")
class KernelQuantizeConfig(QuantizeConfig):
    """Quantizes the `kernel` of convolutions per output channel."""

    def get_weights(self, layer):
        return [layer.kernel]


@keras.saving.register_keras_serializable(package="tfopt")
class DenseQuantizeConfig(KernelQuantizeConfig):
    """Quantizes a Dense/EinsumDense kernel per tensor (see quantizers)."""

    def granularity(self, layer):
        return "per_tensor"


@keras.saving.register_keras_serializable(package="tfopt")
class DepthwiseQuantizeConfig(QuantizeConfig):
    """Quantizes a depthwise kernel per (input channel x multiplier)."""

    def get_weights(self, layer):
        return [layer.kernel]

    def granularity(self, layer):
        return "depthwise"


# Layers whose kernel is quantized per output channel.
KERNEL_LAYERS = (layers.Conv1D, layers.Conv2D)
DEPTHWISE_LAYERS = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
# Layers that do not change values' range: int8 in, same scale out
# (TFLite requires equal scales for AVERAGE_POOL_2D, so it is here too).
PASS_THROUGH = (
    layers.AveragePooling1D, layers.AveragePooling2D,
    layers.MaxPooling1D, layers.MaxPooling2D, layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D, layers.Flatten, layers.Reshape, layers.Dropout,
    layers.ZeroPadding1D, layers.ZeroPadding2D, layers.Cropping1D, layers.Cropping2D,
    layers.SpatialDropout1D, layers.SpatialDropout2D, layers.Identity,
)
# Weightless layers whose output gets its own activation range.
OUTPUT_QUANTIZED = (
    layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Concatenate,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D, layers.ReLU, layers.Activation, layers.Softmax,
    layers.UpSampling2D, layers.Resizing, layers.LeakyReLU,
)
# Activations that TFLite fuses into the preceding convolution.
FUSABLE_ACTIVATIONS = ("relu", "relu6", "linear")


def default_config(layer):
    """tfopt's `QuantizeConfig` for a built-in layer, or None."""
    if isinstance(layer, DEPTHWISE_LAYERS):
        return DepthwiseQuantizeConfig()
    if isinstance(layer, (layers.Dense, layers.EinsumDense)):
        return DenseQuantizeConfig()
    if isinstance(layer, KERNEL_LAYERS):
        return KernelQuantizeConfig()
    return None


def is_fusable_activation(layer):
    """True for a standalone ReLU/ReLU6 that TFLite fuses into a conv."""
    if isinstance(layer, layers.ReLU):
        return layer.negative_slope == 0 and layer.threshold == 0 and layer.max_value in (None, 6, 6.0)
    if isinstance(layer, layers.Activation):
        name = getattr(layer.activation, "__name__", str(layer.activation))
        return name in ("relu", "relu6")
    return False
