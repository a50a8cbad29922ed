"""The model zoo: the architectures users ship, small enough to train in minutes.

Keras applications with `weights=None` (nothing is downloaded) at 32x32
inputs, and hand-built nets (ViT-tiny, BERT-tiny-like encoder, LSTM/GRU
text classifiers, Conv1D keyword spotting, U-Net, a two-output detection
head), each with a small task it can learn from: upsampled digits for
vision, synthetic token and spectrogram tasks otherwise. The `zoo`
benchmark suite (`tfopt bench --suite zoo`, `benchmarks/zoo.py`) runs every
technique on each of them.

Example:

```python
model = tfopt.zoo.build("vit_tiny")
(x, y), (x_test, y_test) = tfopt.zoo.task("vit_tiny", n_train=256)
tfopt.zoo.compile_model(model)
model.fit(x, y, epochs=1)
```
"""

import dataclasses
from typing import Callable

import keras
import numpy as np
from keras import layers

# No tfopt import at module level: benchmarks/tfmot_zoo.py executes this file
# with `keras` bound to tf_keras, where tfopt's own modules cannot import.

IMAGE_SIZE = 32
VOCAB = 1000
SEQ_LEN = 32
KEYWORDS = 10  # token ids 1..10 are the keywords of the text task
KWS_FRAMES, KWS_BANDS = 49, 16


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A zoo entry.

    Attributes:
        name: Its key in `MODELS`.
        build: `() -> keras.Model`, uncompiled, random weights.
        kind: The task kind: `"image"`, `"tokens"`, `"audio"`,
            `"segmentation"` or `"detection"`.
        description: One line for reports.
        pixel_scale: What `task` multiplies its [0, 1] images by: 255 for
            the applications whose built-in preprocessing (Rescaling,
            Normalization) expects 0-255 pixels, as they do with
            `weights="imagenet"`; fed [0, 1] they squeeze the digits into a
            1/255 range below BatchNormalization's epsilon.
    """

    name: str
    build: Callable
    kind: str
    description: str
    pixel_scale: float = 1.0


# -- Keras applications ---------------------------------------------------------


def _application(constructor):
    def build():
        return constructor(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), weights=None,
                           classes=10, classifier_activation=None)

    return build


# -- hand-built nets ------------------------------------------------------------


def _encoder_block(x, dim, heads, mlp_dim, name):
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    y = layers.MultiHeadAttention(heads, dim // heads, name=f"{name}_mha")(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    y = layers.Dense(mlp_dim, activation="gelu", name=f"{name}_mlp1")(y)
    y = layers.Dense(dim, name=f"{name}_mlp2")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


def _add_positions(x, length, dim, name):
    """`x + Embedding(length, dim)(arange(length))`: a learned position embedding.

    Built from a stock Embedding layer and raw ops nodes (as Keras's own
    examples write it), so every technique meets standard layers; on
    tf_keras (the tfmot side-by-side) the same graph uses `tf.range`.
    """
    if hasattr(keras, "ops"):
        ids = keras.ops.arange(length)
    else:  # tf_keras
        import tensorflow as tf

        ids = tf.range(length)
    return x + layers.Embedding(length, dim, name=name)(ids)


def vit_tiny(dim=32, depth=2, heads=2, patch=4):
    """ViT-tiny: patch conv, position embedding, LayerNormalization, MHA, GELU MLP."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(inputs)
    patches = (IMAGE_SIZE // patch) ** 2
    x = layers.Reshape((patches, dim))(x)
    x = _add_positions(x, patches, dim, "pos_embed")
    for i in range(depth):
        x = _encoder_block(x, dim, heads, 2 * dim, f"block{i}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(10, name="head")(x), name="vit_tiny")


def bert_tiny(dim=32, depth=2, heads=2):
    """BERT-tiny-like encoder: token + position embeddings, MHA, LN, pooled head."""
    inputs = keras.Input((SEQ_LEN,), dtype="int32")
    x = layers.Embedding(VOCAB, dim, name="token_embed")(inputs)
    x = _add_positions(x, SEQ_LEN, dim, "pos_embed")
    x = layers.LayerNormalization(epsilon=1e-6, name="embed_ln")(x)
    for i in range(depth):
        x = _encoder_block(x, dim, heads, 2 * dim, f"block{i}")
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(dim, activation="tanh", name="pooler")(x)
    return keras.Model(inputs, layers.Dense(10, name="head")(x), name="bert_tiny")


def rnn_text(cell="lstm", units=32):
    """Embedding + LSTM/GRU text classifier."""
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    inputs = keras.Input((SEQ_LEN,), dtype="int32")
    x = layers.Embedding(VOCAB, 32)(inputs)
    x = rnn(units)(x)
    return keras.Model(inputs, layers.Dense(10)(x), name=f"{cell}_text")


def kws_conv1d():
    """Keyword spotting: Conv1D + BN + ReLU stack over spectrogram frames."""
    inputs = keras.Input((KWS_FRAMES, KWS_BANDS))
    x = inputs
    for filters, stride in ((32, 1), (32, 2), (64, 1), (64, 2)):
        x = layers.Conv1D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="kws_conv1d")


def unet():
    """U-Net: Conv2DTranspose and UpSampling2D decoders, Concatenate skips, Resizing; 2-class mask."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    c1 = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    p1 = layers.MaxPooling2D()(c1)                                     # 16
    c2 = layers.Conv2D(16, 3, padding="same", activation="relu")(p1)
    p2 = layers.MaxPooling2D()(c2)                                     # 8
    b = layers.Conv2D(32, 3, padding="same", activation="relu")(p2)
    u2 = layers.Conv2DTranspose(16, 2, strides=2, padding="same")(b)   # 16
    d2 = layers.Conv2D(16, 3, padding="same", activation="relu")(layers.Concatenate()([u2, c2]))
    u1 = layers.UpSampling2D(interpolation="bilinear")(d2)             # 32
    d1 = layers.Conv2D(8, 3, padding="same", activation="relu")(layers.Concatenate()([u1, c1]))
    side = layers.Resizing(IMAGE_SIZE, IMAGE_SIZE, interpolation="bilinear")(b)
    side = layers.Conv2D(8, 1)(side)
    x = layers.Concatenate()([d1, side])
    return keras.Model(inputs, layers.Conv2D(2, 1, name="mask")(x), name="unet")


def detection_head():
    """Detection-style: a conv backbone, class logits and box (4 numbers) outputs."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    classes = layers.Dense(10, name="classes")(x)
    boxes = layers.Dense(4, activation="sigmoid", name="boxes")(x)
    return keras.Model(inputs, [classes, boxes], name="detection_head")


_A = keras.applications
MODELS = {
    entry.name: entry for entry in [
        ZooModel("mobilenet_v2", _application(_A.MobileNetV2), "image", "MobileNetV2 1.0, 32x32"),
        ZooModel("mobilenet_v3_small", _application(_A.MobileNetV3Small), "image",
                 "MobileNetV3Small (hard-swish, SE, Rescaling), 32x32", 255.0),
        ZooModel("mobilenet_v3_large", _application(_A.MobileNetV3Large), "image",
                 "MobileNetV3Large, 32x32", 255.0),
        ZooModel("efficientnet_b0", _application(_A.EfficientNetB0), "image",
                 "EfficientNetB0 (Normalization, swish, SE), 32x32", 255.0),
        ZooModel("efficientnet_v2_b0", _application(_A.EfficientNetV2B0), "image",
                 "EfficientNetV2B0, 32x32", 255.0),
        ZooModel("resnet50", _application(_A.ResNet50), "image", "ResNet50, 32x32"),
        ZooModel("densenet121", _application(_A.DenseNet121), "image",
                 "DenseNet121 (concatenations, pre-activation BN), 32x32"),
        ZooModel("convnext_tiny", _application(_A.ConvNeXtTiny), "image",
                 "ConvNeXtTiny (LayerNormalization, LayerScale, GELU), 32x32", 255.0),
        ZooModel("nasnet_mobile", _application(_A.NASNetMobile), "image", "NASNetMobile, 32x32"),
        ZooModel("vit_tiny", vit_tiny, "image", "ViT-tiny: 4x4 patches, dim 32, 2 blocks, 32x32"),
        ZooModel("bert_tiny", bert_tiny, "tokens",
                 f"BERT-tiny-like encoder: dim 32, 2 blocks, {SEQ_LEN} tokens"),
        ZooModel("lstm_text", lambda: rnn_text("lstm"), "tokens", "Embedding + LSTM(32)"),
        ZooModel("gru_text", lambda: rnn_text("gru"), "tokens", "Embedding + GRU(32)"),
        ZooModel("kws_conv1d", kws_conv1d, "audio",
                 f"Conv1D keyword spotting on {KWS_FRAMES}x{KWS_BANDS} spectrograms"),
        ZooModel("unet", unet, "segmentation",
                 "U-Net (Conv2DTranspose, UpSampling2D, Concatenate, Resizing), 32x32 mask"),
        ZooModel("detection_head", detection_head, "detection",
                 "Conv backbone with class and box outputs, 32x32"),
    ]
}


def names():
    """The zoo's model names, in report order."""
    return list(MODELS)


def _entry(name):
    if name not in MODELS:
        raise ValueError(f"Unknown zoo model {name!r}; choose from {', '.join(MODELS)}.")
    return MODELS[name]


def build(name, seed=0, bn_momentum=None):
    """Builds zoo model `name` with random weights (seeded).

    Args:
        name: One of `names()`.
        seed: Seed for the initial weights.
        bn_momentum: If given, the momentum of every BatchNormalization
            layer's moving statistics (e.g. 0.9). The applications use
            0.99-0.9997, whose moving statistics are still near their
            initial values after a few hundred training steps, so a briefly
            trained model scores near chance in inference mode; see
            `BUDGETS`.

    Returns:
        An uncompiled Functional `keras.Model`.

    Raises:
        ValueError: For an unknown name.

    Example:

    >>> tfopt.zoo.build("kws_conv1d").output_shape
    (None, 10)
    """
    entry = _entry(name)
    if bn_momentum is not None and not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}.")
    keras.utils.set_random_seed(seed)
    model = entry.build()
    if bn_momentum is not None:
        from tfopt import _compat

        for layer in _compat.all_sublayers(model):
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    return model


