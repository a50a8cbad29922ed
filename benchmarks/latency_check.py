"""Checks tfopt's latency harness against litert-benchmark, and itself.

    python benchmarks/latency_check.py [--out results/latency_check] [--threads 1]

For MobileNetV2 (alpha 0.35 at 96x96 and alpha 1.0 at 224x224, random
weights) exported float and PTQ int8: p50 from `tfopt.bench.measure_latency`
(Python LiteRT interpreter) next to the median of `litert-benchmark` (the
CompiledModel benchmark shipped in the ai-edge-litert wheel) on the same
file and thread count, over `--rounds` alternating rounds (each measurement
in its own process). Targets: harness within 10% of litert-benchmark;
repeats within 5%.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfopt import export  # noqa: E402


def litert_benchmark_median(path, threads, runs):
    tool = shutil.which("litert-benchmark")
    if tool is None:
        raise RuntimeError("litert-benchmark is not on PATH (it ships with ai-edge-litert)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        subprocess.run([tool, f"--model={path}", f"--num_threads={threads}",
                        f"--num_runs={runs}", "--warmup_runs=50", f"--result_json={out}"],
                       check=True, capture_output=True, text=True)
        with open(out) as handle:
            result = json.load(handle)
    return _find(result, "median_ms")


def harness_p50(path, threads, runs):
    """p50 of `tfopt.bench.measure_latency` in a fresh process.

    Like litert-benchmark, which runs in its own process: TensorFlow's
    thread pools, still spinning after the conversion in this process, took
    a core from the interpreter on a 2-core machine (measured: 15.5 ms vs
    8.9 ms for the same MobileNetV2 file).
    """
    code = ("import sys; from tfopt.bench import measure_latency; "
            f"print(measure_latency(sys.argv[1], num_threads={threads}, runs={runs}, "
            "warmup=50, min_seconds=2.0).p50_ms)")
    done = subprocess.run([sys.executable, "-c", code, path], check=True,
                          capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def _find(tree, key):
    if isinstance(tree, dict):
        if key in tree:
            return float(tree[key])
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/latency_check")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # Phase 1: export every file. Phase 2: time them, each tool in its own
    # process, in rounds that alternate tools and files, so that neither
    # the converter's leftover threads nor machine drift favour one side.
    files = []
    for alpha, size in ((0.35, 96), (1.0, 224)):
        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                                               weights=None, classes=10)
        calibration = np.random.default_rng(0).normal(size=(64, size, size, 3)).astype("float32")
        for mode in (None, "int8"):
            name = f"mobilenetv2-{alpha}-{size}-{mode or 'float'}"
            path = os.path.join(args.out, name + ".tflite")
            export.to_tflite(model, path, quantization=mode, batch_size=1,
                             representative_data=calibration if mode else None)
            files.append((name, path))
    samples = {name: {"harness": [], "litert": []} for name, _ in files}
    for _ in range(args.rounds):
        for name, path in files:
            samples[name]["harness"].append(harness_p50(path, args.threads, args.runs))
            samples[name]["litert"].append(litert_benchmark_median(path, args.threads, args.runs))
    rows = []
    for name, _ in files:
        harness, litert = samples[name]["harness"], samples[name]["litert"]
        rows.append({
            "model": name, "threads": args.threads, "harness_p50_ms": harness,
            "litert_benchmark_median_ms": litert,
            "harness_vs_litert": float(np.median(harness) / np.median(litert)),
            "harness_spread": float(max(harness) / min(harness)),
        })
        print(json.dumps(rows[-1]))
    with open(os.path.join(args.out, "latency_check.json"), "w") as handle:
        json.dump({"command": "python " + " ".join(sys.argv), "rows": rows}, handle, indent=2)
    print("| model | harness p50 ms (rounds) | litert-benchmark median ms (rounds) | harness/litert (medians) | harness max/min |")
    print("|---|---|---|---|---|")
    for r in rows:
        h = ", ".join(f"{v:.3f}" for v in r["harness_p50_ms"])
        lb = ", ".join(f"{v:.3f}" for v in r["litert_benchmark_median_ms"])
        print(f"| {r['model']} | {h} | {lb} | {r['harness_vs_litert']:.3f} | {r['harness_spread']:.3f} |")


if __name__ == "__main__":
    main()
