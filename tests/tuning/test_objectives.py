"""The scalarised objective, objective resolution and constraints."""

import math

import keras_tuner
import pytest

from tfopt.tuning import Constraints
from tfopt.tuning import Scalarization
from tfopt.tuning.objectives import INFEASIBLE_PENALTY
from tfopt.tuning.objectives import resolve_objective

METRICS = {"tflite_accuracy": 0.96, "size_bytes": 10_000.0, "gzip_bytes": 1_000.0, "p50_ms": 0.1}


def test_score_is_the_documented_formula():
    s = Scalarization(accuracy_weight=2.0, size_weight=0.05, latency_weight=0.1)
    expected = 2.0 * 0.04 + 0.05 * 4.0 + 0.1 * -1.0
    assert s(METRICS) == pytest.approx(expected)
    gzip = Scalarization(size_weight=0.05, latency_weight=0.0, size_metric="gzip_bytes")
    assert gzip(METRICS) == pytest.approx(0.04 + 0.05 * 3.0)
    # One accuracy point is worth a 10x smaller file at size_weight=0.01.
    default = Scalarization(latency_weight=0.0)
    smaller = dict(METRICS, size_bytes=1_000.0, tflite_accuracy=0.95)
    assert default(smaller) == pytest.approx(default(METRICS))
    # Infeasible: + penalty + violation.
    assert s(METRICS, violation=0.5) == pytest.approx(expected + INFEASIBLE_PENALTY + 0.5)


@pytest.mark.parametrize("kwargs, match", [
    ({"size_weight": -1}, "size_weight=-1 must be a number >= 0"),
    ({"accuracy_weight": 0, "size_weight": 0, "latency_weight": 0}, "at least one weight"),
    ({"size_metric": "params"}, "size_metric='params'"),
    ({"latency_weight": True}, "latency_weight=True"),
])
def test_bad_scalarization(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Scalarization(**kwargs)


def test_objectives_resolve_to_logged_metrics():
    assert resolve_objective(None) == keras_tuner.Objective("score", "min")
    assert resolve_objective("tflite_accuracy") == keras_tuner.Objective("tflite_accuracy", "max")
    pair = resolve_objective(["size_bytes", keras_tuner.Objective("p50_ms", "min")])
    assert [o.name for o in pair] == ["size_bytes", "p50_ms"]


def test_objective_never_logged_is_an_error():
    with pytest.raises(ValueError, match="'val_accuracy' is never logged"):
        resolve_objective("val_accuracy")
    with pytest.raises(ValueError, match="'val_loss' is never logged"):
        resolve_objective(keras_tuner.Objective("val_loss", "min"))
    with pytest.raises(ValueError, match="relative to the dense baseline"):
        resolve_objective("accuracy_drop", baseline=False)
    with pytest.raises(TypeError):
        resolve_objective(3)


def test_constraint_violations_are_relative():
    c = Constraints(max_bytes=8_000, max_latency_ms=0.2, max_accuracy_drop=0.01)
    found = c.violations(METRICS, baseline={"tflite_accuracy": 0.975})
    assert found["max_bytes"] == pytest.approx(0.25)
    assert "max_latency_ms" not in found
    assert found["max_accuracy_drop"] == pytest.approx(0.005)
    # A drop of exactly the limit passes.
    assert c.violations(dict(METRICS, size_bytes=8_000), {"tflite_accuracy": 0.97}) == {}
    assert c.size_violation(16_000) == pytest.approx(1.0)
    assert c.size_violation(7_999) is None
    assert "size over max_bytes=8000" in c.describe(found)
    with pytest.raises(ValueError, match="needs the baseline"):
        c.violations(METRICS)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_bytes": -5}, "max_bytes=-5 must be > 0"),
    ({"max_latency_ms": 0}, "max_latency_ms=0 must be > 0"),
    ({"max_accuracy_drop": -0.01}, "must be in \\[0, 1\\]"),
    ({"max_accuracy_drop": 1.5}, "0.01 = one percentage point"),
    ({"max_bytes": "1MB"}, "must be a number"),
])
def test_contradictory_constraints(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Constraints(**kwargs)


def test_log_of_tiny_latency_is_finite():
    s = Scalarization()
    assert math.isfinite(s(dict(METRICS, p50_ms=0.0)))
