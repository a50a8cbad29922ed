"""Benchmark output: results.json, results.md and Pareto plots (PNG)."""

import datetime
import json
import os
import platform

NO_GPU = "no GPU"


def environment():
    """Versions, CPU and date that every results file carries."""
    import ai_edge_litert
    import keras
    import numpy
    import tensorflow as tf

    import tfopt

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", _dist_version("ai-edge-litert")),
        "numpy": numpy.__version__,
        "tfopt": tfopt.__version__,
    }


def _dist_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pareto_front(points, maximize=None):
    """Indices of the non-dominated points (accuracy up, costs down by default).

    A point dominates another when it is at least as good in every
    coordinate and strictly better in one. Points equal in every coordinate
    do not dominate each other, so ties are all kept.

    Args:
        points: A list of equal-length tuples, e.g. `(accuracy, cost)` or
            `(accuracy, bytes, latency)`.
        maximize: One bool per coordinate: True where larger is better.
            Default: the first coordinate up (accuracy), the others down.

    Returns:
        The indices of the non-dominated points, in input order.

    Raises:
        ValueError: If the points differ in length or `maximize` does not
            match it.

    Example:

    >>> pareto_front([(0.9, 10), (0.8, 5), (0.7, 20)])
    [0, 1]
    """
    if not points:
        return []
    width = len(points[0])
    if any(len(p) != width for p in points):
        raise ValueError("pareto_front: all points must have the same number of coordinates.")
    if maximize is None:
        maximize = (True,) + (False,) * (width - 1)
    if len(maximize) != width:
        raise ValueError(
            f"pareto_front: maximize has {len(maximize)} entries for points of {width} coordinates."
        )
    # Negate the minimised coordinates: then "better" is "larger" everywhere.
    signed = [tuple(v if up else -v for v, up in zip(p, maximize)) for p in points]

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [
        i for i, p in enumerate(signed)
        if not any(dominates(q, p) for j, q in enumerate(signed) if j != i)
    ]


def _fmt(value, digits=4):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


COLUMNS = [
    ("recipe", "recipe", None),
    ("keras acc", "keras_accuracy", 4),
    ("tflite acc", "tflite_accuracy", 4),
    ("top-1 agree", "top1_agreement", 4),
    ("sparsity", "sparsity", 3),
    ("bytes", "size_bytes", None),
    ("gzip", "gzip_bytes", None),
    ("bytes/float", "bytes_vs_float", 3),
    ("gzip/float", "gzip_vs_float", 3),
    ("p50 ms", "cpu_p50_ms", 4),
    ("p90 ms", "cpu_p90_ms", 4),
    ("p99 ms", "cpu_p99_ms", 4),
    ("p50/float", "p50_vs_float", 2),
    ("slower than float", "slower_than_float", None),
    ("GPU TF p50", "gpu_tf_p50_ms", 4),
    ("GPU TF+XLA p50", "gpu_tf_xla_p50_ms", 4),
    ("GPU LiteRT p50", "gpu_litert_p50_ms", 4),
]


def markdown(results):
    """One table per model of the suite, failed rows with their reason."""
    env = results["environment"]
    lines = [
        f"# tfopt bench --suite {results['suite']}",
        "",
        f"`{results['command']}` on {env['cpu']} ({env['cores']} cores), "
        f"{results['settings']['num_threads']} thread(s), {env['date']}; TF {env['tensorflow']}, "
        f"Keras {env['keras']}, ai-edge-litert {env['ai_edge_litert']}.",
        "Latency: LiteRT interpreter (XNNPACK), fresh per row, batch 1, "
        f">= {results['settings']['runs']} timed invokes and >= {results['settings']['min_seconds']} s "
        f"after warm-up, in {results['settings'].get('latency_rounds', 1)} rounds interleaved "
        "across the model's rows. p99 is flagged `*` when fewer than 1000 invokes were timed. "
        "`slower than float`: p50 more than 5% above the float row's.",
        "",
    ]
    by_model = {}
    for row in results["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        lines += [f"## {model}", "", results.get("descriptions", {}).get(model, ""), ""]
        lines.append("| " + " | ".join(c[0] for c in COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for row in rows:
            if row["status"] != "ok":
                reason = row.get("reason", "").splitlines()[0][:300].replace("|", "/") if row.get("reason") else ""
                lines.append(f"| {row['recipe']} | failed: {reason} |" + " |" * (len(COLUMNS) - 2))
                continue
            cells = []
            for _, key, digits in COLUMNS:
                value = row.get(key)
                text = _fmt(value, digits) if digits else _fmt(value)
                if key == "cpu_p99_ms" and not row.get("cpu_p99_reliable", True):
                    text += "*"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results, out_dir):
    """Writes accuracy-vs-bytes and accuracy-vs-p50 PNGs per model.

    Returns:
        The paths written (models without accuracy are skipped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    by_model = {}
    for row in results["rows"]:
        if row["status"] == "ok" and row.get("tflite_accuracy") is not None:
            by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for axis, key, label in (
            (axes[0], "size_bytes", "TFLite bytes"),
            (axes[1], "cpu_p50_ms", "p50 latency, ms (1 example)"),
        ):
            points = [(r["tflite_accuracy"], r[key]) for r in rows]
            front = set(pareto_front(points))
            for i, row in enumerate(rows):
                axis.scatter(row[key], row["tflite_accuracy"],
                             marker="*" if i in front else "o",
                             s=140 if i in front else 40,
                             color="tab:red" if i in front else "tab:blue")
                axis.annotate(row["recipe"], (row[key], row["tflite_accuracy"]),
                              fontsize=7, xytext=(3, 3), textcoords="offset points")
            ordered = sorted((points[i] for i in front), key=lambda p: p[1])
            axis.plot([p[1] for p in ordered], [p[0] for p in ordered], "r--", linewidth=1,
                      label="Pareto front")
            axis.set_xscale("log")
            axis.set_xlabel(label)
            axis.set_ylabel("TFLite accuracy")
            axis.legend(loc="lower right")
            axis.grid(True, alpha=0.3)
        figure.suptitle(f"{model}: accuracy vs size and latency")
        figure.tight_layout()
        path = os.path.join(out_dir, f"{model}-pareto.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def write(results, out_dir):
    """Writes results.json, results.md and the plots to `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(markdown(results))
    return plot(results, out_dir)
