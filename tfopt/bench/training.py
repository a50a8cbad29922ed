"""Train-step time of a compressed model against its plain counterpart."""

import time

import numpy as np


def step_time_ratio(plain, other, x, y, rounds=5, steps=20, warmup=5, before_steps=None):
    """Median `train_on_batch` time of `other` over `plain`, same batch.

    The two models alternate in rounds so that machine noise hits both.

    Args:
        plain: The uncompressed, compiled model.
        other: The compressed (wrapped, QAT...) compiled model.
        x, y: One batch.
        rounds, steps, warmup: Interleaved rounds, timed steps per round
            and model, untimed steps per model first.
        before_steps: Optional callable run once before timing `other`
            (e.g. starting the pruning callback).

    Returns:
        `{"plain_ms", "other_ms", "ratio"}` (medians per step).
    """
    if before_steps is not None:
        before_steps()
    times = {"plain": [], "other": []}
    for model in (plain, other):
        for _ in range(warmup):
            model.train_on_batch(x, y)
    for _ in range(rounds):
        for name, model in (("plain", plain), ("other", other)):
            for _ in range(steps):
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[name].append(time.perf_counter() - start)
    plain_ms = float(np.median(times["plain"]) * 1e3)
    other_ms = float(np.median(times["other"]) * 1e3)
    return {"plain_ms": plain_ms, "other_ms": other_ms, "ratio": other_ms / plain_ms}
