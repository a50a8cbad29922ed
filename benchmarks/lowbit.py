"""Below-int8 benchmark: the targets of issue 13.

    python benchmarks/lowbit.py [--out benchmarks/results] [--rounds 5] [--skip-mobilenet]

1. Digits (`digits_teacher(16)`: Conv32, Conv64, Dense 2304->128, Dense 10;
   trained 15 epochs on the 16x16 digits): float, converter int8 (the
   reference for budgets), litert-quantizer int4 weight-only / dynamic /
   blockwise 32-64-128 and int16x8, weight clustering 16/32 (tfopt) and
   tfmot's clustering on tf_keras (subprocess), mixed precision at 0.75x,
   0.5x, 0.25x of the int8 file's bytes and at the uniform-int4 file's
   bytes, and Keras' `model.quantize("int4")` (its result or its failure).
2. MobileNetV2 alpha 1.0 224x224 (`weights=None`, random weights and
   inputs, size/latency/agreement only): float, converter int8, int4
   blockwise 32, int4 dynamic.

Every file runs in the LiteRT interpreter (accuracy/agreement on the 360
test digits; 32 random images for MobileNetV2). CPU latency: 1 thread,
batch 1, interleaved rounds within each case (tfopt.bench.harness), so
machine load hits the rows of one case alike. Writes lowbit.json and
lowbit.md to --out.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


from tfopt import export  # noqa: E402
from tfopt.bench import harness  # noqa: E402
from tfopt.bench import report  # noqa: E402
from tfopt.bench import suites  # noqa: E402
from tfopt.report import format_metric  # noqa: E402
from tfopt.models import digits_teacher  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def mixed_at_int4_bytes():
    """Mixed precision with the uniform int4-dynamic file's bytes as budget."""

    def make(model, data, workdir):
        representative = data[0][:suites.REPRESENTATIVE_EXAMPLES]
        float_file = export.to_tflite(model, batch_size=1)
        uniform = export.quantize_tflite(float_file, mode="int4_dynamic")
        exported = export.mixed_precision(
            float_file, uniform.size_bytes, representative,
            path=os.path.join(workdir, "mixed-at-int4.tflite"),
            candidates=suites.MIXED_CANDIDATES)
        return harness.Artifact(exported, model, extra={
            "budget_bytes": uniform.size_bytes,
            "precisions": [row["precision"] for row in exported.layers]})

    return harness.Recipe("mixed-at-int4-bytes", make, group="lowbit")


def digits_case():
    recipes = [
        suites.float_recipe(), suites.ptq_recipe("int8"),
        suites.lowbit_recipe("int4_weight_only"), suites.lowbit_recipe("int4_dynamic"),
        suites.lowbit_recipe("int4_blockwise", 32), suites.lowbit_recipe("int4_blockwise", 64),
        suites.lowbit_recipe("int4_blockwise", 128), suites.lowbit_recipe("int16x8"),
        suites.cluster_recipe(16), suites.cluster_recipe(32),
        suites.tfmot_cluster_recipe(16, baselines=HERE), suites.tfmot_cluster_recipe(32, baselines=HERE),
        suites.mixed_recipe(0.75), suites.mixed_recipe(0.5), suites.mixed_recipe(0.25),
        mixed_at_int4_bytes(), suites.keras_quantize_int4_recipe(),
    ]
    return harness.Case("digits-teacher-16", suites._trained(lambda: digits_teacher(16), 16, epochs=15),
                        recipes, "digits_teacher(16): Conv32, Conv64, Dense 128, Dense 10 (315k params)")


def mobilenet_case():
    recipes = [suites.float_recipe(), suites.ptq_recipe("int8"),
               suites.lowbit_recipe("int4_blockwise", 32), suites.lowbit_recipe("int4_dynamic")]
    return harness.Case("mobilenetv2-1.0-224", suites._mobilenet(1.0, 224), recipes,
                        "MobileNetV2 alpha 1.0 224x224, random weights (size/latency only)")


COLUMNS = ("recipe", "status", "size_bytes", "bytes_vs_float", "gzip_bytes", "gzip_vs_float",
           "tflite_accuracy", "keras_accuracy", "top1_agreement", "cpu_p50_ms", "p50_vs_float")


def markdown(results):
    lines = [f"# Below int8 (issue 13)", "", f"Command: `{results['command']}`  ",
             f"Date: {results['date']}  ", f"Machine: {results['machine']}", ""]
    for case, rows in results["cases"].items():
        lines += [f"## {case}", "", results["descriptions"][case], "",
                  "| " + " | ".join(COLUMNS) + " | notes |",
                  "|" + "---|" * (len(COLUMNS) + 1)]
        for row in rows:
            cells = [format_metric(c, row.get(c)) if c not in ("recipe", "status") else str(row.get(c))
                     for c in COLUMNS]
            notes = {k: row[k] for k in ("precisions", "budget_bytes", "max_distinct_values",
                                          "reason") if k in row}
            lines.append("| " + " | ".join(cells) + f" | {json.dumps(notes) if notes else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--skip-mobilenet", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args(argv)
    settings = harness.Settings(warmup=20, runs=args.runs, min_seconds=1.0, device="cpu",
                                latency_rounds=args.rounds)
    cases = ([] if args.skip_digits else [digits_case()]) + (
        [] if args.skip_mobilenet else [mobilenet_case()])
    results = {
        "command": "python benchmarks/lowbit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": ("shared 2-core VM, other jobs running: latencies compare only "
                    "within one case (interleaved rounds)"),
        "environment": report.environment(),
        "descriptions": {},
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for case in cases:
            print(f"{case.name} ...", file=sys.stderr, flush=True)
            rows = harness.run_case(case, settings, workdir,
                                    progress=lambda r: print(f"  {r['recipe']}: {r['status']} "
                                                             f"{r.get('reason', '')}",
                                                             file=sys.stderr, flush=True))
            results["cases"][case.name] = rows
            results["descriptions"][case.name] = case.description
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "lowbit.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    with open(os.path.join(args.out, "lowbit.md"), "w") as handle:
        handle.write(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
