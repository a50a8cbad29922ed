"""Each KerasTuner tuner runs a few compression trials on a tiny problem;
constraints, objectives and the report."""

import csv
import json
import os

import keras
import keras_tuner
import pytest

from tfopt import tuning
from tfopt.tuning.trials import KERAS_FILE
from tfopt.tuning.trials import RECORD_FILE
from tests.tuning.conftest import tiny_hypermodel

LOGGED = ("score", "tflite_accuracy", "keras_accuracy", "size_bytes", "gzip_bytes", "p50_ms",
          "p90_ms", "params", "sparsity", "feasible", "trial_seconds")


def check_measured(tuner, record):
    for name in LOGGED:
        assert name in record.metrics, (record.trial_id, name)
    # The logged size is the file's size, the score the documented formula.
    assert os.path.getsize(record.tflite_path) == record.metrics["size_bytes"]
    assert record.metrics["score"] == pytest.approx(tuner.scalarization(record.metrics), rel=1e-5)
    assert record.score == pytest.approx(record.metrics["score"], rel=1e-5)
    assert 0.0 <= record.metrics["tflite_accuracy"] <= 1.0


@pytest.mark.parametrize("tuner_class, space, max_trials", [
    (tuning.RandomSearch, {"width": [1.0, 0.5], "pruning": "unstructured",
                           "schedule": ["constant", "polynomial"], "quantization": "none"}, 2),
    (tuning.GridSearch, {"pruning": ["block", "2:4"], "sparsity": 0.5, "schedule": "constant",
                         "quantization": ["ptq", "qat"]}, 3),
    (tuning.BayesianOptimization, {"width": [1.0, 0.75, 0.5], "quantization": "ptq"}, 2),
])
def test_tuner_runs_trials_and_logs_every_metric(tuner_class, space, max_trials, tmp_path,
                                                 digits_small):
    (x, y), validation = digits_small
    tuner = tuner_class(tiny_hypermodel(space), max_trials=max_trials, baseline=False, seed=3,
                        directory=str(tmp_path), project_name="p")
    tuner.search(x, y, validation_data=validation, verbose=0)
    records = tuner.trials()
    assert len(records) == max_trials
    for record in records:
        assert record.status == "COMPLETED" and record.feasible
        check_measured(tuner, record)
    if tuner_class is tuning.GridSearch:
        # The grid's first three combinations, in order, each once.
        combos = [(r.values["pruning"], r.values["quantization"]) for r in records]
        assert combos == [("block", "ptq"), ("block", "qat"), ("2:4", "ptq")]
    front = tuner.pareto_front()
    assert front and {r.trial_id for r in front} <= {r.trial_id for r in records}
    best = tuner.best_trials(1)[0]
    assert best.score == min(r.score for r in records)
    model = tuner.get_best_models(1)[0]
    assert isinstance(model, keras.Model)
    assert tuner.get_best_hyperparameters(1)[0].values == best.values


def test_hyperband_budgets_epochs(tmp_path, digits_small):
    (x, y), validation = digits_small
    tuner = tuning.Hyperband(tiny_hypermodel({"quantization": "none", "pruning": "none",
                                              "width": [1.0, 0.5]}),
                             max_epochs=2, factor=2, baseline=False, seed=0,
                             directory=str(tmp_path), project_name="hb")
    assert "epochs" not in {p.name for p in tuner.oracle.hyperparameters.space}
    tuner.search(x, y, validation_data=validation, verbose=0)
    records = tuner.trials()
    budgets = sorted(r.values["tuner/epochs"] for r in records)
    assert len(records) >= 3 and set(budgets) == {1, 2}
    for record in records:
        check_measured(tuner, record)
        assert record.metrics["epochs_trained"] == record.values["tuner/epochs"]


def test_constraints_reject_and_mark_infeasible_and_report(tmp_path, digits_small):
    (x, y), validation = digits_small
    # Width 1.0 float stores 1,184 kernels * 4 bytes = 4,736 > 4,500: rejected
    # without training. The int8 file fits, but nothing meets 1 ns latency.
    tuner = tuning.GridSearch(
        tiny_hypermodel({"width": 1.0, "pruning": "none", "quantization": ["none", "ptq"]}),
        max_trials=2, baseline=False, max_bytes=4500, max_latency_ms=1e-6,
        directory=str(tmp_path), project_name="c")
    tuner.search(x, y, validation_data=validation, verbose=0)
    rejected, measured = tuner.trials()
    assert rejected.values["quantization"] == "none"
    assert rejected.rejected_before_training and not rejected.feasible
    assert rejected.metrics["size_bytes_lower_bound"] == 4736
    assert "tflite_accuracy" not in rejected.metrics and rejected.tflite_path is None
    assert "rejected before training" in rejected.reason
    assert measured.measured and not measured.feasible
    record = json.load(open(os.path.join(measured.directory, RECORD_FILE)))
    assert "max_latency_ms" in record["violations"] and "p50 over" in measured.reason
    assert measured.score > tuner.scalarization(measured.metrics) + 0.99  # penalised
    # Infeasible trials are never best, nor on the front.
    assert tuner.best_trials(2) == [] and tuner.get_best_hyperparameters() == []
    assert tuner.pareto_front() == []
    assert [r.trial_id for r in tuner.pareto_front(include_infeasible=True)] == [measured.trial_id]
    paths = tuner.write_report(str(tmp_path / "report"), command="pytest")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [row["status"] for row in rows] == ["rejected", "infeasible"]
    text = open(paths["markdown"]).read()
    assert "rejected before training" in text and "Command: `pytest`" in text
    assert os.path.getsize(paths["png"]) > 1000


