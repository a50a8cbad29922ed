"""InceptionResNetV2's residual scaling (`CustomScaleLayer`, Keras-internal): channel
pruning couples its inputs like Add with exact surgery; QAT runs its MUL and ADD int8
and the file matches the QAT model."""

import keras
import numpy as np
import pytest

from tfopt import export
from tfopt import pruning
from tfopt import quantization
from tfopt.pruning.structured import ChannelMaskUpdater

L = keras.layers


def _block():
    """A stem conv, two branches concatenated and projected, residual `x + 0.17 * branch`."""
    custom_scale = pytest.importorskip("keras.src.applications.inception_resnet_v2").CustomScaleLayer
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    a = L.Conv2D(8, 1, activation="relu", name="branch_a")(x)
    b = L.Conv2D(8, 3, padding="same", activation="relu", name="branch_b")(x)
    up = L.Conv2D(16, 1, name="up")(L.Concatenate()([a, b]))
    x = L.Activation("relu")(custom_scale(0.17, name="scale")([x, up]))
    outputs = L.Dense(10, name="head")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_custom_scale_layer_couples_and_surgery_is_exact(tmp_path):
    model = _block()
    x = np.random.default_rng(0).uniform(0, 1, (8, 12, 12, 3)).astype("float32")
    groups = {row["layer"] for row in pruning.prunable_layers(model)}
    # The residual couples the stem with the projection: one group, named by its first layer.
    assert "stem" in groups and "up" not in groups and {"branch_a", "branch_b"} <= groups

    masked = pruning.prune_channels_gradually(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
    ChannelMaskUpdater(masked).update(0.5)
    stripped = pruning.strip_pruning(masked)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    one_shot = pruning.prune_channels(model, 0.5)
    np.testing.assert_allclose(one_shot.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    small = {layer.name: layer for layer in one_shot.layers}
    assert small["stem"].filters == small["up"].filters == 8
    assert one_shot.count_params() < model.count_params()

    exported = export.to_tflite(one_shot, str(tmp_path / "small.tflite"), batch_size=None)
    report = export.verify(exported, one_shot, x)
    assert report["max_abs_diff"] < 1e-4


def test_custom_scale_layer_runs_int8_after_qat_and_the_file_matches(tmp_path):
    model = _block()
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 10, 64)
    qat = quantization.quantize_model(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert any(type(layer).__name__ == "QuantizedScaledResidual" for layer in qat.layers)

    exported = export.to_tflite(qat, str(tmp_path / "qat.tflite"), quantization="int8", batch_size=1)
    precision = export.op_precision(exported.content)
    # main's QAT left the layer's MUL and ADD float (only its output had a range).
    assert precision["float_compute"] == {} and precision["float_other"] == {}, precision
    assert precision["int8_share"] == 1.0
    keras_logits = qat.predict(x[:16], verbose=0)
    report = export.verify(exported, qat, x[:16])
    assert report["max_abs_diff"] <= 0.02 * float(keras_logits.max() - keras_logits.min())

    path = tmp_path / "qat.keras"
    qat.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(x[:4], verbose=0), qat.predict(x[:4], verbose=0), atol=1e-6)
