"""Coverage beyond the zoo: the Keras applications the zoo does not hold.

    python benchmarks/applications.py [--models xception,inception_v3] [--epochs 1]
        [--n-train 64] [--n-test 32] [--out benchmarks/results/applications]

The zoo (`benchmarks/zoo.py`) holds one model of each family users ship;
this asks whether the other families of `keras.applications` go through
every technique too: MobileNet (v1), VGG16, ResNet50V2, Xception,
InceptionV3 and InceptionResNetV2 (its residual scaling is a Keras-internal
custom layer, `CustomScaleLayer`), built with `weights=None`, 10 classes,
at their smallest input (32 px; 71 px Xception; 75 px Inception), on the
digits task resized to that input. Each model gets the zoo's own recipes
(`tfopt.bench.zoo_suite`): float export, PTQ int8 (batch 1), magnitude
pruning 50% and 80% inside `fit`, QAT int8 and channel pruning 50%, each
exported and run in the LiteRT interpreter (int8 conversions in a child
process). A coverage check, not an accuracy one: the models train
`--epochs` on `--n-train` examples (near chance), so the columns that
matter are works / the refusal, the compute ops in int8, the sparsity, and
the file's logit error against its own Keras model (agreement of
near-chance models flips on near-ties). No tfmot rows (its zoo script
builds `tfopt.zoo` models only).

`--quick` checks what can fail on the architecture alone, at random weights
and without training: the magnitude-pruning wrappers go on and strip off,
the QAT model converts to an int8 file (its compute ops in int8 counted),
channel pruning finds groups and shrinks the model (masked == surgered is
the zoo's and the tests' business). Minutes per model instead of tens.

Results are written after each model to results.json / results.md in --out;
a re-run skips the models already there (`--fresh` starts over).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name -> (keras.applications constructor, input size)
MODELS = {
    "mobilenet_v1": ("MobileNet", 32),
    "vgg16": ("VGG16", 32),
    "resnet50_v2": ("ResNet50V2", 32),
    "xception": ("Xception", 71),
    "inception_v3": ("InceptionV3", 75),
    "inception_resnet_v2": ("InceptionResNetV2", 75),
}
RECIPES = ("float", "ptq-int8 b1", "prune-50", "prune-80", "qat-int8", "channels-50")
QUICK = ("prune wrap+strip", "qat-int8 (untrained)", "channels-50 (untrained)")


def build(name):
    import keras

    constructor, size = MODELS[name]
    keras.utils.set_random_seed(0)
    return getattr(keras.applications, constructor)(
        input_shape=(size, size, 3), weights=None, classes=10, classifier_activation=None)


def task(name, n_train, n_test):
    """The zoo's digits task, resized to the model's input."""
    import numpy as np
    import tensorflow as tf

    from tfopt import zoo
    from tfopt.bench import zoo_suite

    size = MODELS[name][1]
    (x, y), (x_test, y_test) = zoo.task("mobilenet_v2", n_train, n_test)
    if size != x.shape[1]:
        x = tf.image.resize(x, (size, size)).numpy()
        x_test = tf.image.resize(x_test, (size, size)).numpy()
    return zoo_suite.ZooData(x.astype(np.float32), y, x_test.astype(np.float32), y_test, name)


def run_model(name, epochs, n_train, n_test, workdir):
    import keras

    from tfopt import zoo
    from tfopt.bench import zoo_suite

    recipes = {r.name: r for r in zoo_suite.recipes(epochs, tfmot=False)}
    data = task(name, n_train, n_test)
    start = time.perf_counter()
    base = build(name)
    zoo.compile_model(base).fit(data[0], data[1], batch_size=32, epochs=epochs, verbose=0)
    def make(recipe):
        keras.utils.set_random_seed(0)
        artifact = recipes[recipe].make(base, data, workdir)
        return dict(bytes=artifact.tflite.size_bytes, **artifact.extra)

    return _rows(name, base, start, [(recipe, lambda r=recipe: make(r)) for recipe in RECIPES])


def _rows(name, base, start, checks):
    """Runs `(recipe, fn)` checks, each row `ok` with fn's columns or `failed`
    with the reason (the next check goes on); returns `(rows, model info)`."""
    rows = []
    for recipe, fn in checks:
        began = time.perf_counter()
        row = {"model": name, "recipe": recipe}
        try:
            row.update(status="ok", **fn())
        except Exception as error:  # recorded; the next check goes on
            if os.environ.get("TFOPT_BENCH_TRACEBACKS"):
                traceback.print_exc()
            text = f"{type(error).__name__}: {error}".strip().splitlines()
            row.update(status="failed", reason=(text[0] if text else repr(error))[:300])
        row["seconds"] = round(time.perf_counter() - began, 1)
        rows.append(row)
        print(name, recipe, row["status"], row.get("reason", ""), flush=True)
    return rows, {"params": int(base.count_params()), "layers": len(base.layers),
                  "input": MODELS[name][1], "seconds": round(time.perf_counter() - start, 1)}


def run_quick(name):
    """Wrap/convert/shrink at random weights (see the module docstring)."""
    from tfopt import export
    from tfopt import pruning
    from tfopt import quantization

    start = time.perf_counter()
    base = build(name)
    x = task(name, 8, 8)[0]

    def prune():
        wrapped = pruning.prune_low_magnitude(base, pruning_schedule=pruning.ConstantSparsity(0.5, 0))
        layers = sum(isinstance(layer, pruning.PruneLowMagnitude) for layer in wrapped.layers)
        stripped = pruning.strip_pruning(wrapped)
        assert pruning.count_prunable(stripped) == pruning.count_prunable(base)
        return {"wrapped_layers": layers, "prunable_weights": pruning.count_prunable(base)}

    def qat():
        exported = export.to_tflite(quantization.quantize_model(base), quantization="int8",
                                    batch_size=1)
        precision = export.op_precision(exported.content)
        return {"int8_ops": f"{precision['int8_compute_ops']}/{precision['compute_ops']}",
                "float_ops": ", ".join(f"{op} x{n}" for op, n in sorted(
                    {**precision["float_compute"], **precision["float_other"]}.items())) or "none",
                "bytes": exported.size_bytes}

    def channels():
        small = pruning.prune_channels(base, 0.5)
        np.testing.assert_array_equal(small.predict(x, verbose=0).shape,
                                      base.predict(x, verbose=0).shape)
        return {"params_vs_float": small.count_params() / base.count_params()}

    return _rows(name, base, start, list(zip(QUICK, (prune, qat, channels))))


def cell(row):
    if row["status"] != "ok":
        return f"**failed**: {row['reason']}"
    parts = []
    if "int8_ops" in row:
        parts.append(f"int8 {row['int8_ops']}" + (f", float: {row['float_ops']}"
                                                  if row.get("float_ops") not in (None, "none")
                                                  else ""))
    if "sparsity" in row:
        parts.append(f"sparsity {row['sparsity']:.3f}")
    if "wrapped_layers" in row:
        parts.append(f"{row['wrapped_layers']} layers wrapped, "
                     f"{row['prunable_weights'] / 1e6:.1f}M prunable weights")
    if "params_vs_float" in row:
        parts.append(f"params x{row['params_vs_float']:.2f}")
    if "logit_err_range" in row:
        parts.append(f"logit err {100 * row['logit_err_range']:.1f}% range")
    if "bytes" in row:
        parts.append(f"{row['bytes'] / 1e6:.2f} MB")
    return ", ".join(parts)


def markdown(results):
    from tfopt import report
    from tfopt.export.inspect import COMPUTE_OPS

    env = results["environment"]
    recipes = QUICK if results.get("quick") else RECIPES
    budget = ("`--quick`: random weights, no training" if results.get("quick") else
              f"{results['epochs']} epoch(s) on {results['n_train']} digits images resized to "
              f"the input, {results['n_test']} test images (a coverage check: near-chance models)")
    lines = [
        "# Keras applications beyond the zoo: every technique",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {report.machine_line(env)} Budget: {budget}.",
        "",
        f"Cells: works, or the refusal/failure; `int8 k/n` compute ops ({', '.join(COMPUTE_OPS)}) "
        "running int8, then the ops left float; "
        "sparsity of the prunable kernels; `logit err` = max |file - Keras| of the logits over "
        "the Keras logit range, on the test images; file size.",
        "",
        "| model | input | params | " + " | ".join(recipes) + " |",
        "|---|---|---|" + "---|" * len(recipes),
    ]
    for name, info in results["models"].items():
        rows = {r["recipe"]: r for r in results["rows"] if r["model"] == name}
        cells = [cell(rows[r]) if r in rows else "-" for r in recipes]
        lines.append(f"| {name} | {info['input']} | {info['params'] / 1e6:.1f}M | "
                     + " | ".join(cells) + " |")
    works = sum(r["status"] == "ok" for r in results["rows"])
    lines += ["", f"{works} of {len(results['rows'])} cells work. Seconds per model: "
              + ", ".join(f"{n} {i['seconds']}" for n, i in results["models"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=32)
    parser.add_argument("--quick", action="store_true",
                        help="random weights, no training: wrap, convert, shrink")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                      "applications"))
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"applications.py: unknown model(s) {unknown}; choose from "
                         f"{', '.join(MODELS)}")
    import keras

    from tfopt import report

    path = os.path.join(args.out, "results.json")
    results = None
    if os.path.isfile(path) and not args.fresh:
        with open(path) as handle:
            results = json.load(handle)
    settings = dict(epochs=args.epochs, n_train=args.n_train, n_test=args.n_test,
                    quick=args.quick)
    if results is None or any(results.get(k) != v for k, v in settings.items()):
        results = dict(settings, rows=[], models={})
    results["command"] = "python benchmarks/applications.py " + " ".join(sys.argv[1:])
    results["environment"] = report.environment()
    os.makedirs(args.out, exist_ok=True)
    for name in models:
        if name in results["models"]:
            print(f"{name}: already in {args.out}, skipped", flush=True)
            continue
        if args.quick:
            rows, info = run_quick(name)
        else:
            with tempfile.TemporaryDirectory() as workdir:
                rows, info = run_model(name, args.epochs, args.n_train, args.n_test, workdir)
        results["rows"] += rows
        results["models"][name] = info
        for filename, text in (("results.json", json.dumps(results, indent=2, default=str)),
                               ("results.md", markdown(results))):
            with open(os.path.join(args.out, filename + ".tmp"), "w") as handle:
                handle.write(text)
            os.replace(os.path.join(args.out, filename + ".tmp"),
                       os.path.join(args.out, filename))
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
