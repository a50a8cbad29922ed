"""The zoo benchmark: every technique on every tfopt.zoo model, tfmot beside it.

    python benchmarks/zoo.py                                   # the full zoo, BUDGETS
    python benchmarks/zoo.py --models lstm_text,vit_tiny --out /tmp/zoo
    python benchmarks/zoo.py --models unet --epochs 2 --n-train 384   # uniform budget

Same rows as `tfopt bench --suite zoo` (tfopt/bench/zoo_suite.py), plus a
summary table (a row per model, a cell per recipe: "ok: int8 k/n, agree,
logit err, acc, MB, p50 x float" or "failed: reason"), each model's
training budget and its wall time. Each model is trained with its entry in
`zoo_suite.BUDGETS` unless `--epochs` sets a uniform budget.

Resumable: results.json and results.md in --out (default
benchmarks/results/zoo) are rewritten after each model, and a re-run of
the same command skips the models already there, so the zoo can be run in
pieces (several commands, one --out) and a killed run loses only the model
it was on. `--fresh` starts over. Pieces run into separate directories
(e.g. two halves in parallel) are merged with `--merge DIR[,DIR...]`: their
models not yet in --out are added, nothing is run; with `--replace` they
also replace the rows --out has for the same models (a re-run after a fix).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tfmot baseline scripts live in this folder (tfopt never imports tfmot).
os.environ.setdefault("TFOPT_BASELINES", os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load(out):
    """The results already in `out` (None if none), in the current layout.

    Files written before resumable runs (one `command` and one uniform
    `epochs`/`n_train`/`n_test`) get a `runs` list and per-model `budgets`.
    """
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        results = json.load(handle)
    models = list(dict.fromkeys(row["model"] for row in results.get("rows", [])))
    if "runs" not in results:
        results["runs"] = [{"command": results.pop("command", "?"), "models": models,
                            "date": results.get("environment", {}).get("date")}]
    if "budgets" not in results:
        uniform = dict(epochs=results.get("epochs", 1), finetune_epochs=results.get("epochs", 1),
                       n_train=results.get("n_train"), n_test=results.get("n_test"),
                       bn_momentum=None)
        results["budgets"] = {model: dict(uniform) for model in models}
    for key in ("epochs", "n_train", "n_test", "command"):
        results.pop(key, None)
    return results


def save(results, out, models):
    # Written to a temporary file and renamed over: a run killed mid-write
    # leaves the previous results.json, which the next run resumes from.
    os.makedirs(out, exist_ok=True)
    for name, text in (("results.json", json.dumps(results, indent=2, default=str)),
                       ("results.md", markdown(results, models))):
        path = os.path.join(out, name)
        with open(path + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(path + ".tmp", path)


def merge(results, other, source, replace=False):
    """Adds `other`'s models that `results` lacks; returns their names.

    With `replace`, `other`'s models replace those `results` already has
    (a re-run of some models after a fix): their rows, budgets and times,
    and their names in the older runs' lists.
    """
    if other.get("settings") != results.get("settings"):
        raise SystemExit(f"zoo.py: {source} was measured with settings {other.get('settings')}, "
                         f"--out with {results.get('settings')}; not merged")
    if replace:
        redone = {row["model"] for row in other["rows"]}
        results["rows"] = [row for row in results["rows"] if row["model"] not in redone]
        for key in ("budgets", "descriptions", "model_seconds"):
            results[key] = {m: v for m, v in results.get(key, {}).items() if m not in redone}
        runs = [{**run, "models": [m for m in run["models"] if m not in redone]}
                for run in results["runs"]]
        results["runs"] = [run for run in runs if run["models"]]
    have = {row["model"] for row in results["rows"]}
    new = [m for m in dict.fromkeys(row["model"] for row in other["rows"]) if m not in have]
    results["rows"] += [row for row in other["rows"] if row["model"] in new]
    for key in ("budgets", "descriptions", "model_seconds"):
        results[key].update({m: other[key][m] for m in new if m in other.get(key, {})})
    for run in other["runs"]:
        models = [m for m in run["models"] if m in new]
        if models:
            results["runs"].append({**run, "models": models})
    if new:
        results["environment"] = results.get("environment") or other["environment"]
    return new


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated tfopt.zoo names (default all)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="a uniform budget: epochs of the base model and every recipe, with "
                             "the architecture's BatchNormalization momentum (default: each "
                             "model's zoo_suite.BUDGETS entry; 0: random weights, for "
                             "export-only checks)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training examples (default: the budget's)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="held-out examples (default: the budget's)")
    parser.add_argument("--no-tfmot", action="store_true", help="skip the tfmot rows")
    parser.add_argument("--recipes", default="",
                        help="comma-separated recipe names to keep, e.g. 'float,ptq-int8 b1' "
                             "(default all)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="convert int8 cells in this process (faster; a converter crash "
                             "then ends the run)")
    parser.add_argument("--fresh", action="store_true",
                        help="start over: ignore (and replace) the results already in --out")
    parser.add_argument("--merge", default="",
                        help="comma-separated result directories of other zoo.py runs: add "
                             "their models missing from --out, run nothing")
    parser.add_argument("--replace", action="store_true",
                        help="with --merge: the merged runs' models replace the rows --out "
                             "already has for them (a re-run after a fix)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zoo"))
    args = parser.parse_args(argv)
    if args.replace and not args.merge:
        parser.error("--replace goes with --merge DIR (it replaces rows by a merged run's)")
    if args.merge:
        results = None if args.fresh else load(args.out)
        for source in [d for d in args.merge.split(",") if d]:
            other = load(source)
            if other is None:
                raise SystemExit(f"zoo.py: no results.json in {source}")
            if results is None:
                results = {**other, "runs": [], "budgets": {}, "descriptions": {},
                           "model_seconds": {}, "rows": []}
            merged = merge(results, other, source, replace=args.replace)
            print(f"{source}: merged {merged or 'nothing new'}")
        save(results, args.out, None)
        return

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
    command = "python benchmarks/zoo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = None if args.fresh else load(args.out)
    if results is not None and results.get("settings") != dataclasses.asdict(settings):
        raise SystemExit(f"zoo.py: {args.out} was measured with settings {results['settings']}, "
                         f"this run uses {dataclasses.asdict(settings)}; pass --fresh or "
                         f"another --out")
    if results is None:
        results = {"suite": "zoo", "runs": [], "settings": dataclasses.asdict(settings),
                   "budgets": {}, "descriptions": {}, "model_seconds": {}, "rows": []}
    done = {row["model"] for row in results["rows"]}
    run = {"command": command, "models": [], "date": None}
    results["runs"].append(run)
    for case in cases:
        if case.name in done:
            print(f"{case.name}: already in {args.out}, skipped (--fresh to re-run)", flush=True)
            continue
        start = time.perf_counter()
        rows = harness.run_case(case, settings, os.path.join(args.out, "tflite"),
                                progress=lambda r: print(
                                    f"{r['model']:20} {r['recipe']:16} {r['status']:7} "
                                    f"{r.get('reason', '')[:120]}", flush=True))
        plan = zoo_suite.budget(case.name, args.epochs, args.n_train, args.n_test)
        results["rows"] += rows
        results["budgets"][case.name] = dataclasses.asdict(plan)
        results["descriptions"][case.name] = case.description
        results["model_seconds"][case.name] = round(time.perf_counter() - start, 1)
        results["environment"] = report.environment()
        run["models"].append(case.name)
        run["date"] = results["environment"]["date"]
        save(results, args.out, models)
        print(f"{case.name}: {results['model_seconds'][case.name]} s, saved to {args.out}",
              flush=True)
    if not run["models"]:
        results["runs"].pop()
        print(f"zoo.py: nothing to do, every model is already in {args.out} (--fresh to re-run)")
        return
    print(open(os.path.join(args.out, "results.md")).read())


def markdown(results, models=None):
    """results.md: the summary table, the budgets, then the per-model tables."""
    from tfopt import zoo
    from tfopt.bench import report
    from tfopt.bench import zoo_suite
    from tfopt.export.inspect import COMPUTE_OPS

    present = list(dict.fromkeys(row["model"] for row in results["rows"]))
    order = [m for m in zoo.names() if m in present] + [m for m in present
                                                        if m not in zoo.names()]
    env = results["environment"]
    runs = [f"- `{run['command']}` ({', '.join(run['models'])}; {run.get('date') or '?'})"
            for run in results["runs"]]
    random = [m for m in order if results["budgets"].get(m, {}).get("epochs") == 0]
    lines = [
        "# Model zoo: every technique on every model",
        "",
        f"On {env['cpu']} ({env['cores']} cores), TF {env['tensorflow']}, Keras {env['keras']}, "
        f"ai-edge-litert {env['ai_edge_litert']}. Runs merged here (benchmarks/zoo.py resumes "
        "into one --out):",
        "",
        *runs,
        "",
        "Training budget per model (base epochs: the float model; recipe epochs: each "
        "pruning, QAT, channel-pruning and tfmot row; agreement, logit error and accuracy on "
        "the test examples):",
        "",
        zoo_suite.budget_markdown({m: results["budgets"][m] for m in order
                                   if m in results["budgets"]}),
        "",
        f"Cells: `int8 k/n` = compute ops ({', '.join(COMPUTE_OPS)}) running int8 / all, "
        "then the ops left float; "
        "`agree` = top-1 agreement of the file with its own Keras model (per pixel for the "
        "U-Net); `logit err` = max |file - Keras| of the first output over the range of the "
        "Keras logits, and the relative RMS error (these do not flip on near-ties; absent from "
        "rows measured before the column existed); `acc` = the file's accuracy on the task; "
        "`p50 xF` = p50 latency / the float file's (LiteRT, 1 thread; the `b8` row times a "
        "batch of 8; the machine was shared with other jobs, so ratios within 1.3x are noise). "
        "tfmot rows train the same architecture on tf_keras from their own initialisation.",
        "",
        *([f"**Random weights (`--epochs 0`)** for {', '.join(random)}: these rows check "
           "export and int8 op coverage; untrained logits are near ties, so `agree` and `acc` "
           "say little there.", ""] if random else []),
        zoo_suite.summary_markdown(results["rows"], order),
        "",
        "Wall time per model (all its rows): "
        + ", ".join(f"{m} {results['model_seconds'][m]} s" for m in order
                    if m in results["model_seconds"]) + ".",
        "",
        "## Per-model tables",
        "",
    ]
    detail = report.markdown({**results, "command": "; ".join(r["command"]
                                                              for r in results["runs"])})
    detail = detail.split("\n")
    start = next(i for i, line in enumerate(detail) if line.startswith("## "))
    return "\n".join(lines + detail[start:]) + "\n"


if __name__ == "__main__":
    main()
