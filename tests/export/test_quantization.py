"""Every quantization mode on a trained CNN, run in the LiteRT interpreter."""

import numpy as np
import pytest

from tfopt import export
from tests.export.conftest import kernels
from tests.export.conftest import representative


@pytest.fixture(scope="module")
def exports(trained_cnn, digits8):
    rep = representative(digits8)
    return {
        "float": export.to_tflite(trained_cnn),
        "dynamic": export.to_tflite(trained_cnn, quantization="dynamic"),
        "float16": export.to_tflite(trained_cnn, quantization="float16"),
        "int8": export.to_tflite(trained_cnn, quantization="int8",
                                 representative_data=rep),
        "int8_io": export.to_tflite(trained_cnn, quantization="int8",
                                    representative_data=rep, int8_io=True),
        "int16x8": export.to_tflite(trained_cnn, quantization="int16x8",
                                    representative_data=rep),
    }


def test_float_matches_keras(exports, trained_cnn, digits8):
    _, (x_test, y_test) = digits8
    result = exports["float"]
    assert result.quantization is None
    report = export.verify(result, trained_cnn, x_test, y_test)
    assert report["max_abs_diff"] < 1e-5
    assert report["top1_agreement"] == 1.0
    assert all(w["dtype"] == "float32" for w in kernels(result.weights))
    assert result.inputs[0]["dtype"] == "float32"
    assert result.inputs[0]["shape"] == [-1, 8, 8, 1]  # dynamic batch by default
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(result.ops)
    assert result.flex_ops == []


@pytest.mark.parametrize("mode, kernel_dtype", [("dynamic", "float32"),
                                                ("float16", "float16")])
def test_dynamic_and_float16_agree_with_keras(exports, trained_cnn, digits8,
                                              mode, kernel_dtype):
    _, (x_test, y_test) = digits8
    result = exports[mode]
    assert result.quantization == mode
    report = export.verify(result, trained_cnn, x_test, y_test)
    assert report["top1_agreement"] >= 0.95
    assert report["cosine_similarity"] > 0.99
    # The converter keeps tensors under 1,024 elements float in "dynamic"
    # mode, and all of this CNN's are that small.
    assert {w["dtype"] for w in kernels(result.weights)} == {kernel_dtype}
    if mode == "float16":
        assert "DEQUANTIZE" in result.ops
        assert result.size_bytes < exports["float"].size_bytes


@pytest.mark.parametrize("mode", ["int8", "int8_io"])
def test_int8_is_integer_and_accurate(exports, trained_cnn, digits8, mode):
    _, (x_test, y_test) = digits8
    result = exports[mode]
    assert result.quantization == "int8"
    assert {w["dtype"] for w in kernels(result.weights)} == {"int8"}
    biases = [w for w in result.weights if len(w["shape"]) == 1 and w["size"] in (8, 10)]
    assert {w["dtype"] for w in biases} == {"int32"}
    io_dtype = "int8" if mode == "int8_io" else "float32"
    for row in result.inputs + result.outputs:
        assert row["dtype"] == io_dtype
        scale, zero_point = row["quantization"]
        assert (scale > 0) == (mode == "int8_io")
    if mode == "int8_io":
        # Inputs in [0, 1] calibrate to scale 1/255 around -128.
        assert result.inputs[0]["quantization"][0] == pytest.approx(1 / 255, rel=1e-3)
        assert result.inputs[0]["quantization"][1] == -128
    report = export.verify(result, trained_cnn, x_test, y_test)
    assert report["n"] == 360
    assert abs(report["tflite_accuracy"] - report["keras_accuracy"]) <= 0.05
    assert report["top1_agreement"] >= 0.95
    assert result.size_bytes < exports["float"].size_bytes


def test_int16x8_runs(exports, trained_cnn, digits8):
    _, (x_test, y_test) = digits8
    result = exports["int16x8"]
    assert {w["dtype"] for w in kernels(result.weights)} == {"int8"}
    assert any(w["dtype"] == "int64" for w in result.weights)  # int16x8 biases
    report = export.verify(result, trained_cnn, x_test, y_test)
    assert abs(report["tflite_accuracy"] - report["keras_accuracy"]) <= 0.05


def test_fixed_batch_size(trained_cnn, digits8, tmp_path):
    _, (x_test, y_test) = digits8
    path = tmp_path / "b4.tflite"
    result = export.to_tflite(trained_cnn, str(path), quantization="int8",
                              representative_data=representative(digits8),
                              batch_size=4)
    assert result.inputs[0]["shape"] == [4, 8, 8, 1]
    assert result.outputs[0]["shape"] == [4, 10]
    # A fixed batch leaves no shape arithmetic in the graph.
    assert "SHAPE" not in result.ops
    # verify feeds whole batches of 4 and pads the last one (361 = 90*4 + 1).
    x = np.concatenate([x_test, x_test[:1]])
    report = export.verify(str(path), trained_cnn, x, np.concatenate([y_test, y_test[:1]]))
    assert report["n"] == 361 and report["top1_agreement"] >= 0.95
