"""Search reports: a trials table (CSV, Markdown), results.json and a Pareto
plot (PNG) of accuracy against file size and latency."""

import csv
import json
import os

from tfopt.pipeline import canonical_metrics
from tfopt.tuning import trials as trials_lib

# Hyperparameter columns, in this order, then any others the space had.
HP_COLUMNS = ("width", "learning_rate", "epochs", "tuner/epochs", "pruning", "sparsity", "schedule",
              "structured_ratio", "quantization", "distillation", "temperature", "alpha")
METRIC_COLUMNS = (
    ("tflite_accuracy", "tflite acc", 4),
    ("keras_accuracy", "keras acc", 4),
    ("accuracy_drop", "drop", 4),
    ("size_bytes", "bytes", 0),
    ("bytes_vs_float", "bytes/base", 3),
    ("gzip_bytes", "gzip", 0),
    ("p50_ms", "p50 ms", 4),
    ("sparsity", "zeros", 3),  # measured; the row key is "zeros" (hp "sparsity" is the target)
    ("params", "params", 0),
    ("score", "score", 4),
    ("trial_seconds", "seconds", 1),
)


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
        row.update({_row_key(key): metrics.get(key) for key, _, _ in METRIC_COLUMNS})
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


def _cell(value, digits=None):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float) and digits is None and 0 < abs(value) < 1:
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if digits is not None else f"{value:g}"
    return str(value).replace("|", "/")


def markdown_table(rows):
    """`trials_table` rows as a Markdown table (reasons shortened)."""
    if not rows:
        return "(no trials)\n"
    digits = {_row_key(key): d for key, _, d in METRIC_COLUMNS}
    labels = {_row_key(key): label for key, label, _ in METRIC_COLUMNS}
    keys = list(rows[0])
    lines = ["| " + " | ".join(labels.get(k, k) for k in keys) + " |",
             "|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            if key == "reason" and value:
                value = value.splitlines()[0][:160]
            cells.append(_cell(value, digits.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in records if r.measured]
    if not measured:
        return None
    if front is None:
        front = trials_lib.pareto_front(records)
    on_front = {r.trial_id for r in front}
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, key, label in ((axes[0], "size_bytes", "TFLite bytes"),
                             (axes[1], "p50_ms", "p50 latency, ms (batch 1)")):
        for r in measured:
            x, y = r.metrics[key], r.metrics["tflite_accuracy"]
            if r.trial_id in on_front:
                style = dict(marker="*", s=150, color="tab:red", zorder=3)
            elif r.feasible:
                style = dict(marker="o", s=40, color="tab:blue")
            else:
                style = dict(marker="x", s=40, color="tab:gray")
            axis.scatter(x, y, **style)
            axis.annotate(r.trial_id, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        # The 2-D front of this panel (the 3-D front's members are starred).
        panel = trials_lib.pareto_front(records, ("tflite_accuracy", key))
        ordered = sorted(panel, key=lambda r: r.metrics[key])
        axis.plot([r.metrics[key] for r in ordered], [r.metrics["tflite_accuracy"] for r in ordered],
                  "r--", linewidth=1, label=f"front (accuracy vs {label.split(',')[0]})")
        if baseline:
            axis.scatter(baseline[key], baseline["tflite_accuracy"], marker="s", s=60,
                         color="black", label="dense float baseline", zorder=3)
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("TFLite validation accuracy")
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.suptitle("Compression search: * Pareto front (accuracy, bytes, p50), x infeasible")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


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
        environment: `tfopt.bench.report.environment()` (default: taken now).
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
    from tfopt.bench.report import environment as environment_now

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
    header.append(
        f"Machine: {environment['cpu']} ({environment['cores']} cores), {environment['date']}; "
        f"TF {environment['tensorflow']}, Keras {environment['keras']}, "
        f"ai-edge-litert {environment['ai_edge_litert']}.")
    if constraints is not None and constraints.any:
        header.append(f"Constraints: {constraints}.")
    if scalarization is not None:
        header.append(f"Oracle objective: score = {scalarization!r} (lower is better).")
    if baseline:
        header.append(
            f"Dense float baseline: TFLite accuracy {baseline['tflite_accuracy']:.4f}, "
            f"{baseline['size_bytes']:.0f} bytes ({baseline['gzip_bytes']:.0f} gzipped), "
            f"p50 {baseline['p50_ms']:.4f} ms.")
    header.append("Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + "; Pareto front (TFLite accuracy up, bytes and p50 down, feasible trials): "
                  + ", ".join(r.trial_id for r in front) + ".")
    header += list(notes or [])
    with open(paths["markdown"], "w") as handle:
        handle.write("\n\n".join(header[:1] + header[2:]) + "\n\n" + markdown_table(rows))
    with open(paths["json"], "w") as handle:
        json.dump({
            "command": command,
            "environment": environment,
            "baseline": baseline,
            "constraints": None if constraints is None else vars(constraints),
            "scalarization": None if scalarization is None else scalarization.get_config(),
            "pareto_front": [r.trial_id for r in front],
            "trials": rows,
            **(extra or {}),
        }, handle, indent=2, default=str)
    return paths
