"""Honest verdicts (issue 12, item 6): noise-aware latency, child process,
CPU features and versions, accuracy collapse, random-weight agreement,
depthwise kernels left dense by the suites' pruning."""

import json
import os

import keras
import numpy as np
import pytest

from tfopt import bench
from tfopt import export
from tfopt.bench import harness
from tfopt.bench import report
from tfopt.bench import suites
from tfopt.data import load_digits

QUICK = harness.Settings(warmup=5, runs=160, min_seconds=0.4, device="cpu", latency_rounds=8)


def _small_cnn(size=8):
    return keras.Sequential([
        keras.Input((size, size, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.fixture(scope="module")
def digits_case():
    """A trained tiny CNN, a copy of its float row, and a sabotaged row."""

    def build():
        keras.utils.set_random_seed(0)
        (x, y), (x_test, y_test) = load_digits(8)
        model = _small_cnn()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        model.fit(x, y, epochs=8, verbose=0)
        return model, (x, y, x_test, y_test)

    def float_again(model, data, workdir):
        # The very same model exported a second time: same compute as float.
        path = os.path.join(workdir, "float-again.tflite")
        return harness.Artifact(export.to_tflite(model, path, batch_size=1), model)

    def sabotaged(model, data, workdir):
        broken = keras.models.clone_model(model)
        rng = np.random.default_rng(1)
        broken.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
        path = os.path.join(workdir, "sabotaged.tflite")
        return harness.Artifact(export.to_tflite(broken, path, batch_size=1), broken)

    return harness.Case("digits-tiny", build, [
        suites.float_recipe(), harness.Recipe("float-again", float_again),
        harness.Recipe("sabotaged", sabotaged)])


def test_same_file_twice_is_never_flagged(tmp_path):
    path = str(tmp_path / "cnn.tflite")
    export.to_tflite(_small_cnn(16), path, batch_size=1)
    for attempt in range(3):
        rows = bench.measure_files([path, path], runs=120, min_seconds=0.3, rounds=8, seed=attempt)
        paired = bench.compare_rounds(rows[1]["round_p50_ms"], rows[0]["round_p50_ms"])
        assert paired["rounds"] == 8 and paired["ci_low"] <= paired["ci_high"]
        assert paired["verdict"] not in ("slower", "faster"), (attempt, paired)


def test_compare_rounds_verdicts_and_errors():
    float_rounds = [1.00, 1.02, 0.99, 1.01, 1.00, 1.03]
    slower = bench.compare_rounds([2.0, 2.1, 1.9, 2.0, 2.05, 2.1], float_rounds)
    assert slower["verdict"] == "slower" and 1.9 < slower["ratio"] < 2.1
    assert slower["ci_low"] > 1.0
    faster = bench.compare_rounds([0.5, 0.52, 0.49, 0.5, 0.51, 0.5], float_rounds)
    assert faster["verdict"] == "faster" and faster["ci_high"] < 1.0
    # One noisy round making the mean 1.2x is not a verdict: the interval spans 1.
    noisy = bench.compare_rounds([1.0, 1.01, 0.98, 1.0, 2.2, 1.0], float_rounds)
    assert noisy["verdict"] == "within noise" and noisy["ci_low"] < 1.0
    # A consistent 2% difference is real but too small to call.
    assert bench.compare_rounds([x * 1.02 for x in float_rounds], float_rounds)["verdict"] == "within noise"
    assert bench.compare_rounds([2.0, 2.0], [1.0, 1.0])["verdict"] == "too few rounds"
    with pytest.raises(ValueError, match="equal, non-empty"):
        bench.compare_rounds([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        bench.compare_rounds([1.0, 0.0, 1.0], [1.0, 1.0, 1.0])


def test_measure_files_runs_in_a_fresh_child_and_reports_bad_files(tmp_path):
    good = str(tmp_path / "good.tflite")
    export.to_tflite(_small_cnn(), good, batch_size=1)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer")
    rows = bench.measure_files([good, str(corrupt)], runs=20, min_seconds=0.0, rounds=4)
    assert rows[0]["pid"] != os.getpid()
    assert rows[0]["result"].n >= 20 and len(rows[0]["round_p50_ms"]) == 4
    assert "error" in rows[1] and "corrupt" not in rows[0]
    with pytest.raises(ValueError, match="No such .tflite file"):
        bench.measure_files([str(tmp_path / "missing.tflite")])
    with pytest.raises(ValueError, match="rounds=0"):
        bench.measure_files([good], rounds=0)


def test_cpu_isa_from_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nmodel name : Test CPU\n"
                    "flags : fpu sse2 avx2 fma avx512f avx512_vnni amx_tile\n")
    assert report.cpu_isa(str(info)) == ["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI", "AMX"]
    assert report.cpu_isa(str(tmp_path / "none")) == ["unknown"]


def test_harness_verdicts_collapse_and_report(digits_case, tmp_path):
    results = harness.run_suite([digits_case], str(tmp_path / "out"), QUICK, command="pytest")
    rows = results["rows"]
    by = {row["recipe"]: row for row in rows}
    assert all(row["status"] == "ok" for row in rows), rows
    reference, again, sabotaged = by["float"], by["float-again"], by["sabotaged"]
    assert reference["latency_verdict"] == "reference"
    # Same compute as float: never "slower", never "faster".
    assert again["latency_verdict"] == "within noise", again
    assert again["slower_than_float"] is False
    assert again["accuracy_collapse"] is False and reference["accuracy_collapse"] is False
    assert sabotaged["accuracy_collapse"] is True
    assert sabotaged["accuracy_drop"] > 0.3
    # On the latency front, float and its copy tie (same accuracy, latency in the noise).
    points = [(r["tflite_accuracy"], r["cpu_p50_ms"]) for r in rows]
    front = report.pareto_front(points, intervals=report.latency_intervals(rows))
    assert {0, 1} <= set(front)

    text = (tmp_path / "out" / "results.md").read_text()
    env = json.loads((tmp_path / "out" / "results.json").read_text())["environment"]
    assert env["cpu_isa"] == report.cpu_isa() and env["tensorflow"] and env["ai_edge_litert"]
    assert "ISA: " + ", ".join(env["cpu_isa"]) in text
    assert f"TF {env['tensorflow']}" in text and f"Keras {env['keras']}" in text
    assert "**Accuracy collapse**: digits-tiny / sabotaged" in text
    assert "COLLAPSE (-" in text
    assert results["suite"] == "custom" and results["settings"]["num_threads"] == 1
    with pytest.raises(TypeError, match="list of harness.Case"):
        harness.run_suite(["quick"], str(tmp_path / "bad"))


def test_random_weight_agreement_is_not_presented(tmp_path):
    def build():
        keras.utils.set_random_seed(0)
        x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
        return _small_cnn(), (x, None, x, None)

    case = harness.Case("random", build, [suites.float_recipe()], random_weights=True)
    row = harness.run_case(case, QUICK, str(tmp_path))[0]
    assert row["status"] == "ok"
    assert row["top1_agreement"] == "n/a (random weights)"
    assert 0.0 <= row["top1_agreement_untrained"] <= 1.0 and row["max_abs_diff"] < 1e-4
    assert "| n/a (random weights) |" in report.markdown({
        "suite": "t", "command": "pytest", "environment": report.environment(),
        "settings": {"num_threads": 1, "runs": 1, "min_seconds": 0}, "rows": [row]})


def test_suite_pruning_leaves_depthwise_kernels_dense(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 1, name="expand")(inputs)
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep")(h)
    h = keras.layers.Conv2D(16, 1, name="project")(h)
    outputs = keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    assert suites.prunable_layer_names(model) == ["expand", "project", "head"]
    assert "dw" in suites.prunable_layer_names(model, include_depthwise=True)
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32")
    artifact = suites.prune_recipe(0.8).make(model, (x, None, x, None), str(tmp_path))
    final = artifact.keras_model
    dense_zero = lambda w: float(np.mean(np.asarray(w) == 0))  # noqa: E731
    assert dense_zero(final.get_layer("dw").kernel) == 0.0
    assert dense_zero(final.get_layer("sep").depthwise_kernel) == 0.0
    assert dense_zero(final.get_layer("project").kernel) == pytest.approx(0.8, abs=0.01)


def test_pareto_front_with_latency_noise():
    # Row 1 is 2% faster than row 0 but inside its interval: a tie, both kept.
    points = [(0.9, 1.00), (0.9, 0.98), (0.8, 0.50), (0.7, 0.52)]
    noise = [None, (None, (0.95, 1.01)), (None, (0.49, 0.51)), (None, (0.45, 0.60))]
    assert report.pareto_front(points, intervals=noise) == [0, 1, 2]
    # Without the noise, row 1 beats row 0 and row 3 is beaten by row 2.
    assert report.pareto_front(points) == [1, 2]
    with pytest.raises(ValueError, match="intervals"):
        report.pareto_front(points, intervals=[None])
