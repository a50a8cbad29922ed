"""inspect_tflite on real files: ops, io, weights, Flex ops and bad files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt import export


class _Erf(keras.layers.Layer):
    """erf has a select TF kernel (Flex) but no TFLite builtin."""

    def call(self, x):
        return tf.math.erf(x)


class _Erfinv(keras.layers.Layer):
    """erfinv has neither a builtin nor a select TF kernel."""

    def call(self, x):
        return tf.math.erfinv(x)


def _tiny(layer):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), layer])


def test_inspect_a_written_file(trained_cnn, tmp_path):
    path = tmp_path / "model.tflite"
    result = export.to_tflite(trained_cnn, str(path))
    facts = export.inspect_tflite(str(path))
    assert facts["path"] == str(path)
    assert facts["size_bytes"] == path.stat().st_size == result.size_bytes
    assert facts["gzip_bytes"] == result.gzip_bytes
    assert facts["ops"] == result.ops == sorted(result.ops)
    assert facts["inputs"] == result.inputs and facts["outputs"] == result.outputs
    assert facts["inputs"][0]["quantization"] == (0.0, 0)
    assert facts["outputs"][0]["shape"] == [-1, 10]
    by_shape = {tuple(w["shape"]): w for w in facts["weights"]}
    kernel = by_shape[(8, 3, 3, 1)]  # TFLite's OHWI conv kernel
    assert kernel["dtype"] == "float32" and kernel["size"] == 72
    np.testing.assert_allclose(
        kernel["zero_fraction"],
        float(np.mean(trained_cnn.layers[0].kernel.numpy() == 0)))
    assert by_shape[(10, 72)]["size"] == 720
    # io tensors are not weights
    names = {w["name"] for w in facts["weights"]}
    assert facts["inputs"][0]["name"] not in names
    assert export.inspect_tflite(path.read_bytes())["ops"] == facts["ops"]


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ValueError, match="nope.tflite"):
        export.inspect_tflite(str(missing))
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ValueError, match="corrupt.tflite is not a TFLite file"):
        export.inspect_tflite(corrupt)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.tflite"):
        export.inspect_tflite(str(empty))
    with pytest.raises(ValueError, match="corrupt.tflite"):
        export.evaluate_tflite(str(corrupt), np.zeros((1, 4), "float32"), [0])
    with pytest.raises(ValueError, match="nope.tflite"):
        export.verify(str(missing), np.zeros((1, 4)), np.zeros((1, 4), "float32"))
    with pytest.raises(TypeError, match="path or bytes"):
        export.inspect_tflite(42)


def test_op_without_builtin_is_named_with_the_fix():
    model = _tiny(_Erf())
    with pytest.raises(ValueError, match=r"Erf\b.*allow_select_tf_ops=True"):
        export.to_tflite(model)
    result = export.to_tflite(model, allow_select_tf_ops=True)
    assert result.flex_ops == ["FlexErf"] and "FlexErf" in result.ops
    assert "FULLY_CONNECTED" in result.ops


def test_op_without_any_kernel_is_named():
    with pytest.raises(ValueError, match="Erfinv.*neither a TFLite builtin nor"):
        export.to_tflite(_tiny(_Erfinv()), allow_select_tf_ops=True)


def test_mixed_missing_ops_are_told_apart():
    class _Both(keras.layers.Layer):
        def call(self, x):
            return tf.math.erf(x) + tf.math.erfinv(x)

    with pytest.raises(ValueError) as caught:
        export.to_tflite(_tiny(_Both()))
    message = str(caught.value)
    assert "no TFLite builtin for op(s) Erf." in message
    assert "allow_select_tf_ops=True" in message
    assert "Op(s) Erfinv have neither" in message
    assert len(message) < 600  # the summary, not the converter's MLIR dump
