"""Does distillation help the digits student? Seeds, data fractions, caching.

For each image size: one teacher (`tfopt.models.digits_teacher`, softmax
head), then for every seed and training-data fraction the student
(`digits_cnn`, <= 1/50 of the teacher's parameters) trained alone and
distilled, with the same initial weights, batch order and number of steps.
Also: teacher-output caching speed-up, the student distilled + pruned 80% +
QAT in one fit, exported to int8, and a T x alpha grid chosen on a
validation split.

    python benchmarks/distillation.py            # ~20 min on 2 cores
    python benchmarks/distillation.py --sizes 16 --seeds 0 1 2 --fractions 1.0

Writes benchmarks/results/distillation.{json,md}.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import keras
import numpy as np

from tfopt import distillation
from tfopt import export
from tfopt.bench import suites
from tfopt.bench.report import environment
from tfopt.data import load_digits
from tfopt.models import compile_classifier
from tfopt.models import digits_cnn
from tfopt.models import digits_teacher

HERE = os.path.dirname(os.path.abspath(__file__))
# The tfmot baseline scripts live in this folder (tfopt never imports tfmot).
os.environ.setdefault("TFOPT_BASELINES", os.path.dirname(os.path.abspath(__file__)))


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y))


def _subset(x, y, fraction, seed):
    if fraction >= 1.0:
        return x, y
    # Stratified: the same number of examples of every class.
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:max(1, int(round(fraction * np.sum(y == c))))]
                           for c in np.unique(y)])
    keep = rng.permutation(keep)
    return x[keep], y[keep]


def _caching(teacher, data, build, epochs):
    """Seconds for `epochs` of distillation with the live and the cached teacher."""
    x, y = data[0], data[1]
    timings = {}
    for mode in ("live", "cached"):
        keras.utils.set_random_seed(0)
        distiller = distillation.Distiller(build(), teacher, temperature=suites.KD_TEMPERATURE,
                                           alpha=suites.KD_ALPHA)
        distiller.compile(optimizer="adam")
        start = time.perf_counter()
        inputs = distiller.cache_teacher(x) if mode == "cached" else x
        cache_seconds = time.perf_counter() - start
        distiller.fit(inputs, y, batch_size=suites.BATCH_SIZE, epochs=1, verbose=0)  # trace
        start = time.perf_counter()
        distiller.fit(inputs, y, batch_size=suites.BATCH_SIZE, epochs=epochs, verbose=0)
        timings[mode] = {"fit_seconds": time.perf_counter() - start, "cache_seconds": cache_seconds}
    timings["epochs"] = epochs
    timings["speedup"] = timings["live"]["fit_seconds"] / timings["cached"]["fit_seconds"]
    return timings


def run_size(size, args):
    (x, y), (x_test, y_test) = load_digits(size)
    keras.utils.set_random_seed(0)
    teacher = compile_classifier(digits_teacher(size))
    teacher.fit(x, y, batch_size=suites.BATCH_SIZE, epochs=args.teacher_epochs, verbose=0)
    build = lambda: digits_cnn(size)  # noqa: E731
    result = {
        "image_size": size, "teacher_params": teacher.count_params(),
        "student_params": build().count_params(), "teacher_accuracy": _accuracy(teacher, x_test, y_test),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        teacher_file = export.to_tflite(teacher, os.path.join(tmp, "teacher.tflite"), batch_size=1)
        result["teacher_float_bytes"] = teacher_file.size_bytes
        kd_student = None
        for fraction in args.fractions:
            for seed in args.seeds:
                data = _subset(x, y, fraction, seed)
                # Same number of optimizer steps whatever the fraction.
                epochs = int(round(args.epochs / fraction))
                row = {"fraction": fraction, "seed": seed, "train_examples": len(data[0]), "epochs": epochs}
                for label, kd_teacher in (("alone", None), ("kd", teacher)):
                    student = suites.train_student(build, data, epochs, seed=seed, teacher=kd_teacher,
                                                   temperature=args.temperature, alpha=args.alpha)
                    row[label] = _accuracy(student, x_test, y_test)
                    if label == "kd" and fraction == 1.0 and seed == args.seeds[0]:
                        kd_student = student
                result["runs"].append(row)
                print(f"size {size} fraction {fraction} seed {seed}: alone {row['alone']:.4f} "
                      f"kd {row['kd']:.4f}", flush=True)
        if kd_student is None:
            kd_student = suites.train_student(build, (x, y), args.epochs, seed=args.seeds[0], teacher=teacher,
                                              temperature=args.temperature, alpha=args.alpha)
        final = suites.distil_prune_quantize(kd_student, teacher, (x, y), temperature=args.temperature,
                                             alpha=args.alpha)
        exported = export.to_tflite(final, os.path.join(tmp, "kd_prune_qat.tflite"), quantization="int8",
                                    batch_size=1)
        report = export.verify(exported, final, x_test, y_test)
        result["compressed"] = {
            "keras_accuracy": report["keras_accuracy"], "tflite_accuracy": report["tflite_accuracy"],
            "top1_agreement": report["top1_agreement"], "bytes": exported.size_bytes,
            "bytes_vs_teacher_float": exported.size_bytes / teacher_file.size_bytes,
            "float_student_accuracy": _accuracy(kd_student, x_test, y_test),
        }
    result["caching"] = _caching(teacher, (x, y), build, args.cache_epochs)
    return result


def sweep(size, args):
    """T x alpha grid at full data, chosen on a validation split, reported on test.

    The 360 test digits never take part in the choice: 20% of the training
    set is held out (stratified) to pick the setting with the best mean
    validation accuracy over the seeds; the students are trained on the
    other 80%.
    """
    (x, y), (x_test, y_test) = load_digits(size)
    rng = np.random.default_rng(123)
    val = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:int(round(0.2 * np.sum(y == c)))]
                          for c in np.unique(y)])
    train = np.setdiff1d(np.arange(len(y)), val)
    data = (x[train], y[train])
    keras.utils.set_random_seed(0)
    teacher = compile_classifier(digits_teacher(size))
    teacher.fit(*data, batch_size=suites.BATCH_SIZE, epochs=args.teacher_epochs, verbose=0)
    build = lambda: digits_cnn(size)  # noqa: E731
    settings = [None] + [(t, a) for t in args.sweep_temperatures for a in args.sweep_alphas]
    rows = []
    for setting in settings:
        val_acc, test_acc = [], []
        for seed in args.seeds:
            kwargs = {} if setting is None else {"teacher": teacher, "temperature": setting[0], "alpha": setting[1]}
            student = suites.train_student(build, data, args.epochs, seed=seed, **kwargs)
            val_acc.append(_accuracy(student, x[val], y[val]))
            test_acc.append(_accuracy(student, x_test, y_test))
        rows.append({"temperature": None if setting is None else setting[0],
                     "alpha": None if setting is None else setting[1],
                     "val_mean": float(np.mean(val_acc)), "test_mean": float(np.mean(test_acc)),
                     "test_std": float(np.std(test_acc)), "test": test_acc})
        print(f"sweep {size} {setting}: val {np.mean(val_acc):.4f} test {np.mean(test_acc):.4f}", flush=True)
    best = max(rows[1:], key=lambda r: r["val_mean"])
    return {"image_size": size, "train_examples": len(train), "val_examples": len(val), "rows": rows,
            "chosen": best, "alone": rows[0]}


def summarize(result):
    summary = []
    for fraction in sorted({r["fraction"] for r in result["runs"]}, reverse=True):
        runs = [r for r in result["runs"] if r["fraction"] == fraction]
        gains = np.array([r["kd"] - r["alone"] for r in runs])
        summary.append({
            "fraction": fraction, "train_examples": runs[0]["train_examples"], "seeds": len(runs),
            "alone_mean": float(np.mean([r["alone"] for r in runs])),
            "alone_std": float(np.std([r["alone"] for r in runs])),
            "kd_mean": float(np.mean([r["kd"] for r in runs])),
            "kd_std": float(np.std([r["kd"] for r in runs])),
            "gain_mean": float(gains.mean()), "gain_min": float(gains.min()), "gain_max": float(gains.max()),
            "kd_wins": int(np.sum(gains > 0)), "ties": int(np.sum(gains == 0)),
        })
    return summary


def markdown(results):
    env = results["environment"]
    lines = [
        "# Distillation on digits: student alone vs distilled",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; machine: {env.get('cpu')}, {env.get('cores')} cores; "
        f"TF {env.get('tensorflow')}, Keras {env.get('keras')}.  ",
        f"T = {results['temperature']}, alpha = {results['alpha']} (task-loss weight); Adam 1e-3, batch "
        f"{suites.BATCH_SIZE}; {results['epochs']} epochs of the full set (fractions train more epochs, "
        "same steps); same initial weights and batch order with and without the teacher; "
        "accuracy on the 360 held-out digits.",
        "",
    ]
    for result in results["sizes"]:
        size = result["image_size"]
        lines += [
            f"## {size}x{size}: teacher {result['teacher_params']:,} params (accuracy "
            f"{result['teacher_accuracy']:.4f}, float file {result['teacher_float_bytes']:,} B), student "
            f"{result['student_params']:,} params ({result['student_params'] / result['teacher_params']:.3f}x)",
            "",
            "| train examples | seeds | alone mean ± std | KD mean ± std | gain mean [min, max] | KD wins / ties |",
            "|---|---|---|---|---|---|",
        ]
        for s in result["summary"]:
            lines.append(
                f"| {s['train_examples']} ({s['fraction']:.0%}) | {s['seeds']} | {s['alone_mean']:.4f} ± "
                f"{s['alone_std']:.4f} | {s['kd_mean']:.4f} ± {s['kd_std']:.4f} | {s['gain_mean'] * 100:+.2f} pt "
                f"[{s['gain_min'] * 100:+.2f}, {s['gain_max'] * 100:+.2f}] | {s['kd_wins']} / {s['ties']} |")
        c = result["compressed"]
        k = result["caching"]
        lines += [
            "",
            f"Distilled + pruned 80% + QAT in one fit, int8 file: Keras {c['keras_accuracy']:.4f}, TFLite "
            f"{c['tflite_accuracy']:.4f} (agreement {c['top1_agreement']:.4f}; float distilled student "
            f"{c['float_student_accuracy']:.4f}); {c['bytes']:,} B = {c['bytes_vs_teacher_float']:.4f}x the "
            "teacher's float file.",
            "",
            f"Teacher caching, {k['epochs']} epochs: live teacher {k['live']['fit_seconds']:.1f} s, cached "
            f"{k['cached']['fit_seconds']:.1f} s (+{k['cached']['cache_seconds']:.1f} s once to cache): "
            f"{k['speedup']:.2f}x faster per epoch.",
            "",
        ]
    for result in results.get("sweeps", []):
        alone, chosen = result["alone"], result["chosen"]
        lines += [
            f"## Choosing T and alpha ({result['image_size']}x{result['image_size']}, full data)",
            "",
            f"Students trained on {result['train_examples']} examples; the setting is chosen on "
            f"{result['val_examples']} held-out training examples (mean over seeds), test accuracy reported.",
            "",
            "| T | alpha | validation mean | test mean ± std |",
            "|---|---|---|---|",
        ]
        for row in result["rows"]:
            label = ("alone", "-") if row["temperature"] is None else (row["temperature"], row["alpha"])
            mark = " (chosen)" if row is chosen else ""
            lines.append(f"| {label[0]} | {label[1]}{mark} | {row['val_mean']:.4f} | "
                         f"{row['test_mean']:.4f} ± {row['test_std']:.4f} |")
        lines += ["", f"Chosen setting vs alone on test: {(chosen['test_mean'] - alone['test_mean']) * 100:+.2f} pt.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 28])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--cache-epochs", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=suites.KD_TEMPERATURE)
    parser.add_argument("--alpha", type=float, default=suites.KD_ALPHA)
    parser.add_argument("--sweep-sizes", type=int, nargs="*", default=[16])
    parser.add_argument("--sweep-temperatures", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--sweep-alphas", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "distillation"))
    args = parser.parse_args(argv)
    results = {
        "command": "python benchmarks/distillation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "environment": environment(), "temperature": args.temperature, "alpha": args.alpha,
        "epochs": args.epochs, "sizes": [], "sweeps": [],
    }
    start = time.perf_counter()
    for size in args.sizes:
        result = run_size(size, args)
        result["summary"] = summarize(result)
        results["sizes"].append(result)
    for size in args.sweep_sizes:
        results["sweeps"].append(sweep(size, args))
    results["wall_seconds"] = time.perf_counter() - start
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as handle:
        json.dump(results, handle, indent=2)
    with open(args.out + ".md", "w") as handle:
        handle.write(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
