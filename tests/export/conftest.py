"""Models and data shared by the export tests (trained once per session)."""

import keras
import numpy as np
import pytest

from tfopt import pruning
from tfopt.data import load_digits
from tests.pruning.helpers import cnn
from tests.pruning.helpers import compile_model


@pytest.fixture(scope="session")
def digits8():
    """`(x, y), (x_test, y_test)`: the 8x8 digits (1,437 train, 360 test)."""
    return load_digits(8)


@pytest.fixture(scope="session")
def trained_cnn(digits8):
    """A small CNN trained for a few epochs (about 90% test accuracy)."""
    (x, y), _ = digits8
    keras.utils.set_random_seed(7)
    model = compile_model(cnn())
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def pruned_cnn(digits8):
    """The same CNN pruned to 80% inside fit and stripped (exact zeros)."""
    (x, y), _ = digits8
    keras.utils.set_random_seed(7)
    model = compile_model(pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.ConstantSparsity(0.8, 0, frequency=1)))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])
    return pruning.strip_pruning(model)


def kernels(weights):
    """The Conv/Dense kernels among an export's weights (rank 2 and up)."""
    return [w for w in weights if len(w["shape"]) >= 2]


def representative(digits8, n=200):
    (x, _), _ = digits8
    return np.ascontiguousarray(x[:n])
