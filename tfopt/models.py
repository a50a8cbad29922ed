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


def compile_classifier(model, learning_rate=1e-3):
    """Compiles a logits classifier: Adam, sparse CE from logits, accuracy.

    Returns:
        The same model, compiled.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
