"""Benchmark harness: latency of TFLite files, suites, reports."""

from tfopt.bench.harness import Settings
from tfopt.bench.harness import run_suite
from tfopt.bench.latency import LatencyResult
from tfopt.bench.latency import check_litert_gpu
from tfopt.bench.latency import compare_rounds
from tfopt.bench.latency import gpu_devices
from tfopt.bench.latency import litert_gpu_adapter
from tfopt.bench.latency import measure_files
from tfopt.bench.latency import measure_latency
from tfopt.bench.report import pareto_front

__all__ = [
    "LatencyResult",
    "Settings",
    "check_litert_gpu",
    "compare_rounds",
    "gpu_devices",
    "litert_gpu_adapter",
    "measure_files",
    "measure_latency",
    "pareto_front",
    "run_suite",
]
