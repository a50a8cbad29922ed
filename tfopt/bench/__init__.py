"""Benchmark harness: latency of TFLite files, suites, reports."""

from tfopt.bench.harness import Settings
from tfopt.bench.harness import run_suite
from tfopt.bench.latency import LatencyResult
from tfopt.bench.latency import gpu_devices
from tfopt.bench.latency import measure_latency
from tfopt.bench.report import pareto_front

__all__ = [
    "LatencyResult",
    "Settings",
    "gpu_devices",
    "measure_latency",
    "pareto_front",
    "run_suite",
]
