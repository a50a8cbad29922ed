"""tfopt.pipeline: the stages compress, the suites and the search share, and
their one metric vocabulary."""

import keras
import numpy as np
import pytest

from tfopt import pipeline
from tfopt import pruning
from tfopt.bench import report
from tfopt.data import load_digits


def test_one_vocabulary_reads_old_names():
    assert pipeline.direction("tflite_accuracy") == "max"
    assert pipeline.direction("cpu_p50_ms") == pipeline.direction("p50_vs_baseline") == "min"
    with pytest.raises(ValueError, match="Unknown objective.*val_acc"):
        pipeline.direction("val_acc")
    old_row = {"cpu_p50_ms": 2.0, "bytes_vs_baseline": 0.5, "p50_ms": None}
    new = pipeline.canonical_metrics(old_row)
    assert new["bytes_vs_float"] == 0.5 and new["cpu_p50_ms"] == 2.0
    assert new["p50_ms"] is None  # an existing key is never overwritten
    # Bench rows and trials share one Pareto front.
    rows = [{"status": "ok", "tflite_accuracy": 0.9, "size_bytes": 10, "p50_ms": 1.0},
            {"status": "ok", "tflite_accuracy": 0.8, "size_bytes": 20, "p50_ms": 2.0},
            {"status": "failed"},
            {"status": "ok", "tflite_accuracy": 0.7, "size_bytes": 5, "p50_ms": 3.0}]
    assert report.pareto_front(rows) == [rows[0], rows[3]]
    assert report.pareto_front([(1, 2), (2, 1), (2, 2)], (False, False)) == [0, 1]


def _digits_mlp(epochs):
    """A 16-unit MLP trained on the 8x8 digits, and the data."""
    (x, y), (x_test, y_test) = load_digits(8)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    return pipeline.train(model, x, y, epochs=epochs), (x, y, x_test, y_test)


def test_prune_export_verify_on_a_real_model(tmp_path):
    model, (x, y, x_test, y_test) = _digits_mlp(epochs=1)
    schedule = pruning.PolynomialDecay(0.0, 0.75, 0, pipeline.steps_per_epoch(x), frequency=1)
    final, sparsity = pipeline.prune(model, x, y, schedule, epochs=2)
    assert sparsity == pytest.approx(0.75, abs=0.01)
    assert not any(isinstance(l, pruning.PruneLowMagnitude) for l in final.layers)
    exported = pipeline.export(final, str(tmp_path / "p.tflite"), quantization="int8",
                               representative_data=x)
    assert exported.size_bytes > 0 and {w["dtype"] for w in exported.weights
                                        if w["size"] >= 64} == {"int8"}
    checked = pipeline.verify(exported, final, x_test, y_test, examples=128)
    # int8 file vs the Keras model it came from, far above chance (0.1).
    assert checked["n"] == 128 and checked["tflite_accuracy"] > 0.3
    assert abs(checked["tflite_accuracy"] - checked["keras_accuracy"]) <= 0.03
    assert checked["sparsity"] == pytest.approx(sparsity) and checked["params"] == 1210
    with pytest.raises(ValueError, match="epochs"):
        pipeline.train(model, x, y, epochs=0)
    assert np.isfinite(checked["max_abs_diff"])


def test_compress_takes_unbatched_datasets(tmp_path):
    import tensorflow as tf

    from tfopt import compress

    model, (x, y, x_test, y_test) = _digits_mlp(epochs=2)
    train = tf.data.Dataset.from_tensor_slices((x, y))  # unbatched: batched by train()
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    pruned = compress.compress(model, (train, test), "prune-50", str(tmp_path / "p.tflite"),
                               epochs=1, verify_examples=100)
    assert pruned.report["n"] == 100 and pruned.report["tflite_accuracy"] > 0.3
    assert pruned.report["sparsity"] == pytest.approx(0.5, abs=0.01)
    # Calibration reads the dataset's first 200 examples: the arrays' file.
    streamed = compress.compress(model, (train, test), "ptq-int8", str(tmp_path / "d.tflite"))
    arrays = compress.compress(model, (x, y, x_test, y_test), "ptq-int8",
                               str(tmp_path / "a.tflite"))
    assert streamed.export.content == arrays.export.content
    assert streamed.report["tflite_accuracy"] == arrays.report["tflite_accuracy"]
    with pytest.raises(ValueError, match="inputs only.*map it to"):
        compress.compress(model, (train.map(lambda a, b: a), test), "float",
                          str(tmp_path / "f.tflite"))


def test_qat_fine_tuning_anneals_its_rate_to_zero():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2)])
    # 40 examples in batches of 16: 3 steps an epoch, 6 in all.
    rate = pipeline.qat_learning_rate(x, 2, 1e-3, batch_size=16)
    assert float(rate(0)) == pytest.approx(1e-3) and float(rate(6)) == pytest.approx(0.0, abs=1e-12)
    assert pipeline.qat_learning_rate(x, 2, 1e-3, decay=None) == 1e-3
    # An unbatched dataset is counted in the batches train() makes of it.
    dataset = tf.data.Dataset.from_tensor_slices(x)
    assert pipeline.qat_learning_rate(dataset, 2, 1e-3, batch_size=16,
                                      example_shape=(6,)).decay_steps == 6
    qat = pipeline.quantize_aware(model, x, y, 2, learning_rate=1e-3, batch_size=16, from_logits=True)
    assert int(qat.optimizer.iterations) == 6
    assert float(qat.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="decay='linear'"):
        pipeline.qat_learning_rate(x, 2, decay="linear")
    with pytest.raises(ValueError, match="epochs=0"):
        pipeline.quantize_aware(model, x, y, 0)


def test_qat_rate_gives_way_to_a_rate_callback_and_to_unknown_lengths():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    # The user's scheduler drives the rate (a schedule could not be set).
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate / 2)
    qat = pipeline.quantize_aware(model, x, y, 2, learning_rate=1e-3, batch_size=16,
                                  from_logits=True, callbacks=[halve])
    assert float(qat.optimizer.learning_rate) == pytest.approx(2.5e-4)
    # A filtered dataset has no known length: a constant rate, said so.
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(16)
    with pytest.warns(UserWarning, match="assert_cardinality"):
        qat = pipeline.quantize_aware(model, unknown, None, 1, learning_rate=1e-3,
                                      from_logits=True)
    assert float(qat.optimizer.learning_rate) == pytest.approx(1e-3)
