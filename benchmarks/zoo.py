"""The zoo benchmark: every technique on every tfopt.zoo model, tfmot beside it.

    python benchmarks/zoo.py                                   # the full zoo
    python benchmarks/zoo.py --models lstm_text,vit_tiny --epochs 1 --out /tmp/zoo

Same rows as `tfopt bench --suite zoo` (tfopt/bench/zoo_suite.py), plus a
summary table (a row per model, a cell per recipe: "ok: int8 k/n, agree,
acc, MB, p50 x float" or "failed: reason") and the wall time of each model.
Writes results.json and results.md to --out (default
benchmarks/results/zoo).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated tfopt.zoo names (default all)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="training epochs (0: random weights, for export-only checks)")
    parser.add_argument("--n-train", type=int, default=384)
    parser.add_argument("--n-test", type=int, default=128)
    parser.add_argument("--no-tfmot", action="store_true", help="skip the tfmot rows")
    parser.add_argument("--recipes", default="",
                        help="comma-separated recipe names to keep, e.g. 'float,ptq-int8 b1' "
                             "(default all)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="convert int8 cells in this process (faster; a converter crash "
                             "then ends the run)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zoo"))
    args = parser.parse_args(argv)

    from tfopt import zoo
    from tfopt.bench import harness
    from tfopt.bench import report
    from tfopt.bench import zoo_suite

    models = [m for m in args.models.split(",") if m] or zoo.names()
    zoo_suite.ISOLATE_INT8 = not args.no_isolate
    try:
        cases = zoo_suite.cases(models, args.epochs, args.n_train, args.n_test,
                                tfmot=not args.no_tfmot)
    except ValueError as error:
        raise SystemExit(f"zoo.py: {error}") from None
    keep = [r for r in args.recipes.split(",") if r]
    if keep:
        known = [recipe.name for recipe in cases[0].recipes] if cases else []
        unknown = [r for r in keep if r not in known]
        if unknown:
            raise SystemExit(f"zoo.py: unknown recipe(s) {unknown}; choose from {known}")
        for case in cases:
            case.recipes = [recipe for recipe in case.recipes if recipe.name in keep]
    settings = harness.Settings(**zoo_suite.SETTINGS)
    rows, seconds = [], {}
    for case in cases:
        start = time.perf_counter()
        rows += harness.run_case(case, settings, os.path.join(args.out, "tflite"),
                                 progress=lambda r: print(
                                     f"{r['model']:20} {r['recipe']:16} {r['status']:7} "
                                     f"{r.get('reason', '')[:120]}", flush=True))
        seconds[case.name] = round(time.perf_counter() - start, 1)
        print(f"{case.name}: {seconds[case.name]} s", flush=True)
    command = "python benchmarks/zoo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {
        "suite": "zoo",
        "command": command,
        "environment": report.environment(),
        "settings": dataclasses.asdict(settings),
        "epochs": args.epochs, "n_train": args.n_train, "n_test": args.n_test,
        "descriptions": {case.name: case.description for case in cases},
        "model_seconds": seconds,
        "rows": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write(markdown(results, models))
    print(open(os.path.join(args.out, "results.md")).read())


def markdown(results, models):
    from tfopt.bench import report
    from tfopt.bench import zoo_suite

    env = results["environment"]
    lines = [
        "# Model zoo: every technique on every model",
        "",
        f"`{results['command']}` on {env['cpu']} ({env['cores']} cores), {env['date']}; "
        f"TF {env['tensorflow']}, Keras {env['keras']}, ai-edge-litert {env['ai_edge_litert']}. "
        f"{results['epochs']} epoch(s) on {results['n_train']} examples for the base model and "
        f"each recipe; agreement and accuracy on {results['n_test']} test examples.",
        "",
        "Cells: `int8 k/n` = compute ops (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, "
        "BATCH_MATMUL, TRANSPOSE_CONV) running int8 / all, then the ops left float; "
        "`agree` = top-1 agreement of the file with its own Keras model (per pixel for the "
        "U-Net); `acc` = the file's accuracy on the task (briefly trained: low by design); "
        "`p50 xF` = p50 latency / the float file's (LiteRT, 1 thread; the `b8` row times a "
        "batch of 8; the machine was shared with other jobs, so ratios within 1.3x are noise). "
        "tfmot rows train the same architecture on tf_keras from their own initialisation.",
        "",
        *(["**Random weights (`--epochs 0`)**: this run checks export and int8 op coverage; "
            "untrained logits are near ties, so `agree` and `acc` say little here.", ""]
          if results["epochs"] == 0 else []),
        zoo_suite.summary_markdown(results["rows"], models),
        "",
        "Wall time per model (all its rows): "
        + ", ".join(f"{m} {s} s" for m, s in results["model_seconds"].items()) + ".",
        "",
        "## Per-model tables",
        "",
    ]
    detail = report.markdown(results).split("\n")
    start = next(i for i, line in enumerate(detail) if line.startswith("## "))
    return "\n".join(lines + detail[start:]) + "\n"


if __name__ == "__main__":
    main()
