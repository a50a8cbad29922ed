"""Structured pruning benchmark: the targets of issue 6.

    python benchmarks/structured.py [--ratio 0.5] [--rounds 7] [--out benchmarks/results]

1. MobileNetV2 (alpha 1.0 at 224x224 and alpha 0.35 at 96x96, `weights=None`,
   10 classes, random weights): `prune_channels(model, ratio)` (L1) on every
   prunable group. "Prunable" is what `tfopt.pruning.prunable_layers` lists:
   the stem conv, every expansion conv (its channels run through the
   depthwise conv and BNs of the block only), every block output (blocks
   joined by Add are one coupled group, one shared set of kept channels),
   the unjoined projections and the final 1x1 `Conv_1` (1280). Only the
   classifier (`predictions`, a model output) is not prunable. Reported:
   parameter ratio, float TFLite bytes ratio (batch-1 export), and the p50
   latency ratio at 1 thread in LiteRT (XNNPACK), timed in interleaved
   rounds (dense, pruned, dense, ...) and reported as medians of the
   per-round p50s, so machine load hits both alike.
2. Digits CNN (`digits_cnn(16)`, Conv(12)+Dense): dense training, then 50% of
   the conv filters removed one-shot (L1) and fine-tuned, and also pruned
   gradually during fit (PolynomialDecay, `prune_channels_gradually`);
   test accuracy against dense (target: within 1.5 points).

Writes `structured.json` and `structured.md` to `--out`.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfopt  # noqa: E402
from tfopt.bench import report  # noqa: E402
from tfopt.bench.latency import LatencySession  # noqa: E402
from tfopt.models import compile_classifier  # noqa: E402
from tfopt.models import digits_cnn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def mobilenet_run(alpha, size, ratio, args, workdir):
    keras.utils.set_random_seed(args.seed)
    dense = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, weights=None, classes=10)
    groups = tfopt.pruning.prunable_layers(dense)
    small = tfopt.pruning.prune_channels(dense, ratio)
    files = {}
    for name, model in (("dense", dense), ("pruned", small)):
        files[name] = tfopt.export.to_tflite(
            model, os.path.join(workdir, f"mnv2-{alpha}-{size}-{name}.tflite"), batch_size=1)
    sessions = {name: LatencySession(f, num_threads=1) for name, f in files.items()}
    per_round = {name: [] for name in sessions}
    for index in range(args.rounds):
        for name, session in sessions.items():
            before = len(session.times)
            session.sample(args.warmup if index == 0 else 0, args.runs, args.min_seconds)
            per_round[name].append(float(np.median(session.times[before:]) * 1e3))
    p50 = {name: float(np.median(v)) for name, v in per_round.items()}
    channels = {g["layer"]: g["channels"] for g in groups if g["blocked"] is None}
    return {
        "model": f"MobileNetV2 alpha {alpha} {size}x{size}",
        "ratio": ratio,
        "prunable_groups": len(channels),
        "prunable_channels": int(sum(channels.values())),
        "not_prunable": [g["layer"] for g in groups if g["blocked"]],
        "params_dense": dense.count_params(),
        "params_pruned": small.count_params(),
        "params_ratio": small.count_params() / dense.count_params(),
        "tflite_bytes_dense": files["dense"].size_bytes,
        "tflite_bytes_pruned": files["pruned"].size_bytes,
        "bytes_ratio": files["pruned"].size_bytes / files["dense"].size_bytes,
        "p50_ms_dense": p50["dense"],
        "p50_ms_pruned": p50["pruned"],
        "p50_ratio": p50["pruned"] / p50["dense"],
        "p50_ms_per_round": per_round,
    }


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def digits_run(ratio, args):
    (x, y), (x_test, y_test) = tfopt.data.load_digits(args.digits_size)
    keras.utils.set_random_seed(args.seed)
    dense = compile_classifier(digits_cnn(args.digits_size))
    dense.fit(x, y, batch_size=32, epochs=args.dense_epochs, verbose=0)
    dense_acc = accuracy(dense, x_test, y_test)

    keras.utils.set_random_seed(args.seed)
    one_shot = tfopt.pruning.prune_channels(dense, ratio)
    before_ft = accuracy(one_shot, x_test, y_test)
    compile_classifier(one_shot).fit(x, y, batch_size=32, epochs=args.finetune_epochs, verbose=0)
    one_shot_acc = accuracy(one_shot, x_test, y_test)
    one_shot_tflite = tfopt.export.evaluate_tflite(
        tfopt.export.to_tflite(one_shot, batch_size=1), x_test, y_test)

    keras.utils.set_random_seed(args.seed)
    steps = int(np.ceil(len(x) / 32))
    # About 20 mask updates over the ramp (each rescoring is a Python step).
    schedule = tfopt.pruning.PolynomialDecay(0.0, ratio, 0, args.ramp_epochs * steps,
                                             frequency=max(1, steps // 4))
    wrapped = compile_classifier(tfopt.pruning.prune_channels_gradually(dense, schedule))
    wrapped.fit(x, y, batch_size=32, epochs=args.finetune_epochs, verbose=0,
                callbacks=[tfopt.pruning.UpdatePruningStep()])
    gradual = tfopt.pruning.strip_pruning(wrapped)
    conv = [l for l in one_shot.layers if isinstance(l, keras.layers.Conv2D)][0]
    return {
        "model": f"digits_cnn({args.digits_size}) Conv(12)+Dense",
        "ratio": ratio,
        "filters_kept": conv.filters,
        "dense_accuracy": dense_acc,
        "one_shot_before_finetune": before_ft,
        "one_shot_finetuned_accuracy": one_shot_acc,
        "one_shot_finetuned_tflite_accuracy": one_shot_tflite,
        "gradual_accuracy": accuracy(gradual, x_test, y_test),
        "params_ratio": one_shot.count_params() / dense.count_params(),
        "drop_points_one_shot": 100 * (dense_acc - one_shot_acc),
        "drop_points_gradual": 100 * (dense_acc - accuracy(gradual, x_test, y_test)),
    }


def markdown(results):
    lines = [
        "# Structured pruning benchmark", "",
        f"Command: `{results['command']}`  ", f"Date: {results['date']}  ",
        f"Machine: {results['machine']}", "",
        "Latency: batch-1 float files, 1 thread, sampled in interleaved rounds",
        "(dense/pruned alternating); the median of per-round p50s is reported.", "",
        "## MobileNetV2 (random weights, L1, one-shot, no training)", "",
        "| model | removed | prunable groups (channels) | params | params ratio | float bytes ratio | p50 ms dense -> pruned | p50 ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["mobilenet"]:
        lines.append(
            f"| {r['model']} | {r['ratio']:.0%} | {r['prunable_groups']} ({r['prunable_channels']}) "
            f"| {r['params_dense']:,} -> {r['params_pruned']:,} | {r['params_ratio']:.3f} "
            f"| {r['bytes_ratio']:.3f} | {r['p50_ms_dense']:.2f} -> {r['p50_ms_pruned']:.2f} "
            f"| {r['p50_ratio']:.3f} |")
    lines += ["", "Targets (alpha 1.0, 224): params <= 0.35x, float bytes <= 0.4x, p50 <= 0.6x.", ""]
    d = results["digits"]
    lines += [
        "## Digits CNN, 50% of filters removed", "",
        "| | test accuracy |", "|---|---|",
        f"| dense | {d['dense_accuracy']:.4f} |",
        f"| one-shot L1, before fine-tune | {d['one_shot_before_finetune']:.4f} |",
        f"| one-shot L1 + fine-tune (Keras) | {d['one_shot_finetuned_accuracy']:.4f} |",
        f"| one-shot L1 + fine-tune (TFLite float) | {d['one_shot_finetuned_tflite_accuracy']:.4f} |",
        f"| gradual (PolynomialDecay) + fine-tune | {d['gradual_accuracy']:.4f} |",
        "",
        f"Filters kept: {d['filters_kept']} of 12; params ratio {d['params_ratio']:.3f}. "
        f"Drop: {d['drop_points_one_shot']:.2f} points one-shot, "
        f"{d['drop_points_gradual']:.2f} gradual (target: within 1.5).", "",
    ]
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=40, help="timed invokes per round and model")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--digits-size", type=int, default=16)
    parser.add_argument("--dense-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--ramp-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-224", action="store_true", help="skip alpha 1.0 at 224x224")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    configs = [(0.35, 96)] + ([] if args.skip_224 else [(1.0, 224)])
    with tempfile.TemporaryDirectory() as workdir:
        mobilenet = [mobilenet_run(a, s, args.ratio, args, workdir) for a, s in configs]
    results = {
        "command": " ".join(["python benchmarks/structured.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": report.environment(),
        "mobilenet": mobilenet,
        "digits": digits_run(args.ratio, args),
    }
    with open(os.path.join(args.out, "structured.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    text = markdown(results)
    with open(os.path.join(args.out, "structured.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
