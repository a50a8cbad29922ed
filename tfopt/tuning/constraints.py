"""Hard limits on a compressed model: size, latency, accuracy drop.

A trial that breaks one is still recorded with all its metrics (it is
informative) but marked infeasible: `feasible = 0`, a score penalty, and
tfopt's best-trial and Pareto functions leave it out.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Constraints:
    """Limits a trial must meet to count as feasible.

    Args:
        max_bytes: Largest `.tflite` file, in bytes (`size_bytes`).
        max_latency_ms: Largest p50 latency (LiteRT, batch 1), in ms.
        max_accuracy_drop: Largest drop of TFLite validation accuracy below
            the dense baseline's, as a fraction: 0.01 is one percentage
            point. Needs a baseline.

    Raises:
        ValueError: If a limit is not a positive number (`max_accuracy_drop`
            may be 0), or `max_accuracy_drop` > 1 (accuracy is a fraction:
            a drop of 1.0 is 100 points, almost certainly points were meant).

    Example:

    >>> c = Constraints(max_bytes=20_000, max_accuracy_drop=0.01)
    >>> c.violations({"size_bytes": 25_000, "tflite_accuracy": 0.95},
    ...              baseline={"tflite_accuracy": 0.955})
    {'max_bytes': 0.25}
    """

    max_bytes: int | None = None
    max_latency_ms: float | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self):
        for name in ("max_bytes", "max_latency_ms", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}={value!r} must be a number or None.")
            if name == "max_accuracy_drop":
                if not 0 <= value <= 1:
                    raise ValueError(
                        f"max_accuracy_drop={value!r} must be in [0, 1]: a fraction of "
                        "accuracy (0.01 = one percentage point). A negative drop would "
                        "ask every trial to beat the baseline it is compressed from."
                    )
            elif not value > 0:
                raise ValueError(f"{name}={value!r} must be > 0: no model can meet it.")

    @property
    def any(self):
        """Whether any limit is set."""
        return any(v is not None for v in dataclasses.astuple(self))

    @property
    def needs_baseline(self):
        return self.max_accuracy_drop is not None

    def violations(self, metrics, baseline=None):
        """Relative amount by which each broken limit is exceeded.

        Args:
            metrics: A trial's metrics (`size_bytes`, `p50_ms`,
                `tflite_accuracy`).
            baseline: The baseline's metrics (`tflite_accuracy`), needed
                when `max_accuracy_drop` is set.

        Returns:
            A dict `{limit name: excess}` holding only broken limits: bytes
            and latency as a fraction of the limit, accuracy in accuracy
            units beyond the allowed drop. Empty when feasible.

        Raises:
            ValueError: If `max_accuracy_drop` is set and `baseline` is None.
        """
        found = {}
        if self.max_bytes is not None and metrics["size_bytes"] > self.max_bytes:
            found["max_bytes"] = metrics["size_bytes"] / self.max_bytes - 1.0
        if self.max_latency_ms is not None and metrics["p50_ms"] > self.max_latency_ms:
            found["max_latency_ms"] = metrics["p50_ms"] / self.max_latency_ms - 1.0
        if self.max_accuracy_drop is not None:
            if baseline is None:
                raise ValueError("max_accuracy_drop needs the baseline's accuracy.")
            drop = baseline["tflite_accuracy"] - metrics["tflite_accuracy"]
            # A hair of tolerance: accuracies are ratios of counts, and a drop
            # of exactly the limit must pass despite float rounding.
            if drop > self.max_accuracy_drop + 1e-9:
                found["max_accuracy_drop"] = drop - self.max_accuracy_drop
        return found

    def size_violation(self, lower_bound_bytes):
        """Excess of a size lower bound over `max_bytes` (None if it may fit).

        Used before training: when even a lower bound of the file size is
        over the limit, the configuration cannot be feasible.
        """
        if self.max_bytes is None or lower_bound_bytes is None:
            return None
        if lower_bound_bytes > self.max_bytes:
            return lower_bound_bytes / self.max_bytes - 1.0
        return None

    def describe(self, violations):
        """A one-line reason from `violations()`'s dict."""
        words = {
            "max_bytes": f"size over max_bytes={self.max_bytes}",
            "max_latency_ms": f"p50 over max_latency_ms={self.max_latency_ms}",
            "max_accuracy_drop": f"accuracy drop over max_accuracy_drop={self.max_accuracy_drop}",
        }
        return "; ".join(f"{words[k]} (by {v:.3g})" for k, v in violations.items())
