"""QAT coverage of 1-D depthwise/separable and transposed convs, Conv3D and multi-output ops nodes.

Each test builds a tiny model, quantizes it with `quantize_model`, fits it
briefly, exports the int8 file with no calibration data (the ranges are the
fake-quant nodes') and runs it in the LiteRT interpreter: the compute ops
TFLite has int8 kernels for must run int8, and the file must agree with the
QAT Keras model.
"""

import keras
import numpy as np
from keras import layers
from keras import ops

from tfopt import export
from tfopt import quantization
from tfopt.quantization import config as config_lib


def _task(shape, n=96, seed=0):
    """Inputs and labels a tiny model learns in a few epochs (so logits are apart).

    Each class shifts every position of the input by its own channel
    pattern, which global pooling picks up.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n).astype("int32")
    patterns = rng.normal(size=(4, shape[-1])).astype("float32")
    x = rng.normal(size=(n,) + shape).astype("float32")
    x += patterns[y].reshape((n,) + (1,) * (len(shape) - 1) + (shape[-1],))
    return x, y


def _qat_file(model, x, y, epochs=3):
    qat = quantization.quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    exported = export.to_tflite(qat, quantization="int8")
    return qat, exported


def _precision_by_op(exported):
    """`{op name: set of input dtypes}` of the file's operators."""
    result = {}
    for row in export.op_precision(exported.content)["ops"]:
        result.setdefault(row["op"], set()).add(row["input_dtype"])
    return result


def _assert_agrees(exported, qat, x):
    report = export.verify(exported, qat, x)
    keras_logits = np.asarray(qat(x, training=False))
    spread = float(keras_logits.max() - keras_logits.min())
    assert report["top1_agreement"] >= 0.99, report
    # One or two int8 steps of the output, not a wrong graph.
    assert report["max_abs_diff"] <= 0.05 * spread, (report, spread)


def _kernel_scales(content, op_name):
    """The weight scales of every `op_name` operator of a file (one array each)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [tensors[op["inputs"][1]]["quantization_parameters"]["scales"]
            for op in interpreter._get_ops_details() if op["op_name"] == op_name]


def test_depthwise_and_separable_conv1d_convert_int8_per_channel():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 4))
    x = layers.Conv1D(8, 3)(inputs)
    x = layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)  # folded into the depthwise kernel
    x = layers.ReLU()(x)
    x = layers.SeparableConv1D(8, 3, strides=2)(x)
    x = layers.GlobalMaxPooling1D()(x)
    model = keras.Model(inputs, layers.Dense(4)(x))
    x, y = _task((24, 4))
    qat, exported = _qat_file(model, x, y)
    by_op = _precision_by_op(exported)
    # Conv1D, the separable's 1x1 half; the two depthwise kernels.
    assert by_op["CONV_2D"] == by_op["DEPTHWISE_CONV_2D"] == {"int8"}, by_op
    assert export.op_precision(exported.content)["int8_share"] == 1.0
    # Per channel, as the 2-D depthwise convs: 8 x 2 and 16 x 1 output channels.
    assert [len(s) for s in _kernel_scales(exported.content, "DEPTHWISE_CONV_2D")] == [16, 16]
    _assert_agrees(exported, qat, x)


def test_multi_output_ops_nodes_quantize_and_run_int8():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    a, b = ops.split(x, 2, axis=-1)  # SPLIT
    x = ops.concatenate([ops.relu(a), ops.sigmoid(b) * a], axis=-1)
    c, d, e = ops.split(x, [2, 5], axis=-1)  # SPLIT_V
    x = ops.concatenate([c, ops.relu(d), e], axis=-1)
    rows = ops.unstack(x, axis=1)  # UNPACK
    x = ops.stack([ops.relu(r) for r in rows], axis=1)
    x = ops.mean(x, axis=(1, 2))
    model = keras.Model(inputs, layers.Dense(4)(x))
    x, y = _task((6, 6, 3))
    qat, exported = _qat_file(model, x, y)
    by_op = _precision_by_op(exported)
    for op in ("SPLIT", "SPLIT_V", "UNPACK", "PACK", "CONV_2D", "FULLY_CONNECTED"):
        assert by_op.get(op) == {"int8"}, (op, by_op)
    _assert_agrees(exported, qat, x)


def test_conv1d_transpose_runs_int8_transpose_conv():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 4))
    x = layers.Conv1D(8, 3, strides=2, padding="same")(inputs)
    x = layers.Conv1DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1DTranspose(6, 4, padding="valid")(x)
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(4)(x))
    x, y = _task((16, 4))
    qat, exported = _qat_file(model, x, y)
    precision = export.op_precision(exported.content)
    transpose = [row for row in precision["ops"] if row["op"] == "TRANSPOSE_CONV"]
    assert len(transpose) == 2 and all(row["input_dtype"] == "int8" for row in transpose), precision
    assert precision["int8_share"] == 1.0, precision
    assert config_lib.QUANTIZE_TABLE[layers.Conv1DTranspose].granularity == "per_tensor"
    _assert_agrees(exported, qat, x)


def test_conv3d_is_a_float_island_and_reported_float():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 6, 2))
    x = layers.Conv3D(4, 3)(inputs)
    x = layers.BatchNormalization()(x)  # folded into the float Conv3D
    x = layers.ReLU()(x)
    x = layers.Conv3DTranspose(4, 3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling3D()(x)
    x = layers.Dense(8, activation="relu")(x)
    model = keras.Model(inputs, layers.Dense(4)(x))
    x, y = _task((6, 6, 6, 2), n=64)
    qat, exported = _qat_file(model, x, y, epochs=2)
    precision = export.op_precision(exported.content)
    # The converter emits CONV_3D/CONV_3D_TRANSPOSE in float only: counted
    # as float compute ops; the dense head after them runs int8.
    assert precision["float_compute"] == {"CONV_3D": 1, "CONV_3D_TRANSPOSE": 1}, precision
    assert precision["int8_compute_ops"] == 2 and precision["compute_ops"] == 4, precision
    assert precision["int8_share"] == 0.5
    assert "DEPTHWISE_CONV_2D" not in {row["op"] for row in precision["ops"]}  # no int8 BN affine
    _assert_agrees(exported, qat, x)
    # PTQ of the float model: the same ops float, reported as such.
    ptq = export.op_precision(export.to_tflite(model, quantization="int8",
                                               representative_data=x[:16]).content)
    assert ptq["float_compute"] == {"CONV_3D": 1, "CONV_3D_TRANSPOSE": 1}, ptq
    assert ptq["int8_share"] == 0.5, ptq


def test_op_precision_reads_the_data_of_a_transpose_conv_not_its_weights():
    # Dynamic range: int8 weights on float data, a float kernel. TRANSPOSE_CONV's
    # first non-index operand is its int8 weights: reading it called the op int8.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    x = layers.Conv2DTranspose(32, 3, strides=2)(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    precision = export.op_precision(export.to_tflite(model, quantization="dynamic").content)
    assert precision["float_compute"] == {"TRANSPOSE_CONV": 1, "FULLY_CONNECTED": 1}, precision
    assert precision["int8_share"] == 0.0
