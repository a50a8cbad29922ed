"""Distillation and structured pruning inside a trial (conditional hyperparameters).

Distillation runs through `tfopt.pipeline.train(teacher=...)`, structured
pruning through `prune_channels` in `CompressionHyperModel.architecture`.
"""

import keras
import keras_tuner
import pytest

from tfopt import tuning
from tfopt.tuning import space as space_lib
from tests.tuning.conftest import QUICK_LATENCY
from tests.tuning.conftest import tiny_mlp


def test_distillation_parameters_are_conditional():
    space = space_lib.normalize_space(None, {n: None for n in space_lib.NAMES})
    hp = keras_tuner.HyperParameters()
    cfg = space_lib.read_config(hp, space)
    assert cfg.distillation is True and (cfg.temperature, cfg.alpha) == (4.0, 0.1)
    conditions = {p.name: p.conditions for p in hp.space if p.conditions}
    assert conditions["temperature"][0].name == "distillation"
    hp.values["distillation"] = False
    cfg = space_lib.read_config(hp, space)
    assert cfg.temperature is None and cfg.alpha is None


def trained(model, digits_small):
    (x, y), _ = digits_small
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    return model


def test_distilled_trial(digits_small):
    (x, y), validation = digits_small
    teacher = trained(tiny_mlp(2.0), digits_small)
    hypermodel = tuning.CompressionHyperModel(
        tiny_mlp, teacher=teacher, latency=QUICK_LATENCY,
        space={"width": 0.5, "epochs": 1, "distillation": True, "temperature": [4.0, 2.0],
               "alpha": 0.5, "pruning": "unstructured", "sparsity": 0.5, "quantization": "ptq"})
    hp = keras_tuner.HyperParameters()
    outcome = hypermodel.run(hp, hypermodel.build(hp), x, y, validation_data=validation)
    assert outcome.config.distillation and outcome.config.temperature == 4.0
    assert outcome.model.count_params() == tiny_mlp(0.5).count_params()  # the student
    assert outcome.metrics["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_structured_trial(digits_small):
    (x, y), validation = digits_small
    base = trained(tiny_mlp(), digits_small)
    hypermodel = tuning.CompressionHyperModel(
        base_model=base, latency=QUICK_LATENCY,
        space={"structured_ratio": [0.5, 0.0], "epochs": 1, "pruning": "none",
               "quantization": "ptq"})
    hp = keras_tuner.HyperParameters()
    assert hypermodel.structured and hypermodel.config(hp).structured_ratio == 0.5
    narrow = hypermodel.build(hp)
    assert narrow.count_params() < base.count_params()
    cfg = hypermodel.config(hp)
    assert hypermodel.size_lower_bound(narrow, cfg) < hypermodel.size_lower_bound(base, cfg)
    outcome = hypermodel.run(hp, narrow, x, y, validation_data=validation)
    assert outcome.metrics["params"] == narrow.count_params()
