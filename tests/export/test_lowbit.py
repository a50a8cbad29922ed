"""quantize_tflite: int4 / blockwise / int16x8 files from litert-quantizer,
run in the real LiteRT interpreter."""

import keras
import numpy as np
import pytest

from tfopt import export
from tfopt.export import lowbit
from tests.pruning.helpers import compile_model


@pytest.fixture(scope="module")
def blocky(digits8):
    """A digits CNN whose Dense layers take 128 and 64 inputs (blockable)."""
    (x, y), _ = digits8
    keras.utils.set_random_seed(3)
    model = compile_model(keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ]))
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    return model, export.to_tflite(model)


@pytest.mark.parametrize("mode,block", [
    ("int4_weight_only", None), ("int4_dynamic", None),
    ("int4_blockwise", 32), ("int4_blockwise", 64), ("int16x8", None)])
def test_lowbit_modes_load_agree_and_shrink(blocky, digits8, mode, block):
    model, float_export = blocky
    (x, _), (x_test, y_test) = digits8
    exported = export.quantize_tflite(
        float_export, mode=mode, block_size=block or 32,
        representative_data=x[:64])
    assert isinstance(exported, export.TFLiteExport)
    report = export.verify(exported, model, x_test, y_test)
    assert report["top1_agreement"] >= 0.95, report
    assert report["cosine_similarity"] >= 0.99, report
    assert report["tflite_accuracy"] >= report["keras_accuracy"] - 0.03
    stored = {row["name"]: row for row in exported.layers}
    kinds = [row["op"] for row in exported.layers]
    assert kinds == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                     "FULLY_CONNECTED"]
    dtypes = [row["weight_dtype"] for row in stored.values()]
    if mode.startswith("int4"):
        # int4 where litert-quantizer has it; the depthwise conv gets int8.
        assert dtypes == ["int4", "int8", "int4", "int4"]
        assert exported.size_bytes < 0.5 * float_export.size_bytes
    else:
        assert dtypes == ["int8"] * 4
        assert exported.inputs[0]["dtype"] == "float32"
    if block:
        assert [row["precision"] for row in exported.layers][2:] == [
            f"int4_b{block}"] * 2


def test_blockwise_falls_back_per_op_when_block_does_not_divide(blocky):
    _, float_export = blocky
    exported = export.quantize_tflite(float_export, mode="int4_blockwise",
                                      block_size=128)
    # Dense(64) takes 128 inputs (blocks of 128), Dense(10) takes 64 (no).
    assert [row["precision"] for row in exported.layers][2:] == [
        "int4_b128", "int4"]


def test_quantize_tflite_takes_keras_model_and_writes_file(blocky, tmp_path, digits8):
    model, _ = blocky
    _, (x_test, _) = digits8
    path = str(tmp_path / "m.tflite")
    exported = export.quantize_tflite(model, path, mode="int4_dynamic")
    assert open(path, "rb").read() == exported.content
    assert export.verify(path, model, x_test[:50])["top1_agreement"] >= 0.9
    # The recipe round-trips: applying it again gives the same file.
    again = export.quantize_tflite(model, recipe=exported.recipe)
    assert again.content == exported.content


def test_lowbit_bad_inputs(blocky, digits8):
    model, float_export = blocky
    with pytest.raises(ValueError, match="Unknown mode='int3'"):
        export.quantize_tflite(float_export, mode="int3")
    with pytest.raises(ValueError, match="block_size=48"):
        export.quantize_tflite(float_export, mode="int4_blockwise", block_size=48)
    with pytest.raises(ValueError, match="needs representative_data"):
        export.quantize_tflite(float_export, mode="int16x8")
    with pytest.raises(ValueError, match="takes a float file"):
        export.quantize_tflite(export.quantize_tflite(float_export,
                                                      mode="int4_dynamic").content)
    with pytest.raises(TypeError, match="keras.Model, a float TFLiteExport"):
        export.quantize_tflite([1, 2])
    ops = lowbit.quantizable_ops(float_export.content)
    depthwise = [op for op in ops if op["op"] == "DEPTHWISE_CONV_2D"][0]
    with pytest.raises(ValueError, match="cannot quantize op DEPTHWISE_CONV_2D"):
        lowbit.op_recipe(depthwise, "int4")
    no_weights = keras.Sequential([keras.Input((4,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="no op litert-quantizer can quantize"):
        export.quantize_tflite(no_weights, mode="int4_dynamic")
