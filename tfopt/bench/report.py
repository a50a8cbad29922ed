"""Benchmark output: results.json, results.md and Pareto plots (PNG)."""

import datetime
import json
import os
import platform

from tfopt.defaults import NO_GPU  # noqa: F401  (re-exported)


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


DEFAULT_PARETO_OBJECTIVES = ("tflite_accuracy", "size_bytes", "p50_ms")


def pareto_front(items, objectives=None, include_infeasible=False, maximize=None, intervals=None):
    """The non-dominated points, trials or rows (the one Pareto front of tfopt).

    A point dominates another when it is at least as good in every
    coordinate and strictly better in one. Points equal in every coordinate
    do not dominate each other, so ties are all kept.

    Two forms:

    - Points: `items` are equal-length tuples, e.g. `(accuracy, bytes,
      latency)`; returns their indices. `maximize` says which coordinates
      are better larger (default: the first up, the others down).
    - Records: `items` are search trials (`tfopt.tuning.TrialRecord`) or
      benchmark rows (dicts of `results.json`); `objectives` names metrics
      of the shared vocabulary (`tfopt.pipeline.METRICS`, default TFLite
      accuracy up, bytes and p50 latency down); returns the items on the
      front, in input order. Failed rows and trials, trials rejected before
      training and (unless `include_infeasible`) infeasible trials are
      left out, as are items lacking an objective.

    Args:
        items: Tuples, `TrialRecord`s or row dicts.
        objectives: Records: metric names (at least two).
        include_infeasible: Records: also consider trials breaking a
            constraint.
        maximize: Points: one bool per coordinate.
        intervals: Optional noise of measured coordinates, one entry per
            item: a tuple with, per coordinate, None (exact) or a
            `(low, high)` interval. Two points whose intervals overlap in a
            coordinate are equal there, so a latency inside the noise
            neither wins nor loses.

    Returns:
        Points: the indices of the non-dominated points. Records: the
        items on the front.

    Raises:
        ValueError: If the points differ in length, `maximize` does not
            match it, or an objective is unknown or fewer than two.

    Example:

    >>> pareto_front([(0.9, 10), (0.8, 5), (0.7, 20)])
    [0, 1]
    """
    if items and not isinstance(items[0], (tuple, list)):
        return _record_front(items, objectives, include_infeasible, intervals)
    if objectives is not None and maximize is None:
        maximize = objectives  # the earlier signature: pareto_front(points, maximize)
    if intervals is None and not isinstance(include_infeasible, bool):
        intervals = include_infeasible  # the earlier pareto_front(points, maximize, intervals)
    return _point_front(items, maximize, intervals)


def _record_front(items, objectives, include_infeasible, intervals):
    from tfopt.pipeline import canonical_metrics
    from tfopt.pipeline import direction

    objectives = tuple(objectives or DEFAULT_PARETO_OBJECTIVES)
    if len(objectives) < 2:
        raise ValueError(f"A Pareto front needs at least two objectives, got {objectives!r}.")
    maximize = tuple(direction(name) == "max" for name in objectives)

    def values(item):
        # Old result files name metrics the earlier way (cpu_p50_ms,
        # bytes_vs_baseline): read them under the shared vocabulary.
        if isinstance(item, dict):  # a bench row
            return canonical_metrics(item) if item.get("status", "ok") == "ok" else None
        if not item.measured or not (include_infeasible or item.feasible):
            return None
        return canonical_metrics(item.metrics)

    pool, noise = [], []
    for i, item in enumerate(items):
        metrics = values(item)
        if metrics is None or not all(
                isinstance(metrics.get(n), (int, float)) and not isinstance(metrics.get(n), bool)
                for n in objectives):
            continue
        pool.append((item, tuple(metrics[n] for n in objectives)))
        noise.append(None if intervals is None else intervals[i])
    front = _point_front([p for _, p in pool], maximize, None if intervals is None else noise)
    return [pool[i][0] for i in front]


