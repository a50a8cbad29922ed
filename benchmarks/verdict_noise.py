"""How stable are the suites' latency verdicts? (issue 12, item 6)

Exports a small digits CNN (16x16) as float and PTQ int8, copies the float
file, and measures [float, float copy, int8] with `tfopt.bench.measure_files`
(one fresh child per repeat, 8 interleaved rounds) several times. For each
repeat it prints the naive ratio of p50s, the paired ratio with its 95%
interval, and the verdict. The float copy has the same compute as float: its
verdict must stay "within noise"; the old rule (p50 ratio > 1.05 = slower)
is shown beside it.

Usage:
    python benchmarks/verdict_noise.py --repeats 6 --out benchmarks/results/verdict_noise
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from tfopt import export  # noqa: E402
from tfopt.bench import latency  # noqa: E402
from tfopt.bench import report  # noqa: E402
from tfopt.data import load_digits  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--out", default="benchmarks/results/verdict_noise")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    (x, y), _ = load_digits(16)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(12, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export.to_tflite(model, f"{tmp}/float.tflite", batch_size=1).path
        copy_path = f"{tmp}/float-copy.tflite"
        shutil.copy(float_path, copy_path)
        int8_path = export.to_tflite(model, f"{tmp}/int8.tflite", batch_size=1, quantization="int8",
                                     representative_data=x[:200]).path
        for repeat in range(args.repeats):
            rows = latency.measure_files([float_path, copy_path, int8_path], runs=args.runs,
                                         min_seconds=args.min_seconds, rounds=8, seed=repeat)
            base = rows[0]
            for name, row in zip(("float copy", "ptq-int8"), rows[1:]):
                paired = latency.compare_rounds(row["round_p50_ms"], base["round_p50_ms"])
                naive = row["result"].p50_ms / base["result"].p50_ms
                out.append(dict(repeat=repeat, row=name, float_p50_ms=base["result"].p50_ms,
                                p50_ms=row["result"].p50_ms, naive_ratio=naive,
                                old_rule_slower=naive > 1.05, **paired))
    env = report.environment()
    results = dict(command="python " + " ".join(sys.argv), environment=env, rows=out)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    lines = [
        "# Latency verdicts: same file twice, and int8 vs float", "",
        f"`{results['command']}` on {env['cpu']} ({env['cores']} cores; ISA: "
        f"{', '.join(env['cpu_isa'])}), {env['date']}; TF {env['tensorflow']}, ai-edge-litert "
        f"{env['ai_edge_litert']}; 1 thread, 8 rounds per repeat, >= {args.runs} invokes and "
        f">= {args.min_seconds} s per row per repeat. Other jobs were running on the machine.", "",
        "| repeat | row | float p50 ms | row p50 ms | naive ratio | old rule 'slower' | paired ratio [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out:
        lines.append(f"| {r['repeat']} | {r['row']} | {r['float_p50_ms']:.4f} | {r['p50_ms']:.4f} | "
                     f"{r['naive_ratio']:.3f} | {'yes' if r['old_rule_slower'] else ''} | "
                     f"{r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['verdict']} |")
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
