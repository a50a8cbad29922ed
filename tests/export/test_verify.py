"""verify and evaluate_tflite: numbers consistent with each other and Keras."""

import numpy as np
import pytest

from tfopt import export
from tests.export.conftest import representative


def test_verify_and_evaluate_agree(trained_cnn, digits8, tmp_path):
    _, (x_test, y_test) = digits8
    path = tmp_path / "int8.tflite"
    result = export.to_tflite(trained_cnn, str(path), quantization="int8",
                              representative_data=representative(digits8))
    report = export.verify(result, trained_cnn, x_test, y_test, batch_size=64)
    assert set(report) == {"n", "max_abs_diff", "cosine_similarity", "top1_agreement",
                           "keras_accuracy", "tflite_accuracy"}
    assert report["n"] == len(x_test)
    keras_out = trained_cnn.predict(x_test, verbose=0)
    keras_accuracy = float(np.mean(keras_out.argmax(1) == y_test))
    assert report["keras_accuracy"] == pytest.approx(keras_accuracy)
    # the same number by every route: object or path, any batch size,
    # one-hot labels, precomputed Keras outputs
    accuracy = report["tflite_accuracy"]
    assert export.evaluate_tflite(result, x_test, y_test) == pytest.approx(accuracy)
    assert export.evaluate_tflite(str(path), x_test, y_test, batch_size=7) == pytest.approx(accuracy)
    assert export.evaluate_tflite(path, x_test, np.eye(10)[y_test]) == pytest.approx(accuracy)
    again = export.verify(str(path), keras_out, x_test, y_test, batch_size=1000)
    for key in report:
        assert again[key] == pytest.approx(report[key], abs=1e-6)
    assert 0.99 < report["cosine_similarity"] <= 1.0 + 1e-9
    # int8 clips test examples outside the 200 calibration examples' range,
    # but stays well inside the logits' range
    assert 0 < report["max_abs_diff"] < 0.25 * float(np.abs(keras_out).max())
    without_labels = export.verify(result, keras_out, x_test)
    assert "tflite_accuracy" not in without_labels


def test_verify_dequantizes_int8_io(trained_cnn, digits8):
    _, (x_test, y_test) = digits8
    float_io = export.to_tflite(trained_cnn, quantization="int8",
                                representative_data=representative(digits8))
    int8_io = export.to_tflite(trained_cnn, quantization="int8",
                               representative_data=representative(digits8),
                               int8_io=True)
    a = export.verify(float_io, trained_cnn, x_test, y_test)
    b = export.verify(int8_io, trained_cnn, x_test, y_test)
    # Same integer graph; only the io conversion moves: on the Keras scale
    # the outputs differ by at most a rounding step.
    assert b["max_abs_diff"] < a["max_abs_diff"] + 2 * int8_io.outputs[0]["quantization"][0]
    assert abs(a["tflite_accuracy"] - b["tflite_accuracy"]) <= 0.01


def test_verify_rejects_inputs_that_do_not_fit(trained_cnn, digits8):
    _, (x_test, y_test) = digits8
    result = export.to_tflite(trained_cnn)
    with pytest.raises(ValueError, match=r"examples of shape \(16, 16, 1\)"):
        export.verify(result, trained_cnn, np.zeros((2, 16, 16, 1), "float32"))
    with pytest.raises(ValueError, match="3 labels for 360 examples"):
        export.evaluate_tflite(result, x_test, y_test[:3])
    with pytest.raises(ValueError, match="not the same model"):
        export.verify(result, np.zeros((360, 3)), x_test)
