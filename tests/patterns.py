"""Tiny models, one per layer pattern users ship (shared by the coverage tests).

Each builder returns a built, untrained Functional model with a 10-way
logits head, small enough to train, prune, quantize and export in seconds.
`PATTERNS` maps a name to `(builder, input kind)`; `sample_inputs(name, n)`
makes matching data (images in [0, 1], or token ids).
"""

import keras
import numpy as np
from keras import layers

VOCAB = 50
SEQ = 12


def ops_nodes():
    """Raw keras.ops nodes: `x + 3`, hard-swish and hard-sigmoid written as ops, a mean."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = x * layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)          # hard-swish as ops
    y = layers.Conv2D(8, 1)(x)
    x = x + y                                                  # ops add (residual)
    gate = layers.ReLU(6.0)(keras.ops.mean(x, axis=(1, 2), keepdims=True) + 3.0) / 6.0
    x = x * gate                                               # hard-sigmoid gate as ops
    x = keras.ops.reshape(x, (-1, 16 * 16 * 8))
    return keras.Model(inputs, layers.Dense(10)(x), name="ops_nodes")


def nested():
    """A nested Sequential backbone and a nested Functional block."""
    stem = keras.Sequential([keras.Input((16, 16, 3)), layers.Conv2D(8, 3, strides=2, padding="same"),
                             layers.BatchNormalization(), layers.ReLU()], name="stem")
    block_in = keras.Input((8, 8, 8))
    block_out = layers.Conv2D(8, 3, padding="same", activation="relu")(block_in)
    block = keras.Model(block_in, layers.Add()([block_in, block_out]), name="block")
    inputs = keras.Input((16, 16, 3))
    x = block(stem(inputs))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="nested")


def squeeze_excite():
    """MobileNetV3-style inverted residual with squeeze-excite (Multiply)."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("hard_swish")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("swish")(x)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(4, 1, activation="relu")(s)
    s = layers.Conv2D(8, 1, activation="hard_sigmoid")(s)
    x = layers.Multiply()([x, s])
    x = layers.Conv2D(8, 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="squeeze_excite")


def preactivation_bn():
    """DenseNet-style: BatchNormalization before the conv, Concatenate growth, Rescaling input."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Rescaling(1.0 / 0.5, offset=-1.0)(inputs)
    x = layers.Conv2D(8, 3, padding="same")(x)
    for _ in range(2):
        y = layers.BatchNormalization()(x)
        y = layers.ReLU()(y)
        y = layers.Conv2D(4, 3, padding="same")(y)
        x = layers.Concatenate()([x, y])
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="preactivation_bn")


def transpose_conv():
    """U-Net-style: Conv2DTranspose, UpSampling2D, Resizing, Concatenate skip, Normalization input."""
    inputs = keras.Input((16, 16, 3))
    norm = layers.Normalization(mean=[0.5, 0.5, 0.5], variance=[0.25, 0.25, 0.25])
    x0 = layers.Conv2D(8, 3, padding="same", activation="relu")(norm(inputs))
    x1 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x0)
    x2 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x1)
    u1 = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x2)
    u1 = layers.Concatenate()([u1, x1])
    u0 = layers.UpSampling2D(2)(layers.Conv2D(8, 1)(u1))
    u0 = layers.Concatenate()([u0, x0])
    x = layers.Resizing(8, 8)(layers.Conv2D(8, 3, padding="same", activation="relu")(u0))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="transpose_conv")


def transformer():
    """ViT-style: patch conv, position embedding, LayerNormalization, MultiHeadAttention, GELU MLP."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 4, strides=4)(inputs)                 # 16 patches of 16 dims
    x = layers.Reshape((16, 16))(x)
    positions = layers.Embedding(16, 16)(keras.ops.arange(16))
    x = x + positions
    y = layers.LayerNormalization(epsilon=1e-6)(x)
    y = layers.MultiHeadAttention(num_heads=2, key_dim=8)(y, y)
    x = layers.Add()([x, y])
    y = layers.LayerNormalization(epsilon=1e-6)(x)
    y = layers.Dense(32, activation="gelu")(y)
    y = layers.Dense(16)(y)
    x = layers.Add()([x, y])
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="transformer")


def text_rnn(cell="lstm"):
    """Embedding + LSTM (or GRU) text classifier."""
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    inputs = keras.Input((SEQ,), dtype="int32")
    x = layers.Embedding(VOCAB, 16)(inputs)
    x = rnn(16)(x)
    return keras.Model(inputs, layers.Dense(10)(x), name=f"text_{cell}")


class LayerScale(layers.Layer):
    """ConvNeXt's per-channel scale (a weight that is only a scale vector)."""

    def __init__(self, init_values=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_values = init_values

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],),
                                     initializer=keras.initializers.Constant(self.init_values))

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values}


def convnext_block():
    """ConvNeXt-style block: depthwise 7x7, LayerNormalization, MLP (GELU), Keras's LayerScale, residual."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 4, strides=4)(inputs)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    y = layers.DepthwiseConv2D(7, padding="same")(x)
    y = layers.LayerNormalization(epsilon=1e-6)(y)
    y = layers.Dense(64, activation="gelu")(y)
    y = layers.Dense(16)(y)
    y = _keras_layer_scale()(y)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="convnext_block")


def _keras_layer_scale():
    # The LayerScale Keras's own ConvNeXt uses, so the tests meet the real class.
    from keras.src.applications.convnext import LayerScale as KerasLayerScale

    return KerasLayerScale(1e-6, 16)


PATTERNS = {
    "ops_nodes": (ops_nodes, "image"),
    "nested": (nested, "image"),
    "squeeze_excite": (squeeze_excite, "image"),
    "preactivation_bn": (preactivation_bn, "image"),
    "transpose_conv": (transpose_conv, "image"),
    "transformer": (transformer, "image"),
    "text_lstm": (lambda: text_rnn("lstm"), "tokens"),
    "text_gru": (lambda: text_rnn("gru"), "tokens"),
    "convnext_block": (convnext_block, "image"),
}


def sample_inputs(name, n=32, seed=0):
    """Inputs for pattern `name`: images in [0, 1] or token ids."""
    rng = np.random.default_rng(seed)
    if PATTERNS[name][1] == "tokens":
        return rng.integers(0, VOCAB, size=(n, SEQ)).astype("int32")
    return rng.uniform(0.0, 1.0, size=(n, 16, 16, 3)).astype("float32")


def sample_task(name, n=64, seed=0):
    """A learnable 10-class task for pattern `name`: `(x, y)`."""
    x = sample_inputs(name, n, seed)
    if PATTERNS[name][1] == "tokens":
        y = (x[:, :3].sum(axis=1) % 10).astype("int32")
    else:
        y = (np.floor(x[..., 0].mean(axis=(1, 2)) * 10 * 3) % 10).astype("int32")
    return x, y
