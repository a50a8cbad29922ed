"""The fast mask-update paths stay exact and compile where they must."""

import keras
import numpy as np
import tensorflow as tf

from tfopt import pruning
from tfopt.pruning import wrapper


def test_grow_path_is_used_outside_xla_only():
    @tf.function
    def graph():
        return tf.constant(wrapper._dynamic_shapes_allowed())

    @tf.function(jit_compile=True)
    def xla():
        return tf.constant(wrapper._dynamic_shapes_allowed())

    assert bool(graph()) and not bool(xla())


def test_large_weight_update_compiles_in_an_xla_train_step(monkeypatch):
    # Every weight takes the large-weight path; under jit_compile=True it
    # must not trace the grow path's data-dependent shapes.
    monkeypatch.setattr(wrapper, "WARM_START_MIN_SIZE", 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(12), keras.layers.Dense(4)])
    model = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.PolynomialDecay(0.0, 0.6, 0, 9, frequency=1))
    model.compile("adam", "mse", jit_compile=True)
    rng = np.random.default_rng(0)
    model.fit(rng.random((80, 16)), rng.random((80, 4)), batch_size=8, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])
    for row in pruning.sparsity_report(model)["layers"]:
        assert row["zeros"] == row["size"] - round(row["size"] * 0.4), row
