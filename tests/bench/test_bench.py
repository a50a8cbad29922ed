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


@pytest.fixture(scope="module")
def tiny_case():
    def build():
        keras.utils.set_random_seed(0)
        from tfopt.data import load_digits

        (x, y), (x_test, y_test) = load_digits(8)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=3, verbose=0)
        return model, (x, y, x_test, y_test)

    def broken(model, data, workdir):
        raise ValueError("this recipe is broken on purpose")

    return harness.Case("tiny", build, [
        suites.float_recipe(), suites.ptq_recipe("dynamic"), suites.ptq_recipe("int8"),
        harness.Recipe("broken", broken), suites.prune_recipe(0.8, epochs=3),
        suites.qat_recipe(epochs=1), suites.qat_recipe(epochs=1, prune_target=0.8),
    ])


FAST = harness.Settings(warmup=2, runs=20, min_seconds=0.0, device="cpu")


def test_measure_latency_statistics_on_a_real_file(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = str(tmp_path / "m.tflite")
    export.to_tflite(model, path)
    result = bench.measure_latency(path, num_threads=1, warmup=3, runs=50, min_seconds=0.0)
    assert result.n == 50 and result.num_threads == 1
    assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.p99_reliable is False  # fewer than 1000 samples
    assert result.first_invoke_ms > 0 and result.init_ms > 0
    assert "LiteRT" in result.device


def test_measure_latency_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="No such .tflite file"):
        bench.measure_latency(str(tmp_path / "missing.tflite"))
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="cannot load"):
        bench.measure_latency(str(corrupt))
    with pytest.raises(ValueError, match="num_threads=0"):
        bench.measure_latency(b"x", num_threads=0)
    with pytest.raises(TypeError, match="got int"):
        bench.measure_latency(42)


def test_harness_records_failures_and_compares_with_float(tiny_case, tmp_path):
    rows = harness.run_case(tiny_case, FAST, str(tmp_path))
    by_recipe = {row["recipe"]: row for row in rows}
    assert by_recipe["broken"]["status"] == "failed"
    assert "broken on purpose" in by_recipe["broken"]["reason"]
    for name in ("float", "ptq-dynamic", "ptq-int8", "prune-80"):
        row = by_recipe[name]
        assert row["status"] == "ok", row
        assert row["gpu_tf_p50_ms"] == harness.NOT_ASKED
        assert row["gpu_litert_status"] == harness.NOT_ASKED
        assert row["cpu_n"] >= 20
    assert by_recipe["float"]["bytes_vs_float"] == 1.0
    assert by_recipe["float"]["max_abs_diff"] < 1e-4
    # Tiny model: ~4 KB of flatbuffer overhead caps the saving.
    assert by_recipe["ptq-int8"]["bytes_vs_float"] < 0.8
    assert abs(by_recipe["ptq-int8"]["tflite_accuracy"] - by_recipe["float"]["tflite_accuracy"]) < 0.05
    assert by_recipe["prune-80"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert by_recipe["prune-80"]["gzip_vs_float"] < 0.6
    qat, pruned_qat = by_recipe["qat-int8"], by_recipe["prune-80 +qat-int8"]
    assert qat["status"] == "ok" and pruned_qat["status"] == "ok", (qat, pruned_qat)
    assert qat["top1_agreement"] >= 0.97 and qat["weight_dtypes"] == ["int8"]
    assert qat["train_step_vs_plain"] > 0
    assert pruned_qat["sparsity"] >= 0.79


def test_failed_case_build_fails_every_row_but_not_the_run(tmp_path):
    def build():
        raise RuntimeError("no data")

    case = harness.Case("broken-case", build, [suites.float_recipe(), suites.ptq_recipe("int8")])
    rows = harness.run_case(case, FAST, str(tmp_path))
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all("no data" in row["reason"] for row in rows)


def test_report_markdown_json_and_plots(tiny_case, tmp_path):
    rows = harness.run_case(tiny_case, FAST, str(tmp_path / "tflite"))
    results = {
        "suite": "tiny", "command": "pytest", "environment": report.environment(),
        "settings": {"num_threads": 1, "runs": 20, "min_seconds": 0.0},
        "descriptions": {"tiny": "a tiny MLP"}, "rows": rows,
    }
    paths = report.write(results, str(tmp_path))
    text = (tmp_path / "results.md").read_text()
    assert "| ptq-int8 |" in text and "failed: ValueError: this recipe is broken" in text
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["recipe"] == "float"
    assert paths and all(os.path.getsize(p) > 1000 for p in paths)


def test_pareto_front_is_exact():
    points = [(0.90, 100), (0.95, 200), (0.85, 50), (0.94, 300), (0.95, 200), (0.80, 60)]
    # (0.94, 300) is beaten by (0.95, 200); (0.80, 60) by (0.85, 50); ties both stay.
    assert report.pareto_front(points) == [0, 1, 2, 4]


def test_settings_and_suite_errors():
    with pytest.raises(ValueError, match="device='tpu'"):
        harness.Settings(device="tpu")
    with pytest.raises(ValueError, match="Unknown suite 'huge'"):
        suites.get_suite("huge")
    if not bench.gpu_devices():
        with pytest.raises(RuntimeError, match="sees no GPU"):
            harness.gpu_context(harness.Settings(device="gpu"))
    if not bench.latency.tf_gpu_devices():
        with pytest.raises(RuntimeError, match="no GPU"):
            bench.latency.measure_keras_gpu(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), np.ones((1, 2), "float32"))


def test_without_an_adapter_gpu_columns_say_why(tiny_case, tmp_path, monkeypatch):
    # A machine without any Vulkan adapter (simulated by tfopt's own detection
    # answering "none"; LiteRT itself is not replaced).
    none = dict(available=False, name=None, software=None, backend=None, label=None,
                reason=bench.latency.NO_ADAPTER_HINT)
    monkeypatch.setattr(bench.latency, "litert_gpu_adapter", lambda refresh=False: dict(none))
    if bench.latency.tf_gpu_devices():
        pytest.skip("TensorFlow sees a CUDA GPU here")
    with pytest.raises(RuntimeError, match="bookworm-backports"):
        harness.gpu_context(harness.Settings(device="gpu"))
    case = harness.Case("tiny", tiny_case.build, [suites.float_recipe()])
    row = harness.run_case(case, harness.Settings(warmup=1, runs=10, min_seconds=0.0,
                                                  latency_rounds=3), str(tmp_path))[0]
    assert row["status"] == "ok" and row["cpu_p50_ms"] > 0
    assert row["gpu_litert_status"] == "no GPU adapter"
    assert "mesa-vulkan-drivers" in row["gpu_litert_reason"]
    assert row["gpu_tf_p50_ms"] == harness.NO_TF_GPU
    path = str(tmp_path / "tiny-float.tflite")
    export.to_tflite(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), path, batch_size=1)
    check = bench.check_litert_gpu(path, [np.zeros((1, 4), "float32")])
    assert check["status"] == "no GPU adapter" and check["latency"] is None
