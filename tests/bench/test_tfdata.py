"""Benchmark cases whose data is a tf.data.Dataset of (x, y)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt import pipeline
from tfopt.bench import harness
from tfopt.bench import suites
from tfopt.data import load_digits

SETTINGS = harness.Settings(warmup=1, runs=5, min_seconds=0.0, device="cpu", latency_rounds=1,
                            verify_examples=200)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = load_digits(8)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model = pipeline.train(model, x, y, epochs=10, seed=0)
    return model, (x, y, x_test, y_test)


def _copy(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _recipes():
    return [suites.float_recipe(), suites.ptq_recipe("int8"), suites.prune_recipe(0.8, epochs=3),
            suites.qat_recipe(epochs=1)]


def test_a_batched_dataset_case_runs_float_ptq_prune_and_qat(trained, tmp_path):
    model, (x, y, x_test, y_test) = trained
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(50)
    arrays = harness.Case("arrays", lambda: (_copy(model), (x, y, x_test, y_test)),
                          _recipes()[:2])  # the training rows' equality is the benchmark's
    streamed = harness.Case("streamed", lambda: (_copy(model), (train, test)), _recipes())
    by_array = {r["recipe"]: r for r in harness.run_case(arrays, SETTINGS, str(tmp_path / "a"))}
    by_data = {r["recipe"]: r for r in harness.run_case(streamed, SETTINGS, str(tmp_path / "d"))}
    for name, row in by_data.items():
        assert row["status"] == "ok", (name, row.get("reason"))
        # Labels came out of the dataset: accuracies are reported.
        assert row["tflite_accuracy"] > 0.5 and row["keras_accuracy"] > 0.5, name
    # Same model, same first 200 calibration examples: the same files.
    for name in ("float", "ptq-int8"):
        for key in ("size_bytes", "tflite_accuracy", "keras_accuracy", "top1_agreement"):
            assert by_data[name][key] == by_array[name][key], (name, key)
    assert by_data["ptq-int8"]["weight_dtypes"] == by_array["ptq-int8"]["weight_dtypes"]
    assert "int8" in by_data["ptq-int8"]["weight_dtypes"]
    # The ramp from the dataset's cardinality (45 batches) reaches the target.
    assert by_data["prune-80"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert "int8" in by_data["qat-int8"]["weight_dtypes"]
    # The int8 QAT file's accuracy is reported, near the float model's.
    assert by_data["qat-int8"]["tflite_accuracy"] == pytest.approx(
        by_data["float"]["tflite_accuracy"], abs=0.05)


def test_steps_from_cardinality_and_infinite_dataset_errors(trained, tmp_path):
    model, (x, y, x_test, y_test) = trained
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    assert pipeline.steps_per_epoch(examples.batch(32)) == int(np.ceil(len(x) / 32))
    assert pipeline.steps_per_epoch(examples, example_shape=(8, 8, 1)) == int(np.ceil(len(x) / 32))
    assert pipeline.steps_per_epoch(examples.repeat(), steps=7) == 7
    with pytest.raises(ValueError, match="infinite.*steps_per_epoch"):
        pipeline.steps_per_epoch(examples.repeat())
    with pytest.raises(ValueError, match="unknown.*steps_per_epoch"):
        pipeline.steps_per_epoch(examples.filter(lambda a, b: b >= 0))
    with pytest.raises(ValueError, match="infinite.*steps_per_epoch"):
        pipeline.train(_copy(model), examples.repeat(), None, epochs=1)
    with pytest.raises(ValueError, match="pass y=None"):
        pipeline.train(_copy(model), examples, y, epochs=1)
    # Through the harness: the row fails with that reason, before training.
    case = harness.Case("infinite", lambda: (_copy(model), (examples.repeat(), examples)),
                        [suites.prune_recipe(0.8, epochs=3), suites.qat_recipe(epochs=1)])
    rows = harness.run_case(case, SETTINGS, str(tmp_path))
    for row in rows:
        assert row["status"] == "failed" and "infinite" in row["reason"], row
