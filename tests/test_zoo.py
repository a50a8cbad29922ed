"""The zoo builders and tasks (the smallest ones; the full zoo is the benchmark)."""

import keras
import numpy as np
import pytest

from tfopt import zoo
from tfopt.bench import suites


@pytest.mark.parametrize("name", ["kws_conv1d", "unet", "detection_head"])
def test_zoo_model_builds_and_trains_on_its_task(name):
    model = zoo.build(name)
    again = zoo.build(name)  # same seed, same initial weights
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    (x, y), (x_test, y_test) = zoo.task(name, n_train=32, n_test=8)
    assert model.input_shape[1:] == x.shape[1:]
    outputs = model.outputs
    labels = y if isinstance(y, tuple) else (y,)
    assert len(outputs) == len(labels)
    # Class/mask logits: one per label position; boxes: 4 numbers in [0, 1].
    assert tuple(outputs[0].shape[1:-1]) == labels[0].shape[1:]
    assert labels[0].min() >= 0 and labels[0].max() < outputs[0].shape[-1]
    history = zoo.compile_model(model).fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_vit_with_position_embedding_saves_and_loads(tmp_path):
    model = zoo.build("vit_tiny")
    path = str(tmp_path / "vit.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = zoo.task("vit_tiny", n_train=4, n_test=4)[0][0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_zoo_suite_lists_every_model_and_refuses_unknown_names():
    from tfopt.bench import zoo_suite

    cases = suites.get_suite("zoo")
    assert [case.name for case in cases] == zoo.names()
    assert len(zoo.names()) == 16
    recipes = [recipe.name for recipe in cases[0].recipes]
    assert recipes[:3] == ["float", "ptq-int8 b1", f"ptq-int8 b{zoo_suite.BATCH_N}"]
    assert {"prune-50", "prune-80", "qat-int8", "channels-50", "tfmot-prune-50",
            "tfmot-qat-int8"} <= set(recipes)
    with pytest.raises(ValueError, match="Unknown zoo model 'resnet9'"):
        zoo_suite.cases(["resnet9"])
    with pytest.raises(ValueError, match="Unknown zoo model"):
        zoo.build("resnet9")


def _zoo_script():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "zoo.py")
    spec = importlib.util.spec_from_file_location("zoo_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quick_timing(monkeypatch):
    """Short timing, no GPU check: zoo.py tests are about the bookkeeping of real rows."""
    from tfopt.bench import zoo_suite

    for key, value in (("runs", 5), ("min_seconds", 0.0), ("latency_rounds", 1), ("device", "cpu")):
        monkeypatch.setitem(zoo_suite.SETTINGS, key, value)


def test_zoo_benchmark_saves_each_model_resumes_and_merges(tmp_path, monkeypatch):
    import json

    from tfopt.bench import zoo_suite

    script = _zoo_script()
    quick_timing(monkeypatch)
    out, other = str(tmp_path / "zoo"), str(tmp_path / "other")
    flags = ["--epochs", "0", "--n-train", "16", "--n-test", "8", "--no-tfmot",
             "--recipes", "float"]
    script.main(["--models", "kws_conv1d", *flags, "--out", out])
    saved = json.load(open(f"{out}/results.json"))
    assert [(r["model"], r["recipe"], r["status"]) for r in saved["rows"]] == [
        ("kws_conv1d", "float", "ok")]
    assert saved["budgets"]["kws_conv1d"]["n_train"] == 16
    # Re-running the same command measures nothing new: the row is the same one.
    script.main(["--models", "kws_conv1d", *flags, "--out", out])
    again = json.load(open(f"{out}/results.json"))
    assert again["rows"] == saved["rows"] and len(again["runs"]) == 1
    # A piece run elsewhere (the legacy one-command layout) merges in.
    legacy = dict(saved, command="python benchmarks/zoo.py --models unet", epochs=2, n_train=384,
                  n_test=128, rows=[dict(saved["rows"][0], model="unet")])
    for key in ("runs", "budgets"):
        legacy.pop(key)
    (tmp_path / "other").mkdir()
    json.dump(legacy, open(f"{other}/results.json", "w"))
    script.main(["--merge", other, "--out", out])
    merged = json.load(open(f"{out}/results.json"))
    assert [r["model"] for r in merged["rows"]] == ["kws_conv1d", "unet"]
    assert merged["budgets"]["unet"]["epochs"] == 2
    text = open(f"{out}/results.md").read()
    assert "--models unet" in text and "| unet | 2 | 2 | 384 | 128 |" in text
    with pytest.raises(SystemExit, match="settings"):
        monkeypatch.setitem(zoo_suite.SETTINGS, "runs", 6)
        script.main(["--models", "kws_conv1d", *flags, "--out", out])


def test_zoo_budgets_cover_every_model_and_logit_errors_measure_the_gap():
    from tfopt.bench import zoo_suite

    assert set(zoo_suite.BUDGETS) == set(zoo.names())
    assert zoo_suite.budget("unet", epochs=2) == zoo_suite.Budget(2, 2, 384, 128, None)
    assert zoo_suite.budget("unet", n_test=50).n_test == 50
    with pytest.raises(ValueError, match="n_train must be >= 0"):
        zoo_suite.budget("unet", n_train=-1)
    model = zoo.build("detection_head", bn_momentum=0.5)
    assert {l.momentum for l in model.layers if isinstance(l, keras.layers.BatchNormalization)} \
        == {0.5}
    logits = np.array([[0.0, 4.0], [2.0, -4.0]])
    errors = zoo_suite.logit_errors(logits + [[0.8, 0.0], [0.0, 0.0]], logits)
    assert errors["logit_err_range"] == pytest.approx(0.1)
    assert errors["logit_err_rms"] == pytest.approx(0.4 / 3.0)
