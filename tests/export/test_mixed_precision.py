"""mixed_precision: a precision per layer under a byte budget, real files."""

import warnings

import keras
import numpy as np
import pytest

from tfopt import export
from tfopt.export.mixed_precision import WARN_AGREEMENT
from tfopt.export.mixed_precision import WARN_ERROR
from tfopt.export.mixed_precision import format_table
from tfopt.export.mixed_precision import measure_sensitivity
from tests.pruning.helpers import compile_model


@pytest.fixture(scope="module")
def setup(digits8):
    (x, y), _ = digits8
    keras.utils.set_random_seed(5)
    model = compile_model(keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ]))
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    float_export = export.to_tflite(model)
    smallest = export.quantize_tflite(float_export, mode="int4_dynamic")
    return model, float_export, smallest


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_budget_honoured_exactly(setup, digits8, fraction):
    model, float_export, smallest = setup
    (x, _), (x_test, y_test) = digits8
    low, high = smallest.size_bytes, float_export.size_bytes // 2
    budget = int(low + fraction * (high - low))
    chosen = export.mixed_precision(float_export, budget, x[:32], max_rounds=1)
    assert chosen.size_bytes <= budget
    assert isinstance(chosen, export.TFLiteExport)
    table = {row["name"]: row for row in chosen.layers}
    assert [row["op"] for row in chosen.layers] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    for row in table.values():
        assert row["precision"] in ("float16", "int8", "int16x8", "int4")
        assert row["error"] >= 0
    # Depthwise convolutions cannot take int4 in litert-quantizer.
    assert chosen.layers[1]["precision"] != "int4"
    report = export.verify(chosen, model, x_test, y_test)
    assert report["top1_agreement"] >= 0.9, report
    # The recipe reproduces the file.
    again = export.quantize_tflite(float_export, recipe=chosen.recipe,
                                   representative_data=x[:32])
    assert again.size_bytes == chosen.size_bytes
    if fraction == 0.0:
        assert chosen.size_bytes == smallest.size_bytes
    if fraction == 1.0:
        # A generous budget buys more than int4 somewhere.
        assert chosen.size_bytes > smallest.size_bytes
        assert "| layer (op output) |" in format_table(chosen)


def test_sensitivity_rows(setup, digits8):
    _, float_export, _ = setup
    (x, _), _ = digits8
    rows = measure_sensitivity(float_export.content, x[:16],
                                  candidates=("float16", "int4"))
    by_op = {}
    for row in rows:
        by_op.setdefault(row.op, set()).add(row.precision)
    assert by_op["DEPTHWISE_CONV_2D"] == {"float32", "float16"}
    assert by_op["CONV_2D"] == {"float32", "float16", "int4"}
    for row in rows:
        if row.precision == "int4":
            assert row.delta_bytes < 0 and row.error > 0
        if row.precision == "float32":
            assert row.delta_bytes == 0 and row.error == 0


def test_mixed_precision_bad_inputs(setup, digits8):
    _, float_export, smallest = setup
    (x, _), _ = digits8
    with pytest.raises(ValueError, match="below the smallest file"):
        export.mixed_precision(float_export, smallest.size_bytes - 1, x[:16])
    with pytest.raises(ValueError, match="must be a positive int"):
        export.mixed_precision(float_export, 0.5, x[:16])
    with pytest.raises(ValueError, match="candidates=.*int3"):
        export.mixed_precision(float_export, 10**6, x[:16], candidates=("int3",))
    with pytest.raises(TypeError, match="representative_data must be a numpy array"):
        export.mixed_precision(float_export, 10**6, [1, 2])
    with pytest.raises(ValueError, match="max_error=-1 must be a positive number"):
        export.mixed_precision(float_export, 10**6, x[:16], max_error=-1)


def test_lossy_choice_is_flagged_or_refused(setup, digits8, tmp_path):
    """A budget that only int2 meets: the file's measured quality is reported,
    a warning is given by default and `max_error` refuses it (no file)."""
    _, float_export, smallest = setup
    (x, _), _ = digits8
    candidates = ("int4", "int2")
    budget = smallest.size_bytes - 1  # int4 everywhere no longer fits: int2 is needed
    with pytest.warns(UserWarning, match="expect an accuracy loss"):
        chosen = export.mixed_precision(float_export, budget, x[:32],
                                        candidates=candidates, max_rounds=0)
    assert chosen.size_bytes <= budget
    assert "int2" in {row["precision"] for row in chosen.layers}
    assert chosen.output_error > WARN_ERROR or (
        chosen.top1_agreement < WARN_AGREEMENT)
    path = tmp_path / "refused.tflite"
    with pytest.raises(ValueError, match="above max_error=.*Nothing was written"):
        export.mixed_precision(float_export, budget, x[:32], candidates=candidates,
                               max_rounds=0, max_error=chosen.output_error / 2,
                               path=str(path))
    assert not path.exists()
    # A generous budget: int4/float quality, no warning, quality recorded.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        good = export.mixed_precision(float_export, smallest.size_bytes * 3, x[:32],
                                      max_rounds=0, max_error=0.05)
    assert 0 <= good.output_error <= 0.05 and good.top1_agreement >= 0.9
