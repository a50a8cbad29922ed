"""Measurements of one exported trial: accuracy, bytes, latency.

Everything is measured on the artifact that would ship (the `.tflite` file in
LiteRT), with tfopt's own export and bench functions; the Keras accuracy is
logged next to it so that a conversion loss shows.
"""

import numpy as np

from tfopt import bench
from tfopt import export

# Search-time latency: enough invokes for a stable median on small models,
# short enough to be a small part of a trial. The benchmark harness times
# much longer; override with `latency=` where the numbers matter more.
DEFAULT_LATENCY = {"num_threads": 1, "warmup": 20, "runs": 200, "min_seconds": 0.2}


def latency_settings(latency):
    """`DEFAULT_LATENCY` updated by the user's dict, validated.

    Raises:
        ValueError: On an unknown key.
        TypeError: If `latency` is not a dict or None.
    """
    if latency is None:
        return dict(DEFAULT_LATENCY)
    if not isinstance(latency, dict):
        raise TypeError(f"latency must be a dict of measure_latency arguments, got {latency!r}.")
    unknown = set(latency) - set(DEFAULT_LATENCY)
    if unknown:
        raise ValueError(
            f"Unknown latency setting(s) {sorted(unknown)}; use {sorted(DEFAULT_LATENCY)}."
        )
    return {**DEFAULT_LATENCY, **latency}


def keras_accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of a Keras classifier (argmax of its outputs)."""
    outputs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return float(np.mean(outputs.reshape(len(x), -1).argmax(axis=1) == np.asarray(y).reshape(-1)))


def measure(model, exported, x_val, y_val, latency=None):
    """Measures a trial's Keras model and exported file.

    Args:
        model: The final Keras model (the one that was exported).
        exported: Its `TFLiteExport`.
        x_val, y_val: Validation inputs and integer labels.
        latency: `measure_latency` keyword arguments (see `DEFAULT_LATENCY`).

    Returns:
        A dict of floats: `keras_accuracy`, `tflite_accuracy`, `size_bytes`,
        `gzip_bytes`, `p50_ms`, `p90_ms`.

    Example:

    ```python
    metrics = measure(final, tfopt.export.to_tflite(final), x_val, y_val)
    ```
    """
    timing = bench.measure_latency(exported, **latency_settings(latency))
    return {
        "keras_accuracy": keras_accuracy(model, x_val, y_val),
        "tflite_accuracy": float(export.evaluate_tflite(exported, x_val, y_val)),
        "size_bytes": float(exported.size_bytes),
        "gzip_bytes": float(exported.gzip_bytes),
        "p50_ms": float(timing.p50_ms),
        "p90_ms": float(timing.p90_ms),
    }
