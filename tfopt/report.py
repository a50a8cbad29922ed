"""The one report writer of tfopt: what `tfopt bench` (results.md) and the
compression search (trials.md) share.

A metric is formatted and labelled here, by its name in the shared
vocabulary (`tfopt.pipeline.METRICS`), so `size_bytes` or `p50_ms` reads
the same in a suite's results.md and a search's trials.md. Also here: the
machine line and environment block of every results file, a Markdown table
from rows and columns, JSON writing, and the Pareto scatter (front starred
and joined).

Each side keeps only its own: bench its per-model sections, verdict summary
and special cells (`tfopt.bench.report`); the search its trials.csv,
constraints and header (`tfopt.tuning.report`).
"""

import datetime
import json
import os
import platform

from tfopt.pipeline import LEGACY_NAMES

# Metric name -> (column label, decimals). None decimals: integers as they
# are, other floats by `format_value`'s default rule.
FORMATS = {
    "keras_accuracy": ("keras acc", 4),
    "tflite_accuracy": ("tflite acc", 4),
    "top1_agreement": ("top-1 agree", 4),
    "accuracy_drop": ("drop", 4),
    "size_bytes": ("bytes", 0),
    "gzip_bytes": ("gzip", 0),
    "bytes_vs_float": ("bytes/float", 3),
    "gzip_vs_float": ("gzip/float", 3),
    "p50_ms": ("p50 ms", 4),
    "p90_ms": ("p90 ms", 4),
    "p99_ms": ("p99 ms", 4),
    "p50_vs_float": ("p50/float", 3),
    "sparsity": ("zeros", 3),  # the measured fraction; a search's hp `sparsity` is the target
    "params": ("params", 0),
    "score": ("score", 4),
    "trial_seconds": ("seconds", 1),
}
# Row keys that name a metric another way: the earlier names, and the
# search's "zeros" (its row key for the measured `sparsity`).
ALIASES = {**LEGACY_NAMES, "cpu_p99_ms": "p99_ms", "zeros": "sparsity"}

# Axis titles of the Pareto plots.
AXES = {
    "tflite_accuracy": "TFLite accuracy (held-out data)",
    "size_bytes": "TFLite bytes",
    "p50_ms": "p50 latency, ms (batch 1)",
}


def metric_name(key):
    """The `FORMATS` name of a row key (`cpu_p50_ms` and `p50_ms` -> `p50_ms`)."""
    return ALIASES.get(key, key)


def label(key):
    """The column label of a row key: the metric's label, else the key itself.

    Example:

    >>> label("cpu_p50_ms"), label("p50_ms"), label("trial")
    ('p50 ms', 'p50 ms', 'trial')
    """
    return FORMATS.get(metric_name(key), (key, None))[0]


def format_value(value, digits=None):
    """One cell's text: None empty, True "yes", floats to `digits` decimals.

    Without `digits`, a float in (-1, 1) gets 4 decimals and any other the
    shortest form (`%g`). Pipes and newlines are replaced, so the text fits
    a Markdown cell.

    Example:

    >>> format_value(1234.0, 0), format_value(0.001), format_value(True)
    ('1234', '0.0010', 'yes')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, (int, float)) and digits is not None:
        return f"{value:.{digits}f}"
    if isinstance(value, float):
        return f"{value:.4f}" if 0 < abs(value) < 1 else f"{value:g}"
    return str(value).replace("|", "/").replace("\n", " ")


def format_metric(key, value):
    """`value` formatted as the metric `key` is everywhere (see `FORMATS`).

    Example:

    >>> format_metric("cpu_p50_ms", 1.23456), format_metric("size_bytes", 2048.0)
    ('1.2346', '2048')
    """
    return format_value(value, FORMATS.get(metric_name(key), (None, None))[1])


def markdown_table(rows, columns, labels=None, cell=None):
    """A Markdown table: one line per row dict, one column per key.

    Args:
        rows: Dicts.
        columns: The keys, in order.
        labels: `{key: label}` overriding `label(key)`.
        cell: Optional `cell(row, key)` returning a cell's text, or None
            for the default (`format_metric(key, row.get(key))`).

    Returns:
        The table's lines (a list of str).

    Example:

    >>> markdown_table([{"recipe": "float", "size_bytes": 2048}], ["recipe", "size_bytes"])
    ['| recipe | bytes |', '|---|---|', '| float | 2048 |']
    """
    labels = labels or {}
    lines = ["| " + " | ".join(labels.get(k) or label(k) for k in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key in columns:
            text = cell(row, key) if cell else None
            if text is None:
                text = format_metric(key, row.get(key))
            cells.append(text.replace("|", "/").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_json(payload, path):
    """Writes `payload` as indented JSON (non-JSON values as strings)."""
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
    return path


def pareto_figure(path, title, panels):
    """Writes a PNG of side-by-side Pareto panels (accuracy against a cost).

    Args:
        path: The PNG to write.
        title: The figure's title.
        panels: One dict per panel, the keyword arguments of
            `pareto_panel` (without `axis`).

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        pareto_panel(axis, **panel)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


