"""The one model-kind check and nested-model flattening (tfopt.graph)."""

import keras
import numpy as np
import pytest

from tfopt import graph


def _nested():
    block = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same", name="conv"),
         keras.layers.ReLU(name="relu")], name="block")
    inputs = keras.Input((8, 8, 3))
    x = block(inputs)
    x = block(x[..., :3] * 0.5 + 1.0)   # the same nested model twice, raw ops between
    x = keras.layers.Conv2D(5, 1, name="conv_1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_flatten_nested_inlines_and_shares_layers():
    model = _nested()
    flat = graph.flatten_nested(model)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    # The nested model used twice becomes one shared Conv2D, not two.
    convs = [layer for layer in flat.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 2 and len({layer.name for layer in flat.layers}) == len(flat.layers)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(flat.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # Fresh layers: training the flat copy leaves the original alone.
    before = model.get_weights()
    convs[0].kernel.assign(convs[0].kernel * 0.0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_flatten_nested_returns_flat_models_as_they_are():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert graph.flatten_nested(model) is model


def test_one_error_type_for_every_wrong_model():
    class Sub(keras.Model):
        def call(self, x):
            return x

    for bad, match in ((keras.layers.Dense(2), "takes a keras.Model"), (Sub(), "subclassed"),
                       (keras.Sequential([keras.layers.Dense(2)]), "not built")):
        with pytest.raises(graph.UnsupportedModelError, match=match):
            graph.check_graph_model(bad, "quantize_model")
    assert issubclass(graph.UnsupportedModelError, TypeError)
    assert issubclass(graph.UnsupportedModelError, ValueError)