def _point_front(points, maximize, intervals):
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
    if intervals is not None and len(intervals) != len(points):
        raise ValueError(
            f"pareto_front: {len(intervals)} intervals for {len(points)} points.")
    # Negate the minimised coordinates: then "better" is "larger" everywhere.
    signed = [tuple(v if up else -v for v, up in zip(p, maximize)) for p in points]
    bounds = []
    for i, p in enumerate(signed):
        row = []
        for k, v in enumerate(p):
            span = None if intervals is None or intervals[i] is None else intervals[i][k]
            if span is None:
                row.append((v, v))
            else:
                low, high = (span[0], span[1]) if maximize[k] else (-span[1], -span[0])
                row.append((min(low, v), max(high, v)))
        bounds.append(row)

    def dominates(a, b):
        worse = any(ah < bl for (al, ah), (bl, bh) in zip(bounds[a], bounds[b]))
        strictly = any(al > bh for (al, ah), (bl, bh) in zip(bounds[a], bounds[b]))
        return not worse and strictly

    return [
        i for i in range(len(signed))
        if not any(dominates(j, i) for j in range(len(signed)) if j != i)
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
    ("collapse", "accuracy_collapse", None),
    ("top-1 agree", "top1_agreement", 4),
    ("sparsity", "sparsity", 3),
    ("bytes", "size_bytes", None),
    ("gzip", "gzip_bytes", None),
    ("bytes/float", "bytes_vs_float", 3),
    ("gzip/float", "gzip_vs_float", 3),
    ("p50 ms", "cpu_p50_ms", 4),
    ("p90 ms", "cpu_p90_ms", 4),
    ("p99 ms", "cpu_p99_ms", 4),
    ("p50/float [95% CI]", "p50_vs_float", 3),
    ("latency verdict", "latency_verdict", None),
    ("GPU LiteRT check", "gpu_litert_status", None),
    ("GPU LiteRT p50", "gpu_litert_p50_ms", 4),
    ("GPU TF p50", "gpu_tf_p50_ms", 4),
    ("GPU TF+XLA p50", "gpu_tf_xla_p50_ms", 4),
]


def _cell(row, key, digits):
    value = row.get(key)
    if key == "p50_vs_float" and row.get("p50_ratio_paired") is not None:
        value = row["p50_ratio_paired"]  # the ratio the interval and verdict are about
    text = _fmt(value, digits) if digits else _fmt(value)
    if key == "cpu_p99_ms" and value is not None and not row.get("cpu_p99_reliable", True):
        text += "*"
    elif key == "p50_vs_float" and row.get("p50_ratio_ci") and row.get("latency_verdict") != "reference":
        low, high = row["p50_ratio_ci"]
        text += f" [{low:.3f}, {high:.3f}]"
    elif key == "accuracy_collapse" and value:
        text = f"COLLAPSE (-{row['accuracy_drop'] * 100:.1f} pts)"
    elif key == "gpu_litert_status" and value is not None:
        if value == "ok":
            text = f"ok, max abs diff {row['gpu_litert_max_abs_diff']:.1e} (rel {row['gpu_litert_rel_diff']:.1e})"
        elif row.get("gpu_litert_reason"):
            text = f"{value}: {row['gpu_litert_reason']}"
    return text.replace("|", "/").replace("\n", " ")


def summary_lines(results):
    """Findings a reader must not miss: collapses, verdicts, failed rows, GPU status."""
    rows = results["rows"]
    lines = []
    collapsed = [r for r in rows if r.get("accuracy_collapse")]
    for r in collapsed:
        lines.append(f"- **Accuracy collapse**: {r['model']} / {r['recipe']}: TFLite accuracy "
                     f"{r['tflite_accuracy']:.4f}, {r['accuracy_drop'] * 100:.1f} points under "
                     "the float row.")
    for r in rows:
        if r.get("latency_verdict") in ("slower", "faster"):
            low, high = r["p50_ratio_ci"]
            lines.append(f"- {r['latency_verdict'].capitalize()} than float (beyond the noise): "
                         f"{r['model']} / {r['recipe']}: p50 x{r['p50_ratio_paired']:.2f} "
                         f"[{low:.2f}, {high:.2f}].")
    failed = [r for r in rows if r["status"] not in ("ok", "skipped")]
    if failed:
        lines.append(f"- {len(failed)} row(s) failed (reasons in the tables).")
    skipped = [r for r in rows if r["status"] == "skipped"]
    if skipped:
        lines.append(f"- {len(skipped)} row(s) skipped: {skipped[0].get('reason')}.")
    refused = [r for r in rows if r.get("gpu_litert_status") == "refused"]
    if refused:
        lines.append(f"- LiteRT GPU refused {len(refused)} file(s) (reasons in the tables).")
    if not lines:
        lines.append("- No accuracy collapse; no latency difference beyond the noise; every row ok.")
    return lines