STYLES = {
    "front": dict(marker="*", s=150, color="tab:red", zorder=3),
    "point": dict(marker="o", s=40, color="tab:blue"),
    "infeasible": dict(marker="x", s=40, color="tab:gray"),
}


def pareto_panel(axis, points, x_key, starred, line, annotations=(), kinds=None,
                 reference=None, y_key="tflite_accuracy", line_label="Pareto front"):
    """Draws one accuracy-vs-cost scatter: front starred and joined, log x.

    Args:
        axis: A matplotlib axis.
        points: `(x, y)` per point.
        x_key, y_key: Metric names of the axes (titles from `AXES`).
        starred: Indices drawn as red stars (the front).
        line: Indices joined by the dashed front line (sorted by x).
        annotations: `(x, y, text)` labels.
        kinds: Per point a `STYLES` key for the unstarred ones ("point").
        reference: Optional `(x, y, label)` drawn as a black square.
        line_label: The legend entry of the line.
    """
    from matplotlib.ticker import NullFormatter

    starred = set(starred)
    for i, (x, y) in enumerate(points):
        kind = "front" if i in starred else (kinds[i] if kinds else "point")
        axis.scatter(x, y, **STYLES[kind])
    # Points that coincide share one label, so labels do not pile up.
    for (x, y), names in _coincident(annotations).items():
        text = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
        axis.annotate(text, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ordered = sorted((points[i] for i in line), key=lambda p: p[0])
    axis.plot([p[0] for p in ordered], [p[1] for p in ordered], "r--", linewidth=1,
              label=line_label)
    if reference:
        axis.scatter(reference[0], reference[1], marker="s", s=60, color="black",
                     label=reference[2], zorder=3)
    axis.set_xscale("log")
    xs = [x for x, _ in points if x > 0]
    if xs and max(xs) >= 10 * min(xs):  # decades labelled: minor labels would collide
        axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(AXES.get(x_key, label(x_key)))
    axis.set_ylabel(AXES.get(y_key, label(y_key)))
    axis.legend(loc="best", fontsize=8)
    axis.grid(True, alpha=0.3)


def _coincident(annotations):
    """Labels grouped by where they land: `{(x, y): [text, ...]}`."""
    groups = {}
    for x, y, text in annotations:
        groups.setdefault((float(f"{x:.2g}"), round(y, 3)), []).append(text)
    return groups


# -- the environment block of every results file -------------------------------

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
        "cpu_isa": cpu_isa(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", _dist_version("ai-edge-litert")),
        "numpy": numpy.__version__,
        "tfopt": tfopt.__version__,
    }


def machine_line(env, threads=None):
    """`env` in one sentence: CPU, cores, ISA, threads, date and versions.

    Example:

    >>> machine_line({"cpu": "Xeon", "cores": 2, "cpu_isa": ["AVX2"], "date": "2026-12-01",
    ...               "tensorflow": "2.21", "keras": "3.15", "ai_edge_litert": "2.3"})
    'Xeon (2 cores; ISA: AVX2), 2026-12-01; TF 2.21, Keras 3.15, ai-edge-litert 2.3.'
    """
    isa = ", ".join(env.get("cpu_isa") or ["not recorded"])
    threads = f"{threads} thread(s), " if threads is not None else ""
    return (f"{env['cpu']} ({env['cores']} cores; ISA: {isa}), {threads}{env['date']}; "
            f"TF {env['tensorflow']}, Keras {env['keras']}, "
            f"ai-edge-litert {env['ai_edge_litert']}.")


def _dist_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


# /proc/cpuinfo flag -> name: the features int8 and float kernels dispatch on.
ISA_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "avx_vnni": "AVX-VNNI",
    "amx_tile": "AMX",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimddp": "NEON dot product",
    "i8mm": "Arm I8MM",
    "sve": "SVE",
}


def cpu_isa(cpuinfo_path="/proc/cpuinfo"):
    """The CPU's vector/matrix features that decide kernel speed (from its flags).

    Args:
        cpuinfo_path: Where to read the flags (Linux).

    Returns:
        Names such as `["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI", "AMX"]`,
        in `ISA_FLAGS` order; `["unknown"]` where the file is absent.

    Example:

    >>> "AVX2" in cpu_isa()  # doctest: +SKIP
    True
    """
    try:
        with open(cpuinfo_path) as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return [name for flag, name in ISA_FLAGS.items() if flag in flags]
    except OSError:
        pass
    return ["unknown"]


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