# -- tasks ----------------------------------------------------------------------


def _digits(n_train, n_test):
    from tfopt.data import load_digits

    (x, y), (x_test, y_test) = load_digits(8)

    def upsample(images, count):
        images = keras.ops.image.resize(images[:count], (IMAGE_SIZE, IMAGE_SIZE),
                                        interpolation="bilinear")
        return np.tile(keras.ops.convert_to_numpy(images), (1, 1, 1, 3)).astype("float32")

    return upsample(x, n_train), y[:n_train], upsample(x_test, n_test), y_test[:n_test]


def _tokens(n, rng):
    x = rng.integers(KEYWORDS + 1, VOCAB, size=(n, SEQ_LEN))
    y = rng.integers(0, 10, size=n)
    x[np.arange(n), rng.integers(0, SEQ_LEN, size=n)] = y + 1  # one keyword per sequence
    return x.astype("int32"), y.astype("int32")


def _audio(n, rng):
    y = rng.integers(0, 10, size=n)
    x = rng.normal(0.0, 0.5, size=(n, KWS_FRAMES, KWS_BANDS))
    t = np.arange(KWS_FRAMES)
    for i, label in enumerate(y):  # each keyword: a tone in its band, its own rhythm
        x[i, :, label + 3] += 2.0 * (1 + np.sin(t * (label + 1) / 6.0))
    return x.astype("float32"), y.astype("int32")


