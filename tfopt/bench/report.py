"""Benchmark output: results.json, results.md and Pareto plots (PNG).

The cells, tables, JSON, machine line and plots are written by the shared
writer `tfopt.report`; here is only what is bench's own: the per-model
sections, the verdict summary and the cells that combine several fields
(p50 ratio with its interval, p99 reliability, collapse, GPU check).
"""

import os

from tfopt.defaults import NO_GPU  # noqa: F401  (re-exported)
from tfopt.report import ISA_FLAGS  # noqa: F401  (re-exported)
from tfopt.report import cpu_isa  # noqa: F401  (re-exported)
from tfopt.report import environment  # noqa: F401  (re-exported)
from tfopt.report import format_metric
from tfopt.report import format_value
from tfopt.report import machine_line
from tfopt.report import markdown_table
from tfopt.report import pareto_figure
from tfopt.report import write_json


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


# results.md columns: row keys; labels from `tfopt.report.FORMATS` unless here.
COLUMNS = [
    "recipe", "keras_accuracy", "tflite_accuracy", "accuracy_collapse", "top1_agreement",
    "sparsity", "size_bytes", "gzip_bytes", "bytes_vs_float", "gzip_vs_float", "p50_ms",
    "p90_ms", "cpu_p99_ms", "p50_vs_float", "latency_verdict", "gpu_litert_status",
    "gpu_litert_p50_ms", "gpu_tf_p50_ms", "gpu_tf_xla_p50_ms",
]
LABELS = {
    "accuracy_collapse": "collapse",
    "p50_vs_float": "p50/float [95% CI]",
    "latency_verdict": "latency verdict",
    "gpu_litert_status": "GPU LiteRT check",
    "gpu_litert_p50_ms": "GPU LiteRT p50",
    "gpu_tf_p50_ms": "GPU TF p50",
    "gpu_tf_xla_p50_ms": "GPU TF+XLA p50",
}
GPU_DIGITS = 4


def _cell(row, key):
    """Bench's own cells; None where the shared formatting applies."""
    if row["status"] != "ok":  # one cell says why, the others stay empty
        if key == "recipe":
            return None
        if key != COLUMNS[1]:
            return ""
        reason = (row.get("reason") or "").splitlines()[0][:300] if row.get("reason") else ""
        return f"{row['status']}: {reason}"
    value = row.get(key)
    if key == "p50_vs_float":
        if row.get("p50_ratio_paired") is not None:
            value = row["p50_ratio_paired"]  # the ratio the interval and verdict are about
        text = format_metric(key, value)
        if row.get("p50_ratio_ci") and row.get("latency_verdict") != "reference":
            low, high = row["p50_ratio_ci"]
            text += f" [{low:.3f}, {high:.3f}]"
        return text
    if key == "cpu_p99_ms" and value is not None and not row.get("cpu_p99_reliable", True):
        return format_metric(key, value) + "*"
    if key == "accuracy_collapse" and value:
        return f"COLLAPSE (-{row['accuracy_drop'] * 100:.1f} pts)"
    if key == "gpu_litert_status" and value is not None:
        if value == "ok":
            return (f"ok, max abs diff {row['gpu_litert_max_abs_diff']:.1e} "
                    f"(rel {row['gpu_litert_rel_diff']:.1e})")
        if row.get("gpu_litert_reason"):
            return f"{value}: {row['gpu_litert_reason']}"
    if key.startswith("gpu_") and key.endswith("_p50_ms"):
        return format_value(value, GPU_DIGITS)
    return None


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
    from tfopt.pipeline import canonical_metrics

    settings = results["settings"]
    gpu = results.get("gpu") or {}
    lines = [
        f"# tfopt bench --suite {results['suite']}",
        "",
        f"`{results['command']}` on "
        + machine_line(results["environment"], threads=settings["num_threads"]),
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
        # Results written before the shared vocabulary say cpu_p50_ms, not p50_ms.
        lines += markdown_table([canonical_metrics(r) for r in rows], COLUMNS, LABELS, _cell)
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
        base = reference.get("p50_ms", reference.get("cpu_p50_ms"))
        low, high = (1 - min_effect, 1 + min_effect) if row is reference else ci
        out.append((None, (base * low, base * high)))
    return out


def plot(results, out_dir):
    """Writes accuracy-vs-bytes and accuracy-vs-p50 PNGs per model.

    Returns:
        The paths written (models without accuracy are skipped).
    """
    from tfopt.pipeline import canonical_metrics

    paths = []
    by_model = {}
    for row in results["rows"]:
        row = canonical_metrics(row)
        if (row["status"] == "ok" and row.get("tflite_accuracy") is not None
                and row.get("p50_ms") is not None):
            by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        panels = []
        for key in ("size_bytes", "p50_ms"):
            points = [(r[key], r["tflite_accuracy"]) for r in rows]
            # Latency inside the paired noise of another row neither wins nor loses.
            noise = latency_intervals(rows) if key == "p50_ms" else None
            front = pareto_front([(y, x) for x, y in points], intervals=noise)
            # Only the front is labelled (every row is in results.md).
            panels.append(dict(points=points, x_key=key, starred=front, line=front,
                               annotations=[points[i] + (rows[i]["recipe"],) for i in front],
                               line_label="Pareto front (labelled)"))
        paths.append(pareto_figure(os.path.join(out_dir, f"{model}-pareto.png"),
                                   f"{model}: accuracy vs size and latency", panels))
    return paths


def write(results, out_dir):
    """Writes results.json, results.md and the plots to `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    write_json(results, os.path.join(out_dir, "results.json"))
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(markdown(results))
    return plot(results, out_dir)
