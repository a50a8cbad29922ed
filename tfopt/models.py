"""Small reference models shared by examples, benchmarks and tests."""

import keras


def digits_cnn(image_size=8):
    """The Conv(12)+Dense digits CNN of tfmot's pruning guide (logits out).

    Args:
        image_size: Side of the square single-channel input (8, 16 or 28).

    Returns:
        An uncompiled `keras.Sequential`.

    Example:

    >>> digits_cnn(16).output_shape
    (None, 10)
    """
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            keras.layers.Conv2D(12, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ],
        name=f"digits_cnn_{image_size}",
    )


def digits_mlp():
    """A non-convolutional model: an MLP 128-64-10 on the 8x8 digits."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="digits_mlp",
    )


def digits_mobilenet(image_size=28):
    """A small MobileNetV2-style net (inverted residuals, BN, ReLU6).

    Conv-BN-ReLU6 stem, four inverted-residual blocks (1x1 expand,
    3x3 depthwise, 1x1 project, residual Add where shapes allow), global
    average pooling and a Dense logits head: the layer mix of MobileNetV2 at
    a size that trains on the digits in seconds.

    Args:
        image_size: Side of the square single-channel input.

    Returns:
        An uncompiled Functional `keras.Model`.
    """
    from keras import layers

    def conv_bn(x, filters, kernel=1, strides=1, relu=True):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x) if relu else x

    def inverted_residual(x, filters, strides, expansion=4):
        channels = x.shape[-1]
        y = conv_bn(x, channels * expansion)
        y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(y)
        y = layers.ReLU(6.0)(layers.BatchNormalization()(y))
        y = conv_bn(y, filters, relu=False)
        return layers.Add()([x, y]) if strides == 1 and channels == filters else y

    inputs = keras.Input((image_size, image_size, 1))
    x = conv_bn(inputs, 16, kernel=3, strides=2)
    for filters, strides in ((24, 2), (24, 1), (32, 2), (32, 1)):
        x = inverted_residual(x, filters, strides)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name=f"digits_mobilenet_{image_size}")


def digits_teacher(image_size=16):
    """A larger digits CNN to distil from: Conv(32)-Conv(64)-pool-Dense(128).

    About 52x the parameters of `digits_cnn` at 16x16 (59x at 28x28), with
    dropout; it ends in a softmax, as many trained Keras classifiers do, so
    distilling from it exercises the head detection (`digits_cnn` students
    end in logits).

    Args:
        image_size: Side of the square single-channel input.

    Returns:
        An uncompiled `keras.Sequential`.
    """
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name=f"digits_teacher_{image_size}",
    )


def compile_classifier(model, learning_rate=1e-3):
    """Compiles a classifier: Adam, sparse CE matching its head, accuracy.

    The cross-entropy takes probabilities for a model whose last layer is a
    softmax, logits otherwise (subclassed models included).

    Returns:
        The same model, compiled.
    """
    from tfopt.distillation.heads import detect_head

    try:
        from_logits = detect_head(model) == "logits"
    except ValueError:
        from_logits = True
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    return model