def _box(images):
    mask = images[..., 0] > 0.3
    boxes = np.zeros((len(images), 4), "float32")
    for i, m in enumerate(mask):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(rows):
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes / IMAGE_SIZE


def task(name, n_train=384, n_test=128, seed=0):
    """A small task for zoo model `name`: `(x, y), (x_test, y_test)`.

    Vision: the scikit-learn digits upsampled to 32x32 and tiled to 3
    channels (classes 0-9), pixels in [0, 1], or [0, 255] for the models
    whose `pixel_scale` is 255 (built-in 0-255 preprocessing). Segmentation: the same images, `y` the 0/1
    mask of pixels above 0.3. Detection: `y = (classes, boxes)` with the
    digit's bounding box `(top, left, bottom, right) / 32`. Tokens: random
    ids with one keyword (ids 1-10) at a random place, `y` the keyword.
    Audio: noise spectrograms with a class-specific tone band.

    Args:
        name: One of `names()`.
        n_train: Training examples (at most 1,437 for the digits tasks).
        n_test: Test examples (at most 360 for the digits tasks).
        seed: Seed of the synthetic tasks.

    Returns:
        `(x, y), (x_test, y_test)` as numpy arrays (`y` a tuple for
        detection).

    Raises:
        ValueError: For an unknown name.
    """
    entry = _entry(name)
    kind = entry.kind
    rng = np.random.default_rng(seed)
    if kind == "tokens":
        return _tokens(n_train, rng), _tokens(n_test, rng)
    if kind == "audio":
        return _audio(n_train, rng), _audio(n_test, rng)
    x, y, x_test, y_test = _digits(n_train, n_test)
    x, x_test = x * entry.pixel_scale, x_test * entry.pixel_scale
    if kind == "segmentation":
        return ((x, (x[..., 0] > 0.3).astype("int32")),
                (x_test, (x_test[..., 0] > 0.3).astype("int32")))
    if kind == "detection":
        return (x, (y, _box(x))), (x_test, (y_test, _box(x_test)))
    return (x, y), (x_test, y_test)


def compile_model(model, learning_rate=1e-3):
    """Compiles a zoo model (or its pruned/QAT copy) for its task.

    Classification and segmentation heads: sparse cross-entropy on logits
    with accuracy; the detection head adds a mean-squared box loss.

    Args:
        model: A model with a zoo model's outputs.
        learning_rate: Adam's learning rate.

    Returns:
        The same model, compiled.
    """
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if len(model.outputs) == 2:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=[ce, keras.losses.MeanSquaredError()])
    else:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=ce,
                      metrics=["accuracy"])
    return model
