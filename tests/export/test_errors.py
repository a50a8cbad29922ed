"""Each bad argument to to_tflite fails early with a clear message."""

import keras
import numpy as np
import pytest

from tfopt import export


def test_unknown_quantization(trained_cnn):
    with pytest.raises(ValueError, match="Unknown quantization='int4'.*'int8'"):
        export.to_tflite(trained_cnn, quantization="int4")


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_calibrated_modes_need_representative_data(trained_cnn, mode):
    with pytest.raises(ValueError, match="needs representative_data"):
        export.to_tflite(trained_cnn, quantization=mode)


def test_representative_data_of_the_wrong_shape(trained_cnn):
    with pytest.raises(ValueError, match=r"examples of shape \(16, 16, 1\).*\(8, 8, 1\)"):
        export.to_tflite(trained_cnn, quantization="int8",
                         representative_data=np.zeros((10, 16, 16, 1), "float32"))
    with pytest.raises(ValueError, match=r"examples of shape \(8, 8\)"):
        export.to_tflite(trained_cnn, quantization="int8",
                         representative_data=np.zeros((10, 8, 8), "float32"))
    # Lists are accepted (of batches or of examples), but checked the same way.
    with pytest.raises(ValueError, match=r"examples of shape \(\)"):
        export.to_tflite(trained_cnn, quantization="int8",
                         representative_data=[[0.0] * 64])
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        export.to_tflite(trained_cnn, quantization="int8", representative_data="x.npy")


def test_int8_io_needs_int8(trained_cnn):
    for mode in (None, "dynamic", "float16", "int16x8"):
        with pytest.raises(ValueError, match="int8_io=True needs quantization='int8'"):
            export.to_tflite(trained_cnn, quantization=mode, int8_io=True,
                             representative_data=np.zeros((4, 8, 8, 1), "float32"))


def test_bad_batch_size(trained_cnn):
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            export.to_tflite(trained_cnn, batch_size=bad)


def test_unbuilt_and_undefined_models():
    with pytest.raises(TypeError, match="takes a keras.Model"):
        export.to_tflite(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="not built"):
        export.to_tflite(keras.Sequential([keras.layers.Dense(2)]))
    inputs = keras.Input((None, 3))
    ragged = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match=r"undefined dimensions"):
        export.to_tflite(ragged)


def test_subclassed_model_still_exports():
    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Classifier()
    x = np.random.default_rng(0).random((5, 4)).astype("float32")
    model(x)
    result = export.to_tflite(model, batch_size=5)
    assert result.inputs[0]["shape"] == [5, 4]
    report = export.verify(result, model, x)
    assert report["max_abs_diff"] < 1e-5


def test_two_input_model_given_one_array_is_told_the_forms():
    # (Two-input calibration and verification: tests/export/test_multi_io.py.)
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    result = export.to_tflite(model, batch_size=2)
    assert sorted(row["shape"] for row in result.inputs) == [[2, 3], [2, 4]]
    with pytest.raises(ValueError, match=r"one array where the model takes 2 inputs \['a', 'b'\]"):
        export.to_tflite(model, quantization="int8",
                         representative_data=np.zeros((4, 4), "float32"))
    with pytest.raises(ValueError, match="one array where the model takes 2 inputs"):
        export.verify(result, model, np.zeros((2, 4), "float32"))
