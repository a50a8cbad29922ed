"""What a compression trial logs, and the oracle's single scalar objective.

KerasTuner's oracles optimise one number. A compression search has at least
three (accuracy up; file size and latency down), so tfopt logs all of them to
the trial and hands the oracle a documented weighted scalarisation, `score`.
The trade-off itself is read off the Pareto front (`tfopt.tuning.pareto`),
which does not depend on the weights.
"""

import math

import keras_tuner

from tfopt import pipeline

# Every metric a finished (trained and measured) trial logs, with the
# direction in which it is better (from the shared vocabulary,
# `tfopt.pipeline.METRICS`). Trials rejected before training log only
# `score`, `feasible`, `rejected_before_training` and `size_bytes_lower_bound`;
# every trial also logs `violation`, `train_seconds`, `trial_seconds` and
# `epochs_trained` (information, nothing to optimise).
_LOGGED = ("score", "tflite_accuracy", "keras_accuracy", "size_bytes", "gzip_bytes", "p50_ms",
           "p90_ms", "params", "sparsity",
           # only with a baseline: tfopt.pipeline's names, then this module's earlier ones
           "accuracy_drop", "bytes_vs_float", "gzip_vs_float", "p50_vs_float",
           "bytes_vs_baseline", "gzip_vs_baseline", "p50_vs_baseline",
           "feasible")
METRICS = {name: pipeline.direction(name) for name in _LOGGED}
BASELINE_METRICS = ("accuracy_drop", "bytes_vs_baseline", "gzip_vs_baseline", "p50_vs_baseline",
                    "bytes_vs_float", "gzip_vs_float", "p50_vs_float")
SIZE_METRICS = ("size_bytes", "gzip_bytes")

# Added to the score of an infeasible trial (plus its relative violation):
# the whole range of the accuracy term, so the oracle steers away from it.
INFEASIBLE_PENALTY = 1.0


class Scalarization:
    """The oracle's objective `score` (lower is better) from a trial's metrics.

        score = accuracy_weight * (1 - tflite_accuracy)
              + size_weight * log10(size)          # size: size_bytes or gzip_bytes
              + latency_weight * log10(p50_ms)
              [+ 1 + violation, if the trial breaks a constraint]

    Costs enter as base-10 logarithms, so the weights read as "accuracy
    (fraction) traded for a 10x smaller file / 10x faster model": with the
    default `size_weight=0.01`, one accuracy point is worth a 10x smaller
    file. Logarithms make the score independent of the units and of the
    model's scale (only differences between trials matter to the oracle).
    Set a weight to 0 to ignore that cost.

    Args:
        accuracy_weight: Weight of the accuracy error (>= 0).
        size_weight: Weight per decade of file size (>= 0).
        latency_weight: Weight per decade of p50 latency (>= 0).
        size_metric: `"size_bytes"` (the raw `.tflite`) or `"gzip_bytes"`
            (what sparsity saves in transfer).

    Raises:
        ValueError: On a negative or non-numeric weight, all weights zero,
            or an unknown `size_metric`.

    Example:

    >>> s = Scalarization(size_weight=0.01, latency_weight=0.0)
    >>> round(s({"tflite_accuracy": 0.97, "size_bytes": 10000, "p50_ms": 0.1}), 4)
    0.07
    """

    def __init__(self, accuracy_weight=1.0, size_weight=0.01, latency_weight=0.01,
                 size_metric="size_bytes"):
        for name, value in (("accuracy_weight", accuracy_weight), ("size_weight", size_weight),
                            ("latency_weight", latency_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name}={value!r} must be a number >= 0.")
        if accuracy_weight == size_weight == latency_weight == 0:
            raise ValueError("Scalarization: at least one weight must be > 0.")
        if size_metric not in SIZE_METRICS:
            raise ValueError(f"size_metric={size_metric!r} must be one of {SIZE_METRICS}.")
        self.accuracy_weight = float(accuracy_weight)
        self.size_weight = float(size_weight)
        self.latency_weight = float(latency_weight)
        self.size_metric = size_metric

    def __call__(self, metrics, violation=0.0):
        """The score of `metrics`; `violation` > 0 adds the infeasibility penalty."""
        score = (
            self.accuracy_weight * (1.0 - metrics["tflite_accuracy"])
            + self.size_weight * math.log10(max(metrics[self.size_metric], 1.0))
            # Latency of a tiny model can round to ~0: clamp at 1 ns.
            + self.latency_weight * math.log10(max(metrics["p50_ms"], 1e-6))
        )
        return score + penalty(violation)

    def get_config(self):
        return {"accuracy_weight": self.accuracy_weight, "size_weight": self.size_weight,
                "latency_weight": self.latency_weight, "size_metric": self.size_metric}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Scalarization({args})"


def penalty(violation):
    """What an infeasible trial adds to its score (0 when feasible)."""
    return INFEASIBLE_PENALTY + float(violation) if violation > 0 else 0.0


def resolve_objective(objective, baseline=True):
    """Turns a user's `objective` into KerasTuner objective(s), or raises.

    Args:
        objective: None or `"score"` (the scalarisation), the name of a
            logged metric (direction known), a `keras_tuner.Objective` on a
            logged metric, or a list of those (KerasTuner then sums them,
            maximised ones negated).
        baseline: Whether the search measures a baseline (the `*_baseline`
            and `accuracy_drop` metrics exist only then).

    Returns:
        A `keras_tuner.Objective` or a list of them.

    Raises:
        ValueError: If a name is never logged by a tfopt trial, or needs the
            baseline that is disabled, or a direction is not "min"/"max".
        TypeError: If `objective` is of another type.
    """
    if objective is None:
        objective = "score"
    if isinstance(objective, (list, tuple)):
        if not objective:
            raise ValueError("objective=[] is empty; use 'score' or metric names.")
        return [resolve_objective(o, baseline) for o in objective]
    if isinstance(objective, str):
        name, direction = objective, METRICS.get(objective)
    elif isinstance(objective, keras_tuner.Objective):
        name, direction = objective.name, objective.direction
        if direction not in ("min", "max"):
            raise ValueError(f"Objective {name!r}: direction must be 'min' or 'max', got {direction!r}.")
    else:
        raise TypeError(
            f"objective must be a metric name, a keras_tuner.Objective or a list, got {objective!r}."
        )
    if name not in METRICS:
        raise ValueError(
            f"objective {name!r} is never logged by a tfopt compression trial, so the "
            f"oracle would never see it. Logged metrics: {', '.join(sorted(METRICS))}."
        )
    if name in BASELINE_METRICS and not baseline:
        raise ValueError(f"objective {name!r} is relative to the dense baseline, but baseline=False.")
    return keras_tuner.Objective(name, direction)
