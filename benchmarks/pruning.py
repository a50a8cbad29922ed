"""Pruning benchmark: tfopt vs tfmot on the digits CNN, side by side.

    python benchmarks/pruning.py [--sizes 8,28] [--out results/pruning]

For each image size: train a dense Conv(12)+Dense CNN on the embedded digits,
then from the same dense weights prune to 50/80/90% with PolynomialDecay
(0 -> target over `--ramp-epochs`, then `--finetune-epochs` at the target),
strip, and export float TFLite. Reported per run: test accuracy, measured
sparsity, TFLite bytes and gzip bytes. Train-step time of the wrapped model
over the plain model is measured with a mask update in *every* timed step
(same fixed batch, interleaved rounds, median). The same recipe runs with
tfmot on tf_keras in a subprocess (`benchmarks/tfmot_baseline.py`, with
TF_USE_LEGACY_KERAS=1) at frequency 100 (its default) and 1.

Writes `pruning.json` and `pruning.md` to `--out` and prints the table.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfopt  # noqa: E402
from tfopt.bench import report  # noqa: E402
from tfopt.bench.training import step_time_ratio  # noqa: E402
from tfopt.models import compile_classifier as compile_model  # noqa: E402
from tfopt.models import digits_cnn as build_cnn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def prune_run(dense, data, target, args, steps_per_epoch):
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    schedule = tfopt.pruning.PolynomialDecay(
        0.0, target, 0, args.ramp_epochs * steps_per_epoch, frequency=1)
    pruned = compile_model(tfopt.pruning.prune_low_magnitude(dense, pruning_schedule=schedule))
    pruned.fit(x, y, batch_size=args.batch_size, epochs=args.ramp_epochs + args.finetune_epochs,
               verbose=0, callbacks=[tfopt.pruning.UpdatePruningStep()])
    final = tfopt.pruning.strip_pruning(pruned)
    exported = tfopt.export.to_tflite(final)
    return {
        "target_sparsity": target,
        "accuracy": accuracy(final, x_test, y_test),
        "sparsity": tfopt.pruning.sparsity_report(final)["total"]["sparsity"],
        "tflite_bytes": exported.size_bytes,
        "tflite_gzip_bytes": exported.gzip_bytes,
    }


def step_timing(dense, x, y, args):
    """Median train-step ms of plain vs wrapped (mask update every step)."""
    plain = compile_model(keras.models.clone_model(dense))
    every_step = tfopt.pruning.PolynomialDecay(0.0, 0.8, 0, 100_000, frequency=1)
    wrapped = compile_model(tfopt.pruning.prune_low_magnitude(dense, pruning_schedule=every_step))
    callback = tfopt.pruning.UpdatePruningStep()
    callback.set_model(wrapped)
    timing = step_time_ratio(plain, wrapped, x[: args.batch_size], y[: args.batch_size],
                             rounds=args.timing_rounds, steps=args.timing_steps,
                             warmup=args.timing_warmup, before_steps=callback.on_train_begin)
    return {"plain_ms": timing["plain_ms"], "every_step_ms": timing["other_ms"],
            "every_step_ratio": timing["ratio"]}


def run_tfmot(dense, data, frequency, args):
    (x, y), (x_test, y_test) = data
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "data.npz")
        weights = {f"w{i}": w for i, w in enumerate(dense.get_weights())}
        np.savez(npz, x_train=x, y_train=y, x_test=x_test, y_test=y_test, **weights)
        out = os.path.join(tmp, "tfmot.json")
        command = [
            sys.executable, os.path.join(HERE, "tfmot_baseline.py"), "--data", npz, "--out", out,
            "--sparsities", ",".join(str(s) for s in args.sparsities),
            "--frequency", str(frequency), "--batch-size", str(args.batch_size),
            "--ramp-epochs", str(args.ramp_epochs), "--finetune-epochs", str(args.finetune_epochs),
            "--seed", str(args.seed), "--timing-rounds", str(args.timing_rounds),
            "--timing-steps", str(args.timing_steps),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            return {"error": result.stderr[-2000:]}
        with open(out) as handle:
            return json.load(handle)


def bench_size(size, args):
    data = tfopt.data.load_digits(size)
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    dense = compile_model(build_cnn(size))
    dense.fit(x, y, batch_size=args.batch_size, epochs=args.dense_epochs, verbose=0)
    dense_export = tfopt.export.to_tflite(dense)
    steps_per_epoch = int(np.ceil(len(x) / args.batch_size))
    result = {
        "image_size": size,
        "dense": {"accuracy": accuracy(dense, x_test, y_test),
                  "tflite_bytes": dense_export.size_bytes,
                  "tflite_gzip_bytes": dense_export.gzip_bytes},
        "tfopt": {"frequency": 1,
                  "runs": [prune_run(dense, data, s, args, steps_per_epoch) for s in args.sparsities],
                  "timing": step_timing(dense, x, y, args)},
    }
    if not args.skip_tfmot:
        result["tfmot"] = {f"frequency_{f}": run_tfmot(dense, data, f, args) for f in (100, 1)}
    return result


def markdown(results):
    lines = []
    for r in results:
        dense = r["dense"]
        lines += [
            f"### digits {r['image_size']}x{r['image_size']} — dense accuracy "
            f"{dense['accuracy']:.4f}, TFLite {dense['tflite_bytes']} B, gzip {dense['tflite_gzip_bytes']} B",
            "",
            "| tool | frequency | target | accuracy | sparsity | TFLite B | gzip B | gzip / dense | step time wrapped / plain (update every step) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [("tfopt", 1, r["tfopt"])]
        for key, value in r.get("tfmot", {}).items():
            rows.append(("tfmot", int(key.split("_")[1]), value))
        for tool, frequency, block in rows:
            if "error" in block:
                lines.append(f"| {tool} | {frequency} | failed: {block['error'][-200:]!r} | | | | | | |")
                continue
            timing = block["timing"]
            ratio = (f"{timing['every_step_ratio']:.2f}x ({timing['every_step_ms']:.2f} / "
                     f"{timing['plain_ms']:.2f} ms)")
            for run in block["runs"]:
                lines.append(
                    f"| {tool} | {frequency} | {run['target_sparsity']:.2f} | {run['accuracy']:.4f} | "
                    f"{run['sparsity']:.4f} | {run['tflite_bytes']} | {run['tflite_gzip_bytes']} | "
                    f"{run['tflite_gzip_bytes'] / dense['tflite_gzip_bytes']:.3f} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="8,28")
    parser.add_argument("--sparsities", default="0.5,0.8,0.9")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--ramp-epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--timing-rounds", type=int, default=7)
    parser.add_argument("--timing-steps", type=int, default=30)
    parser.add_argument("--timing-warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-tfmot", action="store_true")
    parser.add_argument("--out", default="results/pruning")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.sparsities = [float(s) for s in args.sparsities.split(",")]
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = [bench_size(size, args) for size in args.sizes]
    output = {
        "command": "python benchmarks/pruning.py " + " ".join(sys.argv[1:]),
        "machine": report.environment(),
        "results": results,
    }
    with open(os.path.join(args.out, "pruning.json"), "w") as handle:
        json.dump(output, handle, indent=2)
    table = markdown(results)
    with open(os.path.join(args.out, "pruning.md"), "w") as handle:
        handle.write(table)
    print(table)


if __name__ == "__main__":
    main()
