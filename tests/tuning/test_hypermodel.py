"""The search space: declaration, conditional parameters, every branch's
model, size bounds and bad input."""

import itertools

import keras
import keras_tuner
import numpy as np
import pytest

from tfopt import export
from tfopt import pruning
from tfopt import tuning
from tfopt.tuning.space import PRUNING_PATTERNS
from tfopt.tuning.space import QUANTIZATION_MODES
from tfopt.tuning.space import SCHEDULES
from tests.tuning.conftest import tiny_hypermodel
from tests.tuning.conftest import tiny_mlp


def hp_with(**values):
    hp = keras_tuner.HyperParameters()
    hp.values.update(values)
    return hp


def test_default_space_and_conditional_scopes():
    hypermodel = tuning.CompressionHyperModel(tiny_mlp)
    hp = keras_tuner.HyperParameters()
    cfg = hypermodel.config(hp)
    assert cfg == tuning.TrialConfig(width=1.0, learning_rate=1e-3, epochs=4)
    names = {p.name for p in hp.space}
    assert names == {"width", "learning_rate", "epochs", "pruning", "sparsity", "schedule",
                     "quantization"}
    # sparsity and schedule only exist for unstructured and block pruning.
    conditional = {p.name: p.conditions for p in hp.space if p.conditions}
    assert set(conditional) == {"sparsity", "schedule"}
    assert conditional["sparsity"][0].values == ["unstructured", "block"]
    assert not hp.is_active("sparsity")
    hp = hp_with(pruning="block")  # children take their defaults once active
    cfg = hypermodel.config(hp)
    assert (cfg.pruning, cfg.sparsity, cfg.schedule) == ("block", 0.5, "polynomial")
    assert hp.is_active("sparsity")
    hp.values["pruning"] = "2:4"
    assert hypermodel.config(hp).sparsity is None


def test_space_overrides_fix_or_restrict():
    hypermodel = tiny_hypermodel({"pruning": ["2:4", "none"], "quantization": "qat",
                                  "width": [0.5, 1]})
    hp = keras_tuner.HyperParameters()
    cfg = hypermodel.config(hp)
    assert (cfg.pruning, cfg.quantization, cfg.width, cfg.epochs) == ("2:4", "qat", 0.5, 1)
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds["quantization"] == "Fixed" and kinds["pruning"] == "Choice"
    # No unstructured/block left: sparsity and schedule are not declared at all.
    assert "sparsity" not in kinds and "schedule" not in kinds
    assert hp.get("width") == 0.5 and isinstance(hp.get("width"), float)


@pytest.mark.parametrize("space, error, match", [
    ({"sparsity_target": 0.5}, ValueError, "Unknown hyperparameter 'sparsity_target'.*sparsity"),
    ({"temperature": 4.0}, ValueError, "'temperature' does not apply here: distillation needs teacher"),
    ({"structured_ratio": 0.5}, ValueError, "'structured_ratio' does not apply here"),
    ({"sparsity": [0.5, 1.0]}, ValueError, "value 1.0 must be < 1.0"),
    ({"pruning": "random"}, ValueError, "'random' must be one of"),
    ({"epochs": 0.5}, ValueError, "must be an int"),
    ({"width": []}, ValueError, "is empty"),
    ({"width": [1.0, 1.0]}, ValueError, "repeats a value"),
    ([("width", 1.0)], TypeError, "space must be a dict"),
])
def test_bad_space(space, error, match):
    with pytest.raises(error, match=match):
        tuning.CompressionHyperModel(tiny_mlp, space=space)


def test_bad_construction():
    base = tiny_mlp()
    with pytest.raises(ValueError, match="exactly one of build_model"):
        tuning.CompressionHyperModel()
    with pytest.raises(ValueError, match="exactly one of build_model"):
        tuning.CompressionHyperModel(tiny_mlp, base_model=base)
    with pytest.raises(ValueError, match="'width' does not apply here: a base model"):
        tuning.CompressionHyperModel(base_model=base, space={"width": 0.5})
    with pytest.raises(TypeError, match="must be a keras.Model"):
        tuning.CompressionHyperModel(base_model="model.keras")
    with pytest.raises(ValueError, match="structured=True .* needs trained weights"):
        tuning.CompressionHyperModel(tiny_mlp, structured=True)
    with pytest.raises(ValueError, match="qat_epochs=0"):
        tuning.CompressionHyperModel(tiny_mlp, qat_epochs=0)
    with pytest.raises(ValueError, match="Unknown latency setting"):
        tuning.CompressionHyperModel(tiny_mlp, latency={"threads": 2})
    with pytest.raises(TypeError, match="build_model must be callable"):
        tuning.CompressionHyperModel("tiny")


def test_build_function_errors_are_clear():
    hypermodel = tuning.CompressionHyperModel(lambda width: "not a model")
    with pytest.raises(TypeError, match=r"build_model\(...\) must be a keras.Model"):
        hypermodel.build(keras_tuner.HyperParameters())


