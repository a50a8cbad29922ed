"""The suites after the one-pipeline refactor (issue 14, item 3) against the
committed quick-suite results: the digits-mlp case, six recipes, through
`tfopt.bench.suites.TABLE` and `tfopt.pipeline`.

Accuracy and sparsity must match the committed `results/quick/results.json`
exactly (same seeds, same training); latency is not compared (other jobs).

    python benchmarks/recipe_equivalence.py --out benchmarks/results/recipe_equivalence.md
"""

import argparse
import datetime
import json
import os
import platform
import tempfile

from tfopt.bench import harness
from tfopt.bench import suites

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = ("float", "ptq-int8", "prune-80", "prune-80 +sparsity", "qat-int8", "prune-80 +qat-int8")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with open(os.path.join(HERE, "results", "quick", "results.json")) as handle:
        committed = json.load(handle)
    before = {r["recipe"]: r for r in committed["rows"] if r["model"] == "digits-mlp"}
    case = next(c for c in suites.get_suite("quick") if c.name == "digits-mlp")
    case.recipes = [r for r in case.recipes if r.name in RECIPES]
    settings = harness.Settings(warmup=5, runs=50, min_seconds=0.1, device="cpu", latency_rounds=2)
    with tempfile.TemporaryDirectory() as workdir:
        rows = harness.run_case(case, settings, workdir)
    lines = [
        "# Suite rows after the one-pipeline refactor vs the committed quick suite",
        "",
        f"`python benchmarks/recipe_equivalence.py` on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, shared with other jobs), "
        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}; committed: "
        f"`{committed['command']}`, {committed['environment']['date']}.",
        "",
        "| recipe | tflite acc now | committed | sparsity now | committed | bytes now | committed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        old = before[row["recipe"]]
        lines.append(f"| {row['recipe']} | {row.get('tflite_accuracy')} | {old.get('tflite_accuracy')} "
                     f"| {row.get('sparsity')} | {old.get('sparsity')} | {row.get('size_bytes')} "
                     f"| {old.get('size_bytes')} |")
    same = all(row.get("tflite_accuracy") == before[row["recipe"]].get("tflite_accuracy")
               and row.get("sparsity") == before[row["recipe"]].get("sparsity") for row in rows)
    lines += ["", f"Accuracy and sparsity identical on every row: {'yes' if same else 'NO'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