def markdown(results):
    """One table per model of the suite, failed rows with their reason."""
    env = results["environment"]
    settings = results["settings"]
    gpu = results.get("gpu") or {}
    isa = ", ".join(env.get("cpu_isa") or ["not recorded"])
    lines = [
        f"# tfopt bench --suite {results['suite']}",
        "",
        f"`{results['command']}` on {env['cpu']} ({env['cores']} cores; ISA: {isa}), "
        f"{settings['num_threads']} thread(s), {env['date']}; TF {env['tensorflow']}, "
        f"Keras {env['keras']}, ai-edge-litert {env['ai_edge_litert']}.",
        "",
        "Latency: LiteRT interpreter (XNNPACK), batch 1, each model's rows timed in one fresh child "
        f"process, >= {settings['runs']} timed invokes and >= {settings['min_seconds']} s after "
        f"warm-up, in {settings.get('latency_rounds', 1)} rounds interleaved across the model's rows "
        "(order reversed every other round). p99 is flagged `*` when fewer than 1000 invokes were "
        "timed. `p50/float`: geometric mean of the per-round ratios row p50 / float p50, with a "
        "95% bootstrap interval over the rounds; the verdict says `slower`/`faster` only when that interval "
        f"excludes 1.0 and the ratio differs from 1 by more than 5%, else `within noise`. "
        "`collapse`: TFLite accuracy more than 5 points under the float row's.",
    ]
    if gpu:
        software = gpu.get("litert_available") and gpu.get("litert_software") is not False
        lines += [
            "",
            f"GPU (LiteRT accelerator, WebGPU/Vulkan): {gpu.get('litert')}. Every file is checked "
            "against the CPU interpreter (max abs diff; rel = over max |output|) before it is timed"
            + ("; **software Vulkan: functional check, not a GPU speed** -- its timings are kept "
               "in results.json only and stay out of every comparison and Pareto front."
               if software else "."),
            f"GPU (TensorFlow, CUDA): {gpu.get('tf')}.",
        ]
    lines += ["", "## Summary", ""] + summary_lines(results) + [""]
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
                lines.append(f"| {row['recipe']} | {row['status']}: {reason} |"
                             + " |" * (len(COLUMNS) - 2))
                continue
            lines.append("| " + " | ".join(_cell(row, key, digits) for _, key, digits in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def latency_intervals(rows, min_effect=None):
    """Per row, the noise of its p50 for `pareto_front`.

    The float row spans its p50 x [1 - min_effect, 1 + min_effect] (a
    difference under 5% is never called); every other row spans float p50 x
    its paired 95% interval. Rows whose spans overlap tie on latency. Rows
    without an interval (too few rounds, no float row) are exact.
    """
    if min_effect is None:
        from tfopt.bench.latency import MIN_EFFECT as min_effect
    reference = next((r for r in rows if r.get("latency_verdict") == "reference"), None)
    out = []
    for row in rows:
        ci = row.get("p50_ratio_ci")
        if reference is None or not ci:
            out.append(None)
            continue
        base = reference["cpu_p50_ms"]
        low, high = (1 - min_effect, 1 + min_effect) if row is reference else ci
        out.append((None, (base * low, base * high)))
    return out


def plot(results, out_dir):
    """Writes accuracy-vs-bytes and accuracy-vs-p50 PNGs per model.

    Returns:
        The paths written (models without accuracy are skipped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    paths = []
    by_model = {}
    for row in results["rows"]:
        if (row["status"] == "ok" and row.get("tflite_accuracy") is not None
                and row.get("cpu_p50_ms") is not None):
            by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for axis, key, label in (
            (axes[0], "size_bytes", "TFLite bytes"),
            (axes[1], "cpu_p50_ms", "p50 latency, ms (1 example)"),
        ):
            points = [(r["tflite_accuracy"], r[key]) for r in rows]
            # Latency inside the paired noise of another row neither wins nor loses.
            noise = latency_intervals(rows) if key == "cpu_p50_ms" else None
            front = set(pareto_front(points, intervals=noise))
            for i, row in enumerate(rows):
                axis.scatter(row[key], row["tflite_accuracy"],
                             marker="*" if i in front else "o",
                             s=140 if i in front else 40,
                             color="tab:red" if i in front else "tab:blue", zorder=3)
            # Only the front is labelled (every row is in results.md), and
            # points that coincide share one label, so labels do not pile up.
            for (x_value, accuracy), names in _coincident(rows, key, front).items():
                text = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
                axis.annotate(text, (x_value, accuracy), fontsize=7, xytext=(4, -10),
                              textcoords="offset points")
            ordered = sorted((points[i] for i in front), key=lambda p: p[1])
            axis.plot([p[1] for p in ordered], [p[0] for p in ordered], "r--", linewidth=1,
                      label="Pareto front (labelled)")
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())   # no colliding minor labels
            axis.set_xlabel(label)
            axis.set_ylabel("TFLite accuracy")
            axis.legend(loc="best", fontsize=8)
            axis.grid(True, alpha=0.3)
        figure.suptitle(f"{model}: accuracy vs size and latency")
        figure.tight_layout()
        path = os.path.join(out_dir, f"{model}-pareto.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def _coincident(rows, key, front):
    """Front points grouped by where they land: `{(x, accuracy): [recipe, ...]}`."""
    groups = {}
    for i in sorted(front):
        row = rows[i]
        spot = (float(f"{row[key]:.2g}"), round(row["tflite_accuracy"], 3))
        groups.setdefault(spot, []).append(row["recipe"])
    return groups


def write(results, out_dir):
    """Writes results.json, results.md and the plots to `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(markdown(results))
    return plot(results, out_dir)
