"""Tiny problems for the tuning tests: 8x8 digits, a small MLP, short timing."""

import keras
import pytest

from tfopt import data
from tfopt import tuning

# Latency barely matters here: a few invokes keep each trial short.
QUICK_LATENCY = {"warmup": 1, "runs": 5, "min_seconds": 0.0}


def tiny_mlp(width=1.0):
    """Flatten-Dense(16w)-Dense(10) on 8x8 digits: 16 inputs rows divide by 4."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(max(4, int(16 * width)), activation="relu"),
            keras.layers.Dense(10),
        ],
        name=f"tiny_mlp_w{width:g}",
    )


def tiny_hypermodel(space=None, **kwargs):
    base = {"epochs": 1, "learning_rate": 1e-2}
    base.update(space or {})
    return tuning.CompressionHyperModel(tiny_mlp, space=base, latency=QUICK_LATENCY, **kwargs)


@pytest.fixture(scope="session")
def digits_small():
    """256 training and 96 validation examples of the 8x8 digits."""
    (x, y), (x_val, y_val) = data.load_digits(8)
    return (x[:256], y[:256]), (x_val[:96], y_val[:96])
