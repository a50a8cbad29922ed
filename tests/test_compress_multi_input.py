"""tfopt.compress and the recipe pipeline on a model of two inputs.

The model has an image branch ("pixels", values in [0, 1]) and a vector
branch ("meta", values in the hundreds, rescaled inside the model). The
converter sorts a file's inputs by name ("meta" before "pixels"), the other
way round from the model's order, so data fed by position instead of by
name would not fit. Every file is run in the LiteRT interpreter and
compared with the Keras model it came from.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfopt
from tfopt import compress as compress_lib
from tfopt import pipeline

N_TRAIN, N_TEST = 96, 32
# Largest |file - Keras| of the softmax outputs each recipe may show.
MAX_DIFF = {"float": 1e-5, "ptq-dynamic": 0.05, "ptq-float16": 0.01, "ptq-int8": 0.25,
            "prune-50": 1e-5, "prune-80": 1e-5, "qat-int8": 0.1, "channels-50": 1e-5}


def _data(n, seed):
    """Three classes: the image's brightness and the vector's level both tell it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype("int32")
    pixels = np.clip(rng.normal(0.2 + 0.3 * y[:, None, None, None], 0.1, (n, 8, 8, 1)), 0, 1)
    meta = rng.normal(100.0 * y[:, None], 40.0, (n, 4))
    return [pixels.astype("float32"), meta.astype("float32")], y


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    pixels = keras.Input((8, 8, 1), name="pixels")
    meta = keras.Input((4,), name="meta")
    a = keras.layers.Conv2D(4, 3, activation="relu")(pixels)
    a = keras.layers.GlobalAveragePooling2D()(a)
    b = keras.layers.Rescaling(0.01)(meta)
    b = keras.layers.Dense(8, activation="relu")(b)
    h = keras.layers.Concatenate()([a, b])
    model = keras.Model([pixels, meta], keras.layers.Dense(3, activation="softmax")(h),
                        name="two_inputs")
    x, y = _data(N_TRAIN, 0)
    x_test, y_test = _data(N_TEST, 1)
    model = pipeline.train(model, x, y, epochs=8, learning_rate=0.02, seed=0)
    return model, (x, y, x_test, y_test)


def _as_dict(x):
    return {"meta": x[1], "pixels": x[0]}


def _check_result(result, recipe, model, x_test, y_test):
    report = result.report
    assert report["n"] == N_TEST
    assert report["top1_agreement"] >= 0.9, report
    assert report["max_abs_diff"] <= MAX_DIFF[recipe], report
    # The file on disk, run again with the inputs by name, against the model.
    again = tfopt.export.verify(result.path, result.keras_model, _as_dict(x_test), y_test)
    assert again["max_abs_diff"] == pytest.approx(report["max_abs_diff"], abs=1e-6)
    assert again["tflite_accuracy"] == pytest.approx(report["tflite_accuracy"])
    if recipe.startswith("prune-"):
        assert report["sparsity"] == pytest.approx(int(recipe[-2:]) / 100, abs=0.02)
    if recipe == "channels-50":
        assert report["params"] < model.count_params()
    if recipe in ("ptq-int8", "qat-int8"):
        assert {w["dtype"] for w in result.export.weights if w["size"] >= 32} == {"int8"}


@pytest.mark.parametrize("recipe", compress_lib.RECIPES)
def test_every_recipe_on_list_data(trained, recipe, tmp_path):
    model, (x, y, x_test, y_test) = trained
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.8  # both branches learnt
    out = tmp_path / f"{recipe}.tflite"
    result = compress_lib.compress(model, (x, y, x_test, y_test), recipe, out, epochs=1)
    assert out.exists() and result.path == str(out)
    assert result.report["keras_accuracy"] > 0.6  # chance: 1/3
    _check_result(result, recipe, model, x_test, y_test)


@pytest.mark.parametrize("recipe", compress_lib.RECIPES)
def test_every_recipe_on_datasets_of_dict_inputs(trained, recipe, tmp_path):
    model, (x, y, x_test, y_test) = trained
    # Unbatched training examples, batched held-out data, keys not in input order.
    train = tf.data.Dataset.from_tensor_slices((_as_dict(x), y))
    test = tf.data.Dataset.from_tensor_slices((_as_dict(x_test), y_test)).batch(8)
    result = compress_lib.compress(model, (train, test), recipe, tmp_path / "m.tflite", epochs=1)
    _check_result(result, recipe, model, x_test, y_test)


def test_tuple_datasets_and_the_pipeline_readers(trained, tmp_path):
    model, (x, y, x_test, y_test) = trained
    expected = pipeline.model_example_shape(model)
    assert expected == {"pixels": (8, 8, 1), "meta": (4,)}
    examples = tf.data.Dataset.from_tensor_slices(((x[0], x[1]), y))
    assert pipeline.steps_per_epoch(examples, batch_size=32, example_shape=expected) == 3
    assert pipeline.steps_per_epoch(examples.batch(10), example_shape=expected) == 10
    assert pipeline.steps_per_epoch(x, batch_size=32, example_shape=expected) == 3  # not 2 inputs
    assert pipeline.steps_per_epoch(_as_dict(x), batch_size=32) == 3
    xs, labels = pipeline.take(examples, n=5, example_shape=expected)
    np.testing.assert_array_equal(xs[1], x[1][:5])
    np.testing.assert_array_equal(labels, y[:5])
    assert [a.shape for a in pipeline.take(x, y, 7, expected)[0]] == [(7, 8, 8, 1), (7, 4)]
    assert pipeline.limit(_as_dict(x), 4)["meta"].shape == (4, 4)
    batches = list(pipeline.limit(examples.batch(16), 20, expected)())
    assert sum(len(b[0][0]) for b in batches) == 20
    assert pipeline.batched(examples, model) is not examples  # unbatched: batched for fit
    with pytest.raises(ValueError, match="inputs only"):
        pipeline.train(model, tf.data.Dataset.from_tensor_slices((x[0], x[1])), None, 1)
    # Batched tuple datasets through compress: calibration and verification read them.
    test = tf.data.Dataset.from_tensor_slices(((x_test[0], x_test[1]), y_test)).batch(8)
    result = compress_lib.compress(model, (examples.batch(16), test), "ptq-int8",
                                   tmp_path / "m.tflite")
    _check_result(result, "ptq-int8", model, x_test, y_test)


