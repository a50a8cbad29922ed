"""Search reports: a trials table (CSV, Markdown), results.json and a Pareto
plot (PNG) of accuracy against file size and latency."""

import csv
import os

from tfopt.pipeline import canonical_metrics
from tfopt.report import format_metric
from tfopt.report import format_value
from tfopt.report import machine_line
from tfopt.report import markdown_table as _table
from tfopt.report import pareto_figure
from tfopt.report import write_json
from tfopt.tuning import trials as trials_lib

# Hyperparameter columns, in this order, then any others the space had.
HP_COLUMNS = ("width", "learning_rate", "epochs", "tuner/epochs", "pruning", "sparsity", "schedule",
              "structured_ratio", "quantization", "distillation", "temperature", "alpha")
# Metric columns, in this order; labels and decimals from `tfopt.report.FORMATS`.
METRIC_COLUMNS = ("tflite_accuracy", "keras_accuracy", "accuracy_drop", "size_bytes",
                  "bytes_vs_float", "gzip_bytes", "p50_ms", "sparsity", "params", "score",
                  "trial_seconds")


def trials_table(records, front=None, columns=None):
    """One row dict per trial: id, status, feasibility, front membership,
    hyperparameters, metrics and reason.

    Args:
        records: `TrialRecord`s.
        front: The records on the Pareto front (default: computed).
        columns: Optional `{trial_id: {column: value}}` of extra cells (e.g.
            test-set accuracy), placed before the reason.

    Returns:
        A list of dicts with the same keys, in trial order.
    """
    records = sorted(records, key=lambda r: r.trial_id)
    if front is None:
        front = trials_lib.pareto_front(records)
    on_front = {r.trial_id for r in front}
    names = [n for n in HP_COLUMNS if any(n in r.values for r in records)]
    names += sorted({n for r in records for n in r.values} - set(names) - {
        "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id"})
    extra_names = sorted({n for cells in (columns or {}).values() for n in cells})
    rows = []
    for r in records:
        row = {"trial": r.trial_id, "status": _status(r), "pareto": r.trial_id in on_front}
        row.update({name: r.values.get(name) for name in names})
        metrics = canonical_metrics(r.metrics)  # searches logged before: *_vs_baseline
        row.update({_row_key(key): metrics.get(key) for key in METRIC_COLUMNS})
        for name in extra_names:
            row[name] = (columns or {}).get(r.trial_id, {}).get(name)
        row["reason"] = r.reason
        rows.append(row)
    return rows


def _row_key(metric):
    # The measured fraction of zeros would collide with the target `sparsity`.
    return "zeros" if metric == "sparsity" else metric


def _status(record):
    if record.status != "COMPLETED":
        return record.status.lower()
    if record.rejected_before_training:
        return "rejected"
    return "ok" if record.feasible else "infeasible"


def write_csv(rows, path):
    """Writes `trials_table` rows as CSV (full precision)."""
    with open(path, "w", newline="") as handle:
        if not rows:
            return
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows):
    """`trials_table` rows as a Markdown table (reasons shortened)."""
    if not rows:
        return "(no trials)\n"
    metrics = {_row_key(key) for key in METRIC_COLUMNS}

    def cell(row, key):
        value = row[key]
        if key == "reason" and value:
            return value.splitlines()[0][:160]
        # Hyperparameters and extra columns: no metric's decimals apply.
        return None if key in metrics else format_value(value)

    keys = list(rows[0])
    # A hyperparameter keeps its name (hp `sparsity` is the target, `zeros` the measure).
    labels = {key: key for key in keys if key not in metrics}
    return "\n".join(_table(rows, keys, labels, cell)) + "\n"


