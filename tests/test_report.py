"""The one report writer (tfopt.report): a metric reads the same in a
suite's results.md and a search's trials.md."""

import json
import os

from tfopt import report
from tfopt.bench import report as bench_report
from tfopt.tuning import report as tuning_report
from tfopt.tuning.trials import TrialRecord

ENV = {"date": "2026-12-01T00:00:00+00:00", "cpu": "test cpu", "cpu_isa": ["AVX2"], "cores": 2,
       "tensorflow": "tf", "keras": "k", "ai_edge_litert": "l"}
# The same measured numbers, once as a bench row and once as a trial.
SAME = {"tflite_accuracy": 0.912345, "keras_accuracy": 0.9, "size_bytes": 2048,
        "gzip_bytes": 1500.0, "p50_ms": 1.234567, "sparsity": 0.5}


def _bench_markdown(rows):
    return bench_report.markdown({
        "suite": "t", "command": "pytest", "environment": ENV,
        "settings": {"num_threads": 1, "runs": 1, "min_seconds": 0}, "rows": rows})


def _table(text):
    """`{label: cell}` of the first row of the first table in `text`."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    labels = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = [c.strip() for c in lines[1].strip("|").split("|")]
    return dict(zip(labels, cells))


def test_a_metric_reads_the_same_in_results_md_and_trials_md(tmp_path):
    bench = _table(_bench_markdown([{"model": "m", "recipe": "float", "status": "ok",
                                     "cpu_p50_ms": SAME["p50_ms"], **SAME}]))
    record = TrialRecord("00", "COMPLETED", {"sparsity": 0.75, "learning_rate": 0.001},
                         {**SAME, "size_bytes": 2048.0, "score": 0.1})
    paths = tuning_report.write_report([record], str(tmp_path), environment=ENV,
                                       baseline={**SAME, "gzip_bytes": 1500})
    trials = _table(open(paths["markdown"]).read())
    for name in ("tflite_accuracy", "keras_accuracy", "size_bytes", "gzip_bytes", "p50_ms",
                 "sparsity"):
        label = report.label(name)
        assert bench[label] == trials[label] == report.format_metric(name, SAME[name]), name
    assert trials["p50 ms"] == "1.2346" and trials["bytes"] == "2048" and trials["gzip"] == "1500"
    # The search's hyperparameter keeps its name; the measured zeros are `zeros` in both.
    assert trials["sparsity"] == "0.7500" and trials["zeros"] == bench["zeros"] == "0.500"
    text = open(paths["markdown"]).read()
    assert "Machine: " + report.machine_line(ENV) in text
    assert "TFLite accuracy 0.9123, 2048 bytes (1500 gzipped), p50 1.2346 ms" in text
    assert json.load(open(paths["json"]))["environment"] == ENV
    assert os.path.getsize(paths["png"]) > 1000


def test_bench_reads_old_names_and_failed_rows_keep_their_reason():
    text = _bench_markdown([
        {"model": "m", "recipe": "float", "status": "ok", "cpu_p50_ms": 2.0,
         "cpu_p99_ms": 3.0, "cpu_p99_reliable": False},
        {"model": "m", "recipe": "broken", "status": "failed", "reason": "ValueError: a|b\nmore"},
    ])
    assert _table(text)["p50 ms"] == "2.0000" and _table(text)["p99 ms"] == "3.0000*"
    assert "| broken | failed: ValueError: a/b |  |" in text


def test_markdown_table_and_format_value():
    lines = report.markdown_table([{"a": None, "size_bytes": 3.0, "x": "p|q", "ok": True}],
                                  ["a", "size_bytes", "x", "ok"], labels={"a": "A"})
    assert lines == ["| A | bytes | x | ok |", "|---|---|---|---|", "|  | 3 | p/q | yes |"]
    assert report.format_value(12.5) == "12.5" and report.format_value(-0.25) == "-0.2500"
    assert report.label("bytes_vs_baseline") == report.label("bytes_vs_float") == "bytes/float"
