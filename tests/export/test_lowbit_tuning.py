"""The compression search's opt-in precisions below int8 ("int4", "int16x8")."""

import keras_tuner
import pytest

from tests.tuning.conftest import digits_small  # noqa: F401 (fixture)
from tests.tuning.conftest import tiny_hypermodel
from tfopt import tuning


@pytest.mark.parametrize("mode, dtype", [("int4", "int4"), ("int16x8", "int8")])
def test_search_trial_exports_lowbit_file(digits_small, mode, dtype):  # noqa: F811
    (x, y), validation = digits_small
    hypermodel = tiny_hypermodel({"quantization": mode})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    cfg = hypermodel.config(hp)
    assert cfg.quantization == mode
    outcome = hypermodel._run_config(cfg, model, x, y, validation)
    metrics = outcome.metrics
    assert abs(metrics["tflite_accuracy"] - metrics["keras_accuracy"]) <= 0.05
    stored = {row["weight_dtype"] for row in outcome.exported.layers}
    assert stored == {dtype}
    assert metrics["size_bytes"] >= hypermodel.size_lower_bound(model, cfg)


def test_lowbit_modes_are_opt_in_and_validated():
    assert tuning.CompressionHyperModel(lambda width: None).space["quantization"] == (
        "none", "ptq", "qat")
    with pytest.raises(ValueError, match="value 'int3' must be one of"):
        tiny_hypermodel({"quantization": ["ptq", "int3"]})