@pytest.mark.parametrize("pattern, schedule, quantization", [
    (p, s, q) for p, s, q in itertools.product(PRUNING_PATTERNS, SCHEDULES, QUANTIZATION_MODES)
    if s == "polynomial" or p in ("unstructured", "block")
])
def test_every_branch_builds(pattern, schedule, quantization):
    hypermodel = tiny_hypermodel({"width": [1.0, 0.5]})
    hp = hp_with(width=0.5, pruning=pattern, schedule=schedule, quantization=quantization,
                 sparsity=0.75)
    cfg = hypermodel.config(hp)
    model = hypermodel.build(hp)
    assert model.get_layer(index=1).units == 8  # width 0.5 of 16
    wrapped = hypermodel.apply_pruning(model, cfg, total_steps=40)
    wrappers = pruning.api.pruning_wrappers(wrapped)
    if pattern == "none":
        assert wrapped is model and not wrappers
        return
    # Block (1, 4) cannot tile Dense(10)'s 10 outputs: that layer stays dense.
    assert len(wrappers) == (1 if pattern == "block" else 2)
    schedule_of = wrappers[0].pruning_schedule
    if pattern == "2:4":
        assert wrappers[0].sparsity_m_by_n == (2, 4)
        assert isinstance(schedule_of, pruning.ConstantSparsity)
    else:
        expected = pruning.PolynomialDecay if schedule == "polynomial" else pruning.ConstantSparsity
        assert isinstance(schedule_of, expected)
        assert schedule_of.end_sparsity() == 0.75
        assert schedule_of.end_step == 30  # 3/4 of the steps, then recover
    if pattern == "block":
        assert wrappers[0].block_size == (1, 4)


def test_patterns_skip_layers_they_cannot_tile():
    # Dense(10) has 10 outputs: blocks of (1, 4) cannot tile it; its 8
    # inputs still take 2:4.
    hypermodel = tiny_hypermodel({"width": 0.5})
    model = hypermodel.build(hp_with())
    cfg = tuning.TrialConfig(width=0.5, pruning="block", sparsity=0.5, schedule="constant")
    wrapped = hypermodel.apply_pruning(model, cfg, 10)
    assert [w.layer.name for w in pruning.api.pruning_wrappers(wrapped)] == [model.layers[1].name]
    cfg = tuning.TrialConfig(width=0.5, pruning="2:4")
    assert len(pruning.api.pruning_wrappers(hypermodel.apply_pruning(model, cfg, 10))) == 2
    odd = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="No layer of .* fits pruning pattern '2:4'"):
        hypermodel.apply_pruning(odd, cfg, 10)


def test_base_model_is_copied_not_changed(digits_small):
    base = tiny_mlp()
    before = [w.copy() for w in base.get_weights()]
    hypermodel = tuning.CompressionHyperModel(base_model=base, space={"epochs": 1})
    copy = hypermodel.build(hp_with())
    assert copy is not base
    for a, b in zip(copy.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    hp = hp_with(pruning="unstructured", sparsity=0.5)
    (x, y), validation = digits_small
    outcome = hypermodel.run(hp, hypermodel.build(hp), x, y, validation_data=validation)
    assert outcome.metrics["sparsity"] == pytest.approx(0.5, abs=0.01)
    for a, b in zip(base.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_build_function_taking_hp_declares_its_own_parameters():
    def build(hp):
        units = hp.Choice("units", [8, 4])
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(int(units * hp.get("width"))),
                                 keras.layers.Dense(10)])

    hypermodel = tuning.CompressionHyperModel(build, space={"width": [1.0, 0.5]})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert "units" in hp.values and model.layers[1].units == 8


def test_size_lower_bound_holds_for_float_and_int8(digits_small):
    (x, _), _ = digits_small
    hypermodel = tiny_hypermodel()
    model = hypermodel.build(hp_with())
    kernels = 64 * 16 + 16 * 10
    float_cfg = tuning.TrialConfig(width=1.0)
    int8_cfg = tuning.TrialConfig(width=1.0, quantization="ptq")
    assert hypermodel.size_lower_bound(model, float_cfg) == 4 * kernels
    assert hypermodel.size_lower_bound(model, int8_cfg) == kernels
    assert export.to_tflite(model, batch_size=1).size_bytes >= 4 * kernels
    int8 = export.to_tflite(model, quantization="int8", representative_data=x[:32], batch_size=1)
    assert int8.size_bytes >= kernels


def test_fit_follows_kerastuners_contract(digits_small):
    (x, y), validation = digits_small
    hypermodel = tiny_hypermodel({"pruning": "2:4", "quantization": "qat"})
    hp = keras_tuner.HyperParameters()
    metrics = hypermodel.fit(hp, hypermodel.build(hp), x, y, validation_data=validation)
    for name in ("score", "tflite_accuracy", "keras_accuracy", "size_bytes", "gzip_bytes",
                 "p50_ms", "p90_ms", "params", "sparsity"):
        assert isinstance(metrics[name], float), name
    assert metrics["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert metrics["epochs_trained"] == 2.0  # 1 + 1 QAT
    # QAT int8 runs the same integer arithmetic Keras simulates.
    assert abs(metrics["tflite_accuracy"] - metrics["keras_accuracy"]) <= 0.03
    with pytest.raises(ValueError, match="validation_data"):
        hypermodel.fit(hp, hypermodel.build(hp), x, y)
