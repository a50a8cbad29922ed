"""The GPU path for real: LiteRT's GPU accelerator (WebGPU/Dawn over Vulkan).

On CI this runs on Mesa's software Vulkan device (lavapipe), which `.ci/run`
installs; there `TFOPT_REQUIRE_GPU_ADAPTER=1` turns a missing adapter into a
failure. Elsewhere, without an adapter, the tests are skipped with the reason.
"""

import os

import keras
import numpy as np
import pytest

from tfopt import bench
from tfopt import export
from tfopt import quantization
from tfopt.bench import harness
from tfopt.bench import latency
from tfopt.bench import suites
from tfopt.data import load_digits

REL_TOL = 1e-4  # float and float16 files vs the CPU interpreter


@pytest.fixture(scope="module")
def adapter():
    info = bench.litert_gpu_adapter()
    if not info["available"]:
        if os.environ.get("TFOPT_REQUIRE_GPU_ADAPTER"):
            pytest.fail(f"TFOPT_REQUIRE_GPU_ADAPTER is set but: {info['reason']}")
        pytest.skip(info["reason"])
    return info


def _files(model, x_rep, tmp, name, qat_model=None):
    paths = {}
    paths["float"] = export.to_tflite(model, f"{tmp}/{name}-float.tflite", batch_size=1).path
    paths["float16"] = export.to_tflite(model, f"{tmp}/{name}-f16.tflite", batch_size=1,
                                        quantization="float16").path
    paths["ptq-int8"] = export.to_tflite(model, f"{tmp}/{name}-int8.tflite", batch_size=1,
                                         quantization="int8", representative_data=x_rep).path
    if qat_model is not None:
        paths["qat-int8"] = export.to_tflite(qat_model, f"{tmp}/{name}-qat.tflite", batch_size=1,
                                             quantization="int8").path
    return paths


def _assert_checks(paths, checks, adapter, top1=True):
    by = dict(zip(paths, checks))
    for kind in ("float", "float16"):
        check = by[kind]
        assert check["status"] == "ok", (kind, check)
        assert check["rel_diff"] < REL_TOL, (kind, check["rel_diff"])
        assert check["top1_agreement"] == 1.0 or not top1
        assert check["adapter"] == adapter["label"]
        assert check["latency"].n >= 1 and check["latency"].p50_ms > 0
    for kind in [k for k in paths if "int8" in k]:
        check = by[kind]
        # An int8 file runs (the accelerator dequantizes) or says why not.
        if check["status"] == "ok":
            assert check["max_abs_diff"] is not None and not check.get("nonfinite_outputs"), check
            assert check["top1_agreement"] >= 0.75 or not top1, check
        else:
            assert check["status"] == "refused" and len(check["reason"]) > 10, check


def test_adapter_is_detected_and_labelled(adapter):
    assert adapter["name"] and adapter["backend"]
    assert isinstance(adapter["software"], bool)
    if adapter["software"]:
        assert latency.SOFTWARE_LABEL in adapter["label"]
    assert any(name.startswith("LiteRT: ") for name in bench.gpu_devices())


def test_small_cnn_float_float16_int8_files_on_the_gpu(adapter, tmp_path):
    keras.utils.set_random_seed(0)
    (x, y), (x_test, _) = load_digits(16)
    model = keras.Sequential([
        keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    qat = quantization.quantize_model(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    paths = _files(model, x[:64], tmp_path, "cnn", qat)
    dynamic = export.to_tflite(model, f"{tmp_path}/cnn-dynamic.tflite").path
    # A "batch N" file of a fixed batch 8: each example fills its 8 rows.
    batch8 = export.to_tflite(model, f"{tmp_path}/cnn-b8.tflite", batch_size=8).path
    examples = [x_test[i:i + 1] for i in range(4)]
    checks = bench.check_litert_gpu(list(paths.values()) + [batch8, dynamic], examples, runs=2)
    _assert_checks(paths, checks[:-2], adapter)
    assert checks[-2]["status"] == "ok" and checks[-2]["rel_diff"] < REL_TOL, checks[-2]
    refused = checks[-1]
    assert refused["status"] == "refused" and "static" in refused["reason"]
    assert "batch_size=1" in refused["reason"] and refused["latency"] is None


def test_mobilenetv2_035_files_on_the_gpu(adapter, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None,
                                           classes=10)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 64, 64, 3)).astype("float32")
    qat = quantization.quantize_model(model)
    qat(x, training=True)  # one training-mode pass sets the activation ranges
    paths = _files(model, x, tmp_path, "mnv2", qat)
    checks = bench.check_litert_gpu(list(paths.values()), [x[:1], x[1:2]], runs=1)
    # Random weights: the softmax is near-uniform, so top-1 agreement says
    # nothing here; the outputs themselves are compared.
    _assert_checks(paths, checks, adapter, top1=False)


def test_harness_gpu_columns_label_the_software_device(adapter, tmp_path):
    def build():
        keras.utils.set_random_seed(0)
        (x, y), (x_test, y_test) = load_digits(8)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=2, verbose=0)
        return model, (x, y, x_test, y_test)

    def dynamic(model, data, workdir):
        return harness.Artifact(export.to_tflite(model, f"{workdir}/dyn.tflite"), model)

    case = harness.Case("gpu-tiny", build, [suites.float_recipe(), suites.ptq_recipe("float16"),
                                            harness.Recipe("dynamic-batch", dynamic)])
    settings = harness.Settings(warmup=2, runs=40, min_seconds=0.0, device="gpu", latency_rounds=4)
    rows = harness.run_case(case, settings, str(tmp_path))
    by = {row["recipe"]: row for row in rows}
    for name in ("float", "ptq-float16"):
        row = by[name]
        assert row["gpu_litert_status"] == "ok", row
        assert row["gpu_litert_rel_diff"] < REL_TOL and row["gpu_litert_adapter"] == adapter["label"]
        if adapter["software"]:
            assert row["gpu_litert_p50_ms"] == latency.SOFTWARE_LABEL
            assert row["gpu_litert_software_p50_ms"] > 0
        else:
            assert row["gpu_litert_p50_ms"] > 0
        # CPU columns and their verdicts stand apart from the GPU.
        assert row["cpu_p50_ms"] > 0
    assert by["dynamic-batch"]["gpu_litert_status"] == "refused"
    assert "static" in by["dynamic-batch"]["gpu_litert_reason"]
    if not latency.tf_gpu_devices():
        assert by["float"]["gpu_tf_p50_ms"] == harness.NO_TF_GPU
