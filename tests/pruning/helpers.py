"""Small models and data shared by the pruning tests."""

import keras
import numpy as np

from tfopt import pruning


def cnn(size=8):
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def digits(n=256, size=8, seed=0):
    from tfopt.data import load_digits

    (x, y), _ = load_digits(size, seed=seed)
    return x[:n], y[:n]


def wrapped_weight_sparsity(model):
    return pruning.sparsity_report(model)["total"]["sparsity"]


def mask_values(model):
    return [
        m.numpy().copy()
        for w in pruning.api.pruning_wrappers(model)
        for m in w.masks
    ]


def random_batch(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    return rng.random((n, *shape)).astype("float32")
