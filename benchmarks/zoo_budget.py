"""Learning curves of zoo models on their tasks: the evidence behind zoo BUDGETS.

    python benchmarks/zoo_budget.py --models vit_tiny,bert_tiny --epochs 20 --n-train 4096

Trains each model (float, Adam 1e-3, batch 32, BatchNormalization momentum
0.9) one epoch at a time and records the held-out accuracy (inference mode,
argmax of the first output; per pixel for the U-Net) and the cumulative
training seconds after each epoch. Writes results.json / results.md to
--out (default benchmarks/results/zoo_budget) after each model, so a killed
run keeps what it measured; re-running skips models already there
(`--fresh` starts over).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def curve(name, epochs, n_train, n_test, bn_momentum, batch_size=32):
    """Held-out accuracy and cumulative seconds after each epoch."""
    import keras
    import numpy as np

    from tfopt import zoo

    (x, y), (x_test, y_test) = zoo.task(name, n_train, n_test)
    labels = y_test[0] if isinstance(y_test, tuple) else y_test
    model = zoo.compile_model(zoo.build(name, bn_momentum=bn_momentum))
    keras.utils.set_random_seed(0)
    points, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        out = model.predict(x_test, batch_size=64, verbose=0)
        first = out[0] if isinstance(out, (list, tuple)) else out
        accuracy = float(np.mean(np.asarray(first).argmax(-1) == labels))
        points.append({"epoch": epoch, "accuracy": round(accuracy, 4),
                       "seconds": round(seconds, 1)})
        print(f"{name:20} epoch {epoch:3} acc {accuracy:.3f} {seconds:7.1f} s", flush=True)
    return {"n_train": len(x), "n_test": len(x_test), "bn_momentum": bn_momentum,
            "batch_size": batch_size, "points": points}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated tfopt.zoo names")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=1437,
                        help="training examples (the digits tasks have at most 1437)")
    parser.add_argument("--n-test", type=int, default=360)
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--fresh", action="store_true", help="ignore results already in --out")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zoo_budget"))
    args = parser.parse_args(argv)

    from tfopt import zoo
    from tfopt.bench import report

    models = [m for m in args.models.split(",") if m]
    for name in models:
        zoo._entry(name)
    path = os.path.join(args.out, "results.json")
    results = {"models": {}, "commands": []}
    if os.path.isfile(path) and not args.fresh:
        with open(path) as handle:
            results = json.load(handle)
    command = "python benchmarks/zoo_budget.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results["commands"].append(command)
    results["environment"] = report.environment()
    os.makedirs(args.out, exist_ok=True)
    for name in models:
        if name in results["models"]:
            print(f"{name}: already in {path}, skipped", flush=True)
            continue
        n_train = args.n_train
        if zoo.MODELS[name].kind in ("image", "segmentation", "detection"):
            n_train = min(n_train, 1437)
        results["models"][name] = curve(name, args.epochs, n_train, args.n_test,
                                        args.bn_momentum)
        with open(path, "w") as handle:
            json.dump(results, handle, indent=2)
        with open(os.path.join(args.out, "results.md"), "w") as handle:
            handle.write(markdown(results))


def markdown(results):
    env = results["environment"]
    lines = ["# Zoo training budgets: held-out accuracy after each epoch", "",
             "Commands: " + "; ".join(f"`{c}`" for c in results["commands"]) + f" on {env['cpu']} "
             f"({env['cores']} cores, shared with other jobs: seconds are indicative), "
             f"{env['date']}; TF {env['tensorflow']}, Keras {env['keras']}.", "",
             "Float training, Adam 1e-3, batch 32, inference-mode accuracy on the held-out "
             "set (10 classes: chance 0.10; U-Net: per-pixel mask accuracy). "
             "Cells: accuracy (cumulative training seconds).", ""]
    width = max(len(m["points"]) for m in results["models"].values())
    lines.append("| model | n_train | BN momentum | "
                 + " | ".join(f"ep {i + 1}" for i in range(width)) + " |")
    lines.append("|---|---|---|" + "---|" * width)
    for name, entry in results["models"].items():
        cells = [f"{p['accuracy']:.3f} ({p['seconds']:.0f} s)" for p in entry["points"]]
        cells += [""] * (width - len(cells))
        lines.append(f"| {name} | {entry['n_train']} | {entry['bn_momentum']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