def test_lowbit_calibration_of_two_inputs(trained):
    model, (x, y, x_test, y_test) = trained
    exported = pipeline.export(model, lowbit="int16x8", representative_data=x)
    assert exported.quantization is not None
    report = pipeline.verify(exported, model, x_test, y_test)
    # litert-quantizer's int16x8 is coarser than the TF converter's on this
    # tiny model, on each branch alone (one input) too: a loose bound.
    assert report["top1_agreement"] >= 0.95 and report["max_abs_diff"] < 0.4
    # Calibration reaches each input: "meta" calibrated at a hundredth of
    # its range makes a much worse file.
    off = pipeline.export(model, lowbit="int16x8", representative_data=[x[0], x[1] / 100])
    assert pipeline.verify(off, model, x_test, y_test)["max_abs_diff"] > 1.5 * report[
        "max_abs_diff"]
    # A file's float bytes carry no input order: inputs go by name there.
    float_file = tfopt.export.to_tflite(model).content
    by_name = tfopt.export.quantize_tflite(float_file, mode="int16x8",
                                           representative_data=_as_dict(x))
    assert tfopt.export.verify(by_name, model, x_test, y_test)["top1_agreement"] >= 0.95
    with pytest.raises(ValueError, match="dict by input name"):
        tfopt.export.quantize_tflite(float_file, mode="int16x8", representative_data=x)
    with pytest.raises(ValueError, match="'meta' has examples of shape \\(5,\\)"):
        pipeline.export(model, lowbit="int16x8",
                        representative_data=[x[0], np.zeros((N_TRAIN, 5), "float32")])


def test_wrong_inputs_are_named(trained, tmp_path):
    model, (x, y, x_test, y_test) = trained
    out = tmp_path / "m.tflite"
    bad = [x[0], np.zeros((N_TRAIN, 5), "float32")]
    with pytest.raises(ValueError, match="x_train input 'meta' has examples of shape \\(5,\\)"):
        compress_lib.compress(model, (bad, y, x_test, y_test), "float", out)
    with pytest.raises(ValueError, match="x_test has no input\\(s\\) \\['pixels'\\]"):
        compress_lib.compress(model, (x, y, {"meta": x_test[1], "image": x_test[0]}, y_test),
                              "float", out)
    with pytest.raises(ValueError, match="gives 1 inputs.*\\['pixels', 'meta'\\]"):
        compress_lib.compress(model, ([x[0]], y, x_test, y_test), "float", out)
    with pytest.raises(ValueError, match="x_train input 'meta' .* different lengths|"
                                         "x_train has inputs of different lengths"):
        compress_lib.compress(model, ([x[0], x[1][:50]], y, x_test, y_test), "float", out)
    wrong = tf.data.Dataset.from_tensor_slices(
        ({"pixels": np.zeros((4, 6, 6, 1), "float32"), "meta": x[1][:4]}, y[:4]))
    test = tf.data.Dataset.from_tensor_slices((_as_dict(x_test), y_test))
    with pytest.raises(ValueError, match="train dataset input 'pixels' has inputs of shape"):
        compress_lib.compress(model, (wrong, test), "float", out)
    inputs_only = tf.data.Dataset.from_tensor_slices((x[0], x[1]))
    with pytest.raises(ValueError, match="inputs only"):
        compress_lib.compress(model, (inputs_only, test), "float", out)
    assert not out.exists()  # refused before any work


def test_multi_output_and_data_files_are_refused_clearly(trained, tmp_path):
    model, (x, y, x_test, y_test) = trained
    two_heads = keras.Model(model.inputs, [model.output, model.output], name="two_heads")
    with pytest.raises(ValueError, match="'two_heads' has 2 outputs.*to_tflite"):
        compress_lib.compress(two_heads, (x, y, x_test, y_test), "float", tmp_path / "m.tflite")
    data = tmp_path / "d.npz"
    np.savez(data, x=x[0], y=y)
    with pytest.raises(ValueError, match="'two_inputs' has 2 inputs.*from Python"):
        compress_lib.compress(model, data, "float", tmp_path / "m.tflite")


def test_cli_names_a_multi_input_model_file_and_points_to_python(trained, tmp_path, capsys):
    from tfopt import cli

    model, (x, y, _, _) = trained
    path = tmp_path / "two.keras"
    model.save(path)
    data = tmp_path / "d.npz"
    np.savez(data, x=x[0], y=y)
    for command in ("compress", "bench"):
        extra = ["--recipe", "float", "--out", str(tmp_path / "m.tflite")] if command == "compress" \
            else ["--out", str(tmp_path / "bench")]
        with pytest.raises(SystemExit) as caught:
            cli.main([command, str(path), "--data", str(data), *extra])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert "'two_inputs' has 2 inputs" in err and "tfopt.compress.compress" in err, err
    assert not (tmp_path / "m.tflite").exists()
