"""The embedded digits search behind `tfopt tune --example digits`.

A small CNN on the 16x16 digits whose widths scale with the `width`
hyperparameter; the search covers width, learning rate, epochs, pruning
pattern / sparsity / schedule and quantization (float, PTQ int8, QAT int8).
The training split is cut into search-train and validation (the search's
objective); the held-out test split only scores the finished trials.
"""

import os
import time

import keras

from tfopt import data as data_lib
from tfopt import export
from tfopt.tuning import report as report_lib
from tfopt.tuning import tuner as tuner_lib
from tfopt.tuning.hypermodel import CompressionHyperModel

IMAGE_SIZE = 16
VALIDATION_FRACTION = 0.2
TUNERS = {
    "random": tuner_lib.RandomSearch,
    "grid": tuner_lib.GridSearch,
    "bayesian": tuner_lib.BayesianOptimization,
    "hyperband": tuner_lib.Hyperband,
}
DIGITS_SPACE = {
    "width": [1.0, 0.75, 0.5],
    "learning_rate": [3e-3, 1e-3],
    "epochs": [20, 30],
    "pruning": ["none", "unstructured", "block", "2:4"],
    "sparsity": [0.5, 0.75],
    "schedule": ["polynomial", "constant"],
    "quantization": ["none", "ptq", "qat"],
}


def digits_model(width=1.0, image_size=IMAGE_SIZE):
    """The example's CNN: Conv(16w)-Pool-Conv(32w)-Pool-Dense(128w)-Dense(10).

    Over-parameterised for the digits on purpose, as real networks are for
    their tasks: that slack is what compression removes.

    Args:
        width: Width multiplier of every hidden layer (1.0 = reference).
        image_size: Side of the input images.

    Returns:
        An uncompiled `keras.Sequential` with logits out.

    Example:

    >>> digits_model(0.5).count_params() < digits_model(1.0).count_params()
    True
    """
    def units(n):
        return max(4, int(round(n * width)))

    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            keras.layers.Conv2D(units(16), 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(units(32), 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(units(128), activation="relu"),
            keras.layers.Dense(10),
        ],
        name=f"digits_cnn_w{width:g}",
    )


def digits_data(train_examples=None, seed=0):
    """`(x, y), (x_val, y_val), (x_test, y_test)` of the 16x16 digits.

    The validation split is a stratified fifth of the training split;
    `train_examples` keeps only the first that many search-train examples.
    """
    from sklearn.model_selection import train_test_split

    (x, y), (x_test, y_test) = data_lib.load_digits(IMAGE_SIZE)
    x, x_val, y, y_val = train_test_split(x, y, test_size=VALIDATION_FRACTION,
                                          random_state=seed, stratify=y)
    if train_examples is not None:
        x, y = x[:train_examples], y[:train_examples]
    return (x, y), (x_val, y_val), (x_test, y_test)


