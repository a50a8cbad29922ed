"""The user's own model and data at the export entry points (issue 12).

No silent wrong artifact (QAT default int8, wrapped models, ignored
options), errors before work (output paths), and every input form
(tf.data batched/unbatched/with labels, generator functions, lists) for
`representative_data`, `verify`, `evaluate_tflite` and `cache_teacher`.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt import distillation
from tfopt import export
from tfopt import pruning
from tfopt import quantization
from tests.export.conftest import kernels
from tests.export.conftest import representative
from tests.pruning.helpers import cnn
from tests.pruning.helpers import compile_model


class _Erf(keras.layers.Layer):
    """No TFLite builtin: conversion of a model with it fails."""

    def call(self, x):
        return tf.math.erf(x)


@pytest.fixture(scope="module")
def qat_cnn(trained_cnn, digits8):
    (x, y), _ = digits8
    keras.utils.set_random_seed(3)
    qat = compile_model(quantization.quantize_model(trained_cnn))
    qat.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    return qat


def test_qat_model_exports_int8_by_default(qat_cnn, trained_cnn, digits8, tmp_path):
    _, (x_test, y_test) = digits8
    default = export.to_tflite(qat_cnn, str(tmp_path / "qat.tflite"))
    assert default.quantization == "int8"
    assert {w["dtype"] for w in kernels(default.weights)} == {"int8"}
    explicit = export.to_tflite(qat_cnn, quantization="int8")
    assert default.content == explicit.content
    float_file = export.to_tflite(trained_cnn)
    assert default.size_bytes < float_file.size_bytes
    report = export.verify(default, qat_cnn, x_test, y_test)
    assert report["top1_agreement"] >= 0.95
    # A float export of a QAT model is still possible, but only with a warning.
    with pytest.warns(UserWarning, match="QAT model, exported as float"):
        as_float = export.to_tflite(qat_cnn, quantization=None)
    assert as_float.quantization is None
    assert {w["dtype"] for w in kernels(as_float.weights)} == {"float32"}
    assert as_float.size_bytes > default.size_bytes


def test_plain_model_default_is_float_without_warning(trained_cnn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = export.to_tflite(trained_cnn)
    assert result.quantization is None


def test_wrapped_pruning_model_is_stripped_with_a_warning(digits8):
    (x, y), _ = digits8
    keras.utils.set_random_seed(1)
    wrapped = compile_model(pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.ConstantSparsity(0.75, 0, frequency=1)))
    wrapped.fit(x[:128], y[:128], epochs=1, batch_size=64, verbose=0,
                callbacks=[pruning.UpdatePruningStep()])
    with pytest.warns(UserWarning, match="still has pruning wrappers"):
        exported = export.to_tflite(wrapped)
    stripped = export.to_tflite(pruning.strip_pruning(wrapped))
    assert exported.content == stripped.content
    # The mask variables are not in the file; the zeros are.
    assert not any("mask" in w["name"] for w in exported.weights)
    assert max(w["zero_fraction"] for w in kernels(exported.weights)) >= 0.74


def test_strip_pruning_of_a_never_trained_wrapper_warns():
    wrapped = pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    with pytest.warns(UserWarning, match="no weight of .* is pruned"):
        final = pruning.strip_pruning(wrapped)
    assert pruning.sparsity_report(final)["total"]["sparsity"] == 0.0


def test_ignored_representative_data_is_an_error(trained_cnn, qat_cnn, digits8):
    rep = representative(digits8, 16)
    for mode in (None, "float", "dynamic", "float16", "auto"):
        with pytest.raises(ValueError, match="representative_data would be ignored"):
            export.to_tflite(trained_cnn, quantization=mode, representative_data=rep)
    with pytest.raises(ValueError, match="QAT model takes its int8 ranges"):
        export.to_tflite(qat_cnn, representative_data=rep)


def test_int16x8_of_a_qat_model_is_refused_before_work(qat_cnn, digits8):
    # The converter fails on it ("16x8 not yet supported for op DEQUANTIZE")
    # after asking for calibration data; tfopt says so up front.
    for rep in (None, representative(digits8, 16)):
        with pytest.raises(ValueError, match="cannot make it int16x8"):
            export.to_tflite(qat_cnn, quantization="int16x8", representative_data=rep)


def test_output_path_is_checked_before_conversion(tmp_path):
    # This model cannot be converted: a path error proves the path came first.
    unconvertible = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), _Erf()])
    with pytest.raises(ValueError, match="directory .*no/such.* does not exist"):
        export.to_tflite(unconvertible, str(tmp_path / "no" / "such" / "m.tflite"))
    with pytest.raises(ValueError, match="is a directory"):
        export.to_tflite(unconvertible, str(tmp_path))


def _datasets(x, y):
    slices = tf.data.Dataset.from_tensor_slices
    return {
        "array": x,
        "list of examples": list(x),
        "list of batches": [x[:50], x[50:]],
        "unbatched dataset": slices(x),
        "batched dataset": slices(x).batch(32),
        "batched (x, y) dataset": slices((x, y)).batch(17),
        "unbatched (x, y) dataset": slices((x, y)),
        "generator function": lambda: ([x[i:i + 10]] for i in range(0, len(x), 10)),
    }


def test_representative_data_in_every_form_gives_the_same_file(trained_cnn, digits8):
    (x, y), _ = digits8
    x, y = np.ascontiguousarray(x[:100]), y[:100]
    reference = export.to_tflite(trained_cnn, quantization="int8", representative_data=x)
    forms = _datasets(x, y)
    for name in ("list of examples", "batched dataset", "unbatched (x, y) dataset",
                 "generator function"):
        data = forms[name]
        result = export.to_tflite(trained_cnn, quantization="int8", representative_data=data)
        assert result.content == reference.content, name


def test_representative_data_streams_only_what_calibration_needs(trained_cnn, digits8):
    (x, _), _ = digits8
    read = []

    def endless():
        def generate():
            while True:
                read.append(1)
                yield [x[:10]]
        return generate()

    result = export.to_tflite(trained_cnn, quantization="int8", representative_data=endless)
    assert {w["dtype"] for w in kernels(result.weights)} == {"int8"}
    assert len(read) == export.tflite.CALIBRATION_EXAMPLES // 10
    with pytest.raises(TypeError, match="one-shot generator"):
        export.to_tflite(trained_cnn, quantization="int8", representative_data=endless())
    with pytest.raises(ValueError, match=r"examples of shape \(16, 16, 1\)"):
        export.to_tflite(trained_cnn, quantization="int8", representative_data=tf.data.Dataset
                         .from_tensor_slices(np.zeros((4, 16, 16, 1), "float32")))


def test_verify_and_evaluate_take_datasets_and_generators(trained_cnn, digits8):
    _, (x_test, y_test) = digits8
    exported = export.to_tflite(trained_cnn, quantization="dynamic")
    reference = export.verify(exported, trained_cnn, x_test, y_test)
    accuracy = export.evaluate_tflite(exported, x_test, y_test)
    assert accuracy == reference["tflite_accuracy"]
    for name, data in _datasets(x_test, y_test).items():
        # Labels come from the data when it has them, else from y.
        labelled = "(x, y)" in name
        report = export.verify(exported, trained_cnn, data, None if labelled else y_test)
        assert report["n"] == len(x_test), name
        assert report["tflite_accuracy"] == reference["tflite_accuracy"], name
        # Keras runs other batch sizes here: float round-off differs a little.
        assert abs(report["max_abs_diff"] - reference["max_abs_diff"]) < 1e-4, name
        assert export.evaluate_tflite(exported, data, None if labelled else y_test) == accuracy
    with pytest.raises(ValueError, match="needs labels"):
        export.evaluate_tflite(exported, tf.data.Dataset.from_tensor_slices(x_test).batch(8))


def test_cache_teacher_takes_a_dataset(trained_cnn, digits8):
    (x, y), _ = digits8
    x, y = x[:96], y[:96]
    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10)])
    distiller = distillation.Distiller(student, trained_cnn)
    distiller.compile(optimizer="adam")
    from_array = distiller.cache_teacher(x)
    cached, labels = distiller.cache_teacher(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(32))
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(cached["teacher_logits"], from_array["teacher_logits"], rtol=1e-5)
    unlabelled = distiller.cache_teacher(tf.data.Dataset.from_tensor_slices(x))
    np.testing.assert_array_equal(unlabelled["inputs"], x)
    history = distiller.fit(cached, labels, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_polynomial_decay_short_ramp_advice_is_right():
    with pytest.warns(UserWarning) as caught:
        pruning.PolynomialDecay(0.0, 0.8, 0, 5, frequency=1)
    text = str(caught[0].message)
    assert "longer ramp" in text and "frequency <=" not in text
    with pytest.warns(UserWarning, match="Use frequency <= 5"):
        pruning.PolynomialDecay(0.0, 0.8, 0, 50, frequency=10)


def test_search_pruning_phase_does_not_trigger_the_ramp_warning():
    from tfopt import tuning
    from tfopt.tuning.space import TrialConfig

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3)])
    hypermodel = tuning.CompressionHyperModel(model)
    cfg = TrialConfig(pruning="unstructured", sparsity=0.8, schedule="polynomial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = hypermodel.apply_pruning(model, cfg, total_steps=6)
    assert pruning.api.pruning_wrappers(wrapped)


def test_search_takes_datasets_of_pairs(tmp_path, digits8):
    from tfopt import tuning

    (x, y), (x_val, y_val) = digits8
    train = tf.data.Dataset.from_tensor_slices((x[:128], y[:128])).batch(32)
    validation = tf.data.Dataset.from_tensor_slices((x_val[:64], y_val[:64]))  # unbatched

    def mlp(width=1.0):
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(int(16 * width), activation="relu"),
                                 keras.layers.Dense(10)])

    hypermodel = tuning.CompressionHyperModel(
        mlp, space={"epochs": 1, "pruning": "none", "quantization": "ptq"},
        latency={"warmup": 1, "runs": 5, "min_seconds": 0.0})
    tuner = tuning.RandomSearch(hypermodel, max_trials=1, baseline=False, seed=0,
                                directory=str(tmp_path), project_name="p")
    tuner.search(train, validation_data=validation, verbose=0)
    (record,) = tuner.trials()
    assert record.status == "COMPLETED" and record.measured
    assert 0.0 <= record.metrics["tflite_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="yields no labels"):
        tuner.search(tf.data.Dataset.from_tensor_slices(x[:8]), validation_data=validation)