def test_accuracy_drop_against_a_cached_baseline(tmp_path, digits_small):
    (x, y), validation = digits_small
    options = dict(max_trials=2, max_accuracy_drop=0.02, seed=1, directory=str(tmp_path),
                   project_name="b")
    hypermodel = tiny_hypermodel({"width": [1.0, 0.5], "quantization": "ptq"})
    tuner = tuning.RandomSearch(hypermodel, **options)
    tuner.search(x, y, validation_data=validation, verbose=0)
    baseline = tuner.baseline
    assert baseline["epochs_trained"] == 1 and baseline["size_bytes"] > 0
    for record in tuner.trials():
        drop = baseline["tflite_accuracy"] - record.metrics["tflite_accuracy"]
        assert record.metrics["accuracy_drop"] == pytest.approx(drop, abs=1e-6)
        assert record.feasible == (drop <= 0.02 + 1e-9)
        assert record.metrics["bytes_vs_baseline"] == pytest.approx(
            record.metrics["size_bytes"] / baseline["size_bytes"], rel=1e-6)
    cache = os.path.join(tuner.project_dir, "tfopt_baseline.json")
    stamp = os.stat(cache).st_mtime_ns
    # Reloaded project, same data: the cached baseline is reused.
    again = tuning.RandomSearch(hypermodel, overwrite=False, **options)
    again.search(x, y, validation_data=validation, verbose=0)
    assert os.stat(cache).st_mtime_ns == stamp and again.baseline == baseline
    assert len(again.trials()) == 2
    # Other validation data: measured again.
    again.search(x, y, validation_data=(validation[0][:64], validation[1][:64]), verbose=0)
    assert os.stat(cache).st_mtime_ns != stamp


def test_any_logged_metric_can_be_the_objective(tmp_path, digits_small):
    (x, y), validation = digits_small
    tuner = tuning.RandomSearch(tiny_hypermodel({"quantization": "ptq"}), objective="size_bytes",
                                max_trials=1, baseline=False, directory=str(tmp_path),
                                project_name="o")
    tuner.search(x, y, validation_data=validation, verbose=0)
    (record,) = tuner.trials()
    assert record.score == record.metrics["size_bytes"]
    assert os.path.isfile(os.path.join(record.directory, KERAS_FILE))


def test_bad_tuner_input(tmp_path, digits_small):
    (x, y), validation = digits_small
    options = dict(directory=str(tmp_path), project_name="bad", max_trials=1)
    with pytest.raises(ValueError, match="'val_accuracy' is never logged"):
        tuning.RandomSearch(tiny_hypermodel(), objective="val_accuracy", **options)
    with pytest.raises(ValueError, match="max_accuracy_drop is measured against the dense baseline"):
        tuning.RandomSearch(tiny_hypermodel(), max_accuracy_drop=0.01, baseline=False, **options)
    with pytest.raises(ValueError, match="max_accuracy_drop=-0.01"):
        tuning.RandomSearch(tiny_hypermodel(), max_accuracy_drop=-0.01, **options)
    with pytest.raises(ValueError, match="max_bytes=100 cannot be met: the smallest configuration"):
        tuning.RandomSearch(tiny_hypermodel({"width": [1.0, 0.5]}), max_bytes=100, **options)
    with pytest.raises(TypeError, match="needs a tfopt.tuning.CompressionHyperModel"):
        tuning.RandomSearch(lambda hp: None, **options)
    with pytest.raises(ValueError, match="baseline dict lacks"):
        tuning.RandomSearch(tiny_hypermodel(), baseline={"size_bytes": 1}, **options)
    tuner = tuning.RandomSearch(tiny_hypermodel(), baseline=False, **options)
    with pytest.raises(ValueError, match="validation_data=\\(x_val, y_val\\)"):
        tuner.search(x, y)
    assert isinstance(tuner.oracle.objective, keras_tuner.Objective)
