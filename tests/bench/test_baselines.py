"""The tf_keras baseline scripts run on weights trained by Keras 3."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfopt.data import load_digits
from tfopt.models import compile_classifier
from tfopt.models import digits_cnn

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    pytest.importorskip("tensorflow_model_optimization")
    (x, y), (x_test, y_test) = load_digits(8)
    model = compile_classifier(digits_cnn(8))
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path_factory.mktemp("baseline") / "data.npz")
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(path, x_train=x, y_train=y, x_test=x_test, y_test=y_test, **weights)
    return path


def _run(script, arguments, tmp_path):
    out = str(tmp_path / "result.json")
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *arguments, "--out", out],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out) as handle:
        return json.load(handle)


def test_tfmot_pruning_baseline(npz, tmp_path):
    result = _run("tfmot_baseline.py", ["--data", npz, "--sparsities", "0.5", "--frequency", "1",
                                        "--ramp-epochs", "1", "--finetune-epochs", "0",
                                        "--skip-timing", "--tflite-dir", str(tmp_path)], tmp_path)
    run = result["runs"][0]
    assert run["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert os.path.getsize(run["tflite_path"]) == run["tflite_bytes"]
    assert run["tflite_accuracy"] == pytest.approx(run["accuracy"], abs=0.01)


def test_tfmot_qat_baseline(npz, tmp_path):
    # --lr-decay cosine: the schedule the suites give it (as tfopt's own QAT).
    result = _run("tfmot_qat_baseline.py", ["--data", npz, "--epochs", "1", "--skip-timing",
                                            "--lr-decay", "cosine"], tmp_path)
    assert set(result["qat"]["weight_dtypes"].values()) == {"int8"}
    assert result["qat"]["tflite_accuracy"] == pytest.approx(result["qat"]["accuracy"], abs=0.02)
