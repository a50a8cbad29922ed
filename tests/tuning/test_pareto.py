"""The Pareto front on trials with known metrics, checked exactly."""

import pytest

from tfopt.bench import report as bench_report
from tfopt.tuning import TrialRecord
from tfopt.tuning import pareto_front


def record(trial_id, accuracy, size, p50, status="COMPLETED", feasible=1.0, **extra):
    metrics = {"tflite_accuracy": accuracy, "size_bytes": size, "p50_ms": p50,
               "feasible": feasible, **extra}
    return TrialRecord(trial_id, status, {}, metrics)


def ids(records):
    return [r.trial_id for r in records]


TRIALS = [
    record("a", 0.97, 20000, 0.10),  # best accuracy
    record("b", 0.95, 6000, 0.08),   # smaller and faster
    record("c", 0.94, 7000, 0.09),   # dominated by b in all three
    record("d", 0.90, 5000, 0.20),   # smallest, slow
    record("e", 0.95, 6000, 0.08),   # ties b exactly: both stay
    record("f", 0.93, 9000, 0.05),   # fastest
    record("g", 0.97, 20000, 0.11),  # as a but slower: dominated
    record("h", 0.99, 4000, 0.01, feasible=0.0),  # infeasible: would dominate all
    record("i", 0.99, 1000, 0.01, status="FAILED"),
    TrialRecord("j", "COMPLETED", {}, {"score": 2.0, "feasible": 0.0,
                                       "rejected_before_training": 1.0}),
]


def test_three_objective_front_is_exact():
    assert ids(pareto_front(TRIALS)) == ["a", "b", "d", "e", "f"]


def test_two_objective_fronts_are_exact():
    # g ties a in accuracy and bytes (it is only slower): both stay.
    assert ids(pareto_front(TRIALS, ("tflite_accuracy", "size_bytes"))) == ["a", "b", "d", "e", "g"]
    assert ids(pareto_front(TRIALS, ("tflite_accuracy", "p50_ms"))) == ["a", "b", "e", "f"]
    # Both costs, no accuracy: d is smallest, f fastest, b/e between.
    assert ids(pareto_front(TRIALS, ("size_bytes", "p50_ms"))) == ["b", "d", "e", "f"]


def test_infeasible_trials_only_on_request_and_never_failed_ones():
    # h (infeasible) dominates everything it is compared with.
    assert ids(pareto_front(TRIALS, include_infeasible=True)) == ["h"]
    assert "i" not in ids(pareto_front(TRIALS, include_infeasible=True))


def test_empty_and_bad_objectives():
    assert pareto_front([]) == []
    with pytest.raises(ValueError, match="at least two objectives"):
        pareto_front(TRIALS, ("tflite_accuracy",))
    with pytest.raises(ValueError, match="Unknown objective.*val_accuracy"):
        pareto_front(TRIALS, ("val_accuracy", "size_bytes"))


def test_bench_pareto_front_generalises_to_n_dimensions():
    points = [(0.9, 10, 1.0), (0.8, 5, 2.0), (0.7, 20, 0.5), (0.7, 20, 0.6), (0.9, 10, 1.0)]
    assert bench_report.pareto_front(points) == [0, 1, 2, 4]
    # All coordinates minimised.
    assert bench_report.pareto_front([(1, 2), (2, 1), (2, 2)], maximize=(False, False)) == [0, 1]
    with pytest.raises(ValueError, match="same number of coordinates"):
        bench_report.pareto_front([(1, 2), (1, 2, 3)])


def test_old_metric_names_and_the_old_point_signature_still_count():
    # A bench row written before the shared vocabulary: only cpu_p50_ms.
    old_rows = [{"recipe": "x", "tflite_accuracy": 0.9, "size_bytes": 10, "cpu_p50_ms": 1.0},
                {"recipe": "y", "tflite_accuracy": 0.8, "size_bytes": 20, "cpu_p50_ms": 2.0}]
    assert [r["recipe"] for r in pareto_front(old_rows)] == ["x"]
    # pareto_front(points, maximize, intervals): the noise is still used, so
    # a latency inside it neither wins nor loses.
    points = [(0.9, 1.0), (0.9, 1.05)]
    noise = [(None, (0.9, 1.1)), (None, (0.95, 1.15))]
    assert pareto_front(points, (True, False), noise) == [0, 1]
    assert pareto_front(points, (True, False)) == [0]