def run_digits(out_dir, max_trials=10, tuner="random", max_search_seconds=None, max_bytes=None,
               max_latency_ms=None, max_accuracy_drop=None, epochs=None, train_examples=None,
               seed=0, overwrite=True, command=None, latency=None, verbose=0, project_dir=None):
    """Runs the digits compression search and writes its report.

    Args:
        out_dir: Output directory: the KerasTuner project in `out_dir/search`,
            the report (trials.csv, trials.md, results.json, pareto.png) in
            `out_dir`.
        max_trials: Trials to run (Hyperband: its own schedule, capped by
            `max_search_seconds` only).
        tuner: `"random"`, `"grid"`, `"bayesian"` or `"hyperband"`.
        max_search_seconds: Start no trial after this long.
        max_bytes, max_latency_ms, max_accuracy_drop: Constraints.
        epochs: Fix the epochs (default: searched over 20 and 30).
        train_examples: Use only this many search-train examples (quick runs).
        seed: Seed of the tuner and of every trial.
        overwrite: Start afresh (False resumes the search in `out_dir/search`).
        command: The command line, recorded in the report.
        latency: `measure_latency` settings for every trial.
        verbose: KerasTuner verbosity.
        project_dir: Where the KerasTuner project lives (default
            `out_dir/search`).

    Returns:
        A dict: `tuner` (the tuner), `paths` (the report files), `summary`
        (baseline, best trial, front, target check, wall time).

    Raises:
        ValueError: On an unknown tuner or invalid settings.
    """
    if tuner not in TUNERS:
        raise ValueError(f"tuner={tuner!r} must be one of {sorted(TUNERS)}.")
    project_dir = project_dir or os.path.join(out_dir, "search")
    start = time.perf_counter()
    (x, y), validation, (x_test, y_test) = digits_data(train_examples, seed)
    space = dict(DIGITS_SPACE)
    if epochs is not None:
        space["epochs"] = epochs
    hypermodel = CompressionHyperModel(digits_model, space=space, seed=seed, latency=latency)
    kwargs = dict(max_bytes=max_bytes, max_latency_ms=max_latency_ms,
                  max_accuracy_drop=max_accuracy_drop, max_search_seconds=max_search_seconds,
                  directory=os.path.dirname(os.path.abspath(project_dir)),
                  project_name=os.path.basename(os.path.abspath(project_dir)),
                  overwrite=overwrite, seed=seed)
    if tuner == "hyperband":
        kwargs.update(max_epochs=max(space["epochs"]) if isinstance(space["epochs"], list)
                      else space["epochs"], factor=3)
    else:
        kwargs["max_trials"] = max_trials
    search = TUNERS[tuner](hypermodel, **kwargs)
    search.search(x, y, validation_data=validation, verbose=verbose)
    search_seconds = time.perf_counter() - start
    records = search.trials()
    test = {r.trial_id: export.evaluate_tflite(r.tflite_path, x_test, y_test)
            for r in records if r.measured and r.tflite_path}
    baseline = dict(search.baseline)
    baseline_tflite = os.path.join(search.project_dir, tuner_lib.BASELINE_TFLITE)
    if os.path.isfile(baseline_tflite):
        baseline["test_accuracy"] = export.evaluate_tflite(baseline_tflite, x_test, y_test)
    summary = _summary(search, records, baseline, test, search_seconds)
    paths = report_lib.write_report(
        records, out_dir, baseline=baseline, constraints=search.constraints, command=command,
        scalarization=search.scalarization,
        columns={tid: {"test acc": acc} for tid, acc in test.items()},
        extra={"summary": summary}, notes=_notes(summary))
    return {"tuner": search, "paths": paths, "summary": summary}


def _summary(search, records, baseline, test, seconds):
    front = search.pareto_front()
    best = search.best_trials(1)
    # The target: an int8 file <= 0.25x the float baseline's bytes
    # within one point of its accuracy (validation), among feasible trials.
    hits = [
        r for r in records
        if r.measured and r.feasible and r.values.get("quantization") in ("ptq", "qat")
        and r.metrics["size_bytes"] <= 0.25 * baseline["size_bytes"]
        and r.metrics["tflite_accuracy"] >= baseline["tflite_accuracy"] - 0.01
    ]
    hits.sort(key=lambda r: (-r.metrics["tflite_accuracy"], r.metrics["size_bytes"]))

    def brief(r):
        return {
            "trial": r.trial_id,
            "values": r.values,
            "tflite_accuracy": r.metrics["tflite_accuracy"],
            "test_accuracy": test.get(r.trial_id),
            "size_bytes": r.metrics["size_bytes"],
            "bytes_vs_baseline": r.metrics["size_bytes"] / baseline["size_bytes"],
            "accuracy_drop": baseline["tflite_accuracy"] - r.metrics["tflite_accuracy"],
            "p50_ms": r.metrics["p50_ms"],
        }

    return {
        "wall_seconds": seconds,
        "trials": len(records),
        "measured": sum(r.measured for r in records),
        "failed": sum(r.status == "FAILED" for r in records),
        "baseline": baseline,
        "best": brief(best[0]) if best else None,
        "pareto_front": [brief(r) for r in front],
        "target_hits": [brief(r) for r in hits],
        "target_met": bool(hits) and len(front) >= 3,
    }


def _notes(summary):
    lines = [f"Wall time (baseline + search): {summary['wall_seconds']:.0f} s; "
             f"{summary['measured']} trials measured, {summary['failed']} failed."]
    hit = summary["target_hits"][0] if summary["target_hits"] else None
    if hit:
        lines.append(
            f"Target (int8 <= 0.25x float bytes, drop <= 1 point): met by trial {hit['trial']}: "
            f"{hit['bytes_vs_baseline']:.3f}x bytes, validation accuracy drop "
            f"{100 * hit['accuracy_drop']:.2f} points; {len(summary['target_hits'])} trial(s) qualify.")
    else:
        lines.append("Target (int8 <= 0.25x float bytes, drop <= 1 point): not met by any trial.")
    lines.append(f"Pareto front: {len(summary['pareto_front'])} trial(s).")
    if "test_accuracy" in summary["baseline"]:
        lines.append("`test acc`: the trial's TFLite file on the held-out test split (not used by "
                     f"the search); baseline {summary['baseline']['test_accuracy']:.4f}.")
    return lines