def plot_pareto(records, path, baseline=None, front=None):
    """Accuracy vs bytes and vs p50 latency, the front highlighted.

    Args:
        records: `TrialRecord`s (only measured ones are drawn; infeasible
            ones in grey).
        path: The PNG to write.
        baseline: The baseline's metrics, drawn as a black square.
        front: The front (default: computed over feasible trials).

    Returns:
        `path`, or None when no trial was measured.
    """
    measured = [r for r in records if r.measured]
    if not measured:
        return None
    if front is None:
        front = trials_lib.pareto_front(records)
    on_front = {r.trial_id for r in front}
    panels = []
    for key in ("size_bytes", "p50_ms"):
        points = [(r.metrics[key], r.metrics["tflite_accuracy"]) for r in measured]
        # The 2-D front of this panel is joined (the 3-D front's members are starred).
        panel = {r.trial_id for r in trials_lib.pareto_front(records, ("tflite_accuracy", key))}
        panels.append(dict(
            points=points, x_key=key,
            starred=[i for i, r in enumerate(measured) if r.trial_id in on_front],
            line=[i for i, r in enumerate(measured) if r.trial_id in panel],
            annotations=[p + (r.trial_id,) for p, r in zip(points, measured)],
            kinds=["point" if r.feasible else "infeasible" for r in measured],
            reference=(baseline[key], baseline["tflite_accuracy"], "dense float baseline")
            if baseline else None,
            line_label=f"front (accuracy vs {'bytes' if key == 'size_bytes' else 'p50'})"))
    return pareto_figure(
        path, "Compression search: * Pareto front (accuracy, bytes, p50), x infeasible", panels)


def write_report(records, out_dir, baseline=None, constraints=None, command=None,
                 scalarization=None, environment=None, extra=None, columns=None, notes=None):
    """Writes trials.csv, trials.md, results.json and pareto.png to `out_dir`.

    Args:
        records: `TrialRecord`s (`tuner.trials()` or `load_trials(dir)`).
        out_dir: Output directory (created).
        baseline: The baseline's metrics, if any.
        constraints: The `Constraints` of the search, for the header.
        command: The command that produced the search.
        scalarization: The `Scalarization` used as the objective.
        environment: `tfopt.report.environment()` (default: taken now).
        extra: More JSON-serialisable facts to store in results.json.
        columns: Extra table cells per trial (see `trials_table`).
        notes: Lines added under the Markdown header.

    Returns:
        A dict `{"csv", "markdown", "json", "png"}` of paths (png None when
        nothing was measured).

    Example:

    ```python
    tfopt.tuning.write_report(tfopt.tuning.load_trials("search/digits"), "report")
    ```
    """
    from tfopt.report import environment as environment_now

    os.makedirs(out_dir, exist_ok=True)
    environment = environment or environment_now()
    front = trials_lib.pareto_front(records)
    rows = trials_table(records, front, columns)
    paths = {
        "csv": os.path.join(out_dir, "trials.csv"),
        "markdown": os.path.join(out_dir, "trials.md"),
        "json": os.path.join(out_dir, "results.json"),
    }
    write_csv(rows, paths["csv"])
    paths["png"] = plot_pareto(records, os.path.join(out_dir, "pareto.png"), baseline, front)
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    header = ["# Compression search", ""]
    if command:
        header.append(f"Command: `{command}`")
    header.append("Machine: " + machine_line(environment))
    if constraints is not None and constraints.any:
        header.append(f"Constraints: {constraints}.")
    if scalarization is not None:
        header.append(f"Oracle objective: score = {scalarization!r} (lower is better).")
    if baseline:
        header.append(
            "Dense float baseline: TFLite accuracy "
            f"{format_metric('tflite_accuracy', baseline['tflite_accuracy'])}, "
            f"{format_metric('size_bytes', baseline['size_bytes'])} bytes "
            f"({format_metric('gzip_bytes', baseline['gzip_bytes'])} gzipped), "
            f"p50 {format_metric('p50_ms', baseline['p50_ms'])} ms.")
    header.append("Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + "; Pareto front (TFLite accuracy up, bytes and p50 down, feasible trials): "
                  + ", ".join(r.trial_id for r in front) + ".")
    header += list(notes or [])
    with open(paths["markdown"], "w") as handle:
        handle.write("\n\n".join(header[:1] + header[2:]) + "\n\n" + markdown_table(rows))
    write_json({
        "command": command,
        "environment": environment,
        "baseline": baseline,
        "constraints": None if constraints is None else vars(constraints),
        "scalarization": None if scalarization is None else scalarization.get_config(),
        "pareto_front": [r.trial_id for r in front],
        "trials": rows,
        **(extra or {}),
    }, paths["json"])
    return paths
