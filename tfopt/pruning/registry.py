"""Which weights of which layer get pruned.

Built-in layers are looked up by type; any other layer can opt in through
the `PrunableLayer` protocol. Layers that hold weights which should not be
pruned (normalization statistics, biases-only layers) are listed as
supported-without-pruning, like tfmot's registry does, so a CNN with
BatchNormalization wraps without ceremony.
"""

import keras
from keras import layers

_KERNEL_LAYERS = (
    layers.Dense,
    layers.EinsumDense,
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
    layers.DepthwiseConv1D,
    layers.DepthwiseConv2D,
)
_SEPARABLE_LAYERS = (layers.SeparableConv1D, layers.SeparableConv2D)
_RNN_LAYERS = (layers.SimpleRNN, layers.LSTM, layers.GRU)

# Weighted layers that are supported but have nothing worth pruning.
_NOT_PRUNED = (
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.GroupNormalization,
    layers.UnitNormalization,
    layers.Normalization,
    layers.PReLU,
    layers.RMSNormalization,
)


class PrunableLayer:
    """Protocol for custom layers: say which weights to prune.

    A layer is prunable by tfopt if it defines `get_prunable_weights()`
    returning a list of its own `keras.Variable`s (usually kernels, never
    biases). Subclassing this class is optional; the method is what counts.

    Example:

    ```python
    class MyDense(keras.layers.Layer, tfopt.pruning.PrunableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 4))
        def call(self, x):
            return x @ self.w
        def get_prunable_weights(self):
            return [self.w]
    ```
    """

    def get_prunable_weights(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_prunable_weights()."
        )


def prunable_weights(layer):
    """The variables of a built `layer` that pruning masks.

    Args:
        layer: A built Keras layer.

    Returns:
        A list of variables (empty for layers that are supported but not
        pruned, and for weightless layers), or None when the layer holds
        weights tfopt does not know how to prune.
    """
    custom = getattr(layer, "get_prunable_weights", None)
    if callable(custom):
        weights = list(custom())
        own = {id(v) for v in layer.weights}
        for weight in weights:
            if id(weight) not in own:
                raise ValueError(
                    f"{layer.name}.get_prunable_weights() returned "
                    f"{getattr(weight, 'path', weight)!r}, which is not one of "
                    "the layer's own weights."
                )
        return weights
    if isinstance(layer, _KERNEL_LAYERS):
        return [layer.kernel]
    if isinstance(layer, _SEPARABLE_LAYERS):
        return [layer.depthwise_kernel, layer.pointwise_kernel]
    if isinstance(layer, layers.Embedding):
        return [layer.embeddings]
    if isinstance(layer, _RNN_LAYERS):
        return [layer.cell.kernel, layer.cell.recurrent_kernel]
    if isinstance(layer, layers.MultiHeadAttention):
        return [
            sub.kernel
            for sub in (
                layer._query_dense,
                layer._key_dense,
                layer._value_dense,
                layer._output_dense,
            )
        ]
    if isinstance(layer, _NOT_PRUNED) or not layer.weights:
        return []
    return None


# Kernels whose axis -2 is the input channel that a dot product reduces
# over, where N:M groups belong (as tfmot allows them).
_M_BY_N_LAYERS = (
    layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D,
    layers.SimpleRNN, layers.LSTM, layers.GRU,
)


def supports_m_by_n(layer):
    """Whether N:M sparsity applies to `layer` (Dense, Conv1D/2D/3D, RNNs)."""
    transposed = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    return isinstance(layer, _M_BY_N_LAYERS) and not isinstance(layer, transposed)


def is_supported(layer):
    """Whether tfopt can wrap `layer` (built) for pruning."""
    return isinstance(layer, keras.Model) or prunable_weights(layer) is not None
