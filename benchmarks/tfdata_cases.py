"""Benchmark cases on tf.data (issue 12 item 5): the quick suite's digits-mlp
case, one trained model, its data given three ways -- numpy arrays, a batched
`tf.data.Dataset` of `(x, y)` (train shuffled each epoch, seed 0), and the same
unbatched -- through the same recipes of `tfopt.bench.suites`.

Float and PTQ rows must be identical (same model, same first 200 calibration
examples for the unshuffled order; the shuffled dataset calibrates on other
examples); training rows differ only by batch order (`fit` shuffles arrays
itself). Wall seconds per row are disturbed by other jobs on the machine.

    python benchmarks/tfdata_cases.py --out benchmarks/results/tfdata_cases.md
"""

import argparse
import datetime
import json
import os
import platform
import tempfile

import keras
import tensorflow as tf

from tfopt.bench import harness
from tfopt.bench import suites

RECIPES = ("float", "ptq-int8", "prune-80", "qat-int8", "prune-80 +qat-int8")
COLUMNS = ("tflite_accuracy", "sparsity", "size_bytes", "seconds")


def _copy(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    row = next(r for r in suites.TABLE if r.name == "digits-mlp")
    model, (x, y, x_test, y_test) = row.build()
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    forms = {
        "arrays": (x, y, x_test, y_test),
        "batched dataset, shuffled": (examples.shuffle(len(x), seed=0).batch(32), test.batch(64)),
        "unbatched dataset": (examples, test),
    }
    settings = harness.Settings(warmup=5, runs=50, min_seconds=0.1, device="cpu", latency_rounds=2)
    results = {}
    for form, data in forms.items():
        recipes = [r for r in row.recipes(None) if r.name in RECIPES]
        case = harness.Case(row.name, lambda data=data: (_copy(model), data), recipes)
        with tempfile.TemporaryDirectory() as workdir:
            results[form] = {r["recipe"]: r for r in harness.run_case(case, settings, workdir)}
    lines = [
        "# Benchmark cases on tf.data: digits-mlp, arrays vs datasets",
        "",
        f"`python benchmarks/tfdata_cases.py` on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, shared with other jobs: seconds are noisy), "
        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}.",
        "",
        "| recipe | data | status | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for recipe in RECIPES:
        for form in forms:
            r = results[form][recipe]
            cells = [str(r.get(c, "")) if not isinstance(r.get(c), float) else f"{r[c]:.4f}"
                     for c in COLUMNS]
            lines.append(f"| {recipe} | {form} | {r['status']} {r.get('reason') or ''} | "
                         + " | ".join(cells) + " |")
    same = all(results[f][name].get(k) == results["arrays"][name].get(k)
               for f in ("unbatched dataset",) for name in ("float", "ptq-int8")
               for k in ("tflite_accuracy", "size_bytes"))
    lines += ["", f"Float and ptq-int8 rows identical, arrays vs unbatched dataset: "
              f"{'yes' if same else 'NO'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as handle:
            json.dump({form: list(rows.values()) for form, rows in results.items()}, handle,
                      indent=1, default=str)


if __name__ == "__main__":
    main()
