"""The quick suite's files on LiteRT's GPU accelerator, checked against the CPU.

For every model of `tfopt bench --suite quick`, exports the float, PTQ
(dynamic, float16, int8) and QAT int8 files (batch 1, as the suite does),
runs each on the GPU accelerator and in the CPU interpreter on the same test
inputs, and reports max abs / relative difference, top-1 agreement and the
accelerator's reason for any file it refuses. On a software Vulkan device
(Mesa lavapipe) this is a functional check: the GPU timings are listed for
the record only, they are not a GPU speed.

Usage:
    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfopt.bench import latency  # noqa: E402
from tfopt.bench import report  # noqa: E402
from tfopt.bench import suites  # noqa: E402

EXAMPLES = 8
REL_TOL = 1e-4


def recipes(case_name):
    out = [suites.float_recipe()] + [suites.ptq_recipe(m) for m in ("dynamic", "float16", "int8")]
    if not case_name.startswith("mobilenetv2"):
        out.append(suites.qat_recipe(epochs=1))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/gpu_check")
    parser.add_argument("--cases", nargs="*", default=None, help="quick-suite case names")
    args = parser.parse_args()
    adapter = latency.litert_gpu_adapter()
    if not adapter["available"]:
        raise SystemExit(adapter["reason"])
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in suites.quick():
            if args.cases and case.name not in args.cases:
                continue
            start = time.perf_counter()
            model, data = case.build()
            paths, names = [], []
            for recipe in recipes(case.name):
                try:
                    artifact = recipe.make(model, data, workdir)
                    paths.append(artifact.tflite.path)
                    names.append(recipe.name)
                except Exception as error:  # recorded, the others go on
                    rows.append(dict(model=case.name, recipe=recipe.name, status="export failed",
                                     reason=f"{type(error).__name__}: {error}"[:300]))
            x = data[2][:EXAMPLES]
            checks = latency.check_litert_gpu(paths, [x[i:i + 1] for i in range(len(x))], runs=5)
            for name, check in zip(names, checks):
                lat = check.pop("latency")
                check.pop("path", None)
                check.pop("adapter", None)
                row = dict(model=case.name, recipe=name, **check)
                row["gpu_p50_ms"] = lat.p50_ms if lat else None
                row["random_weights"] = case.random_weights
                rows.append(row)
            print(f"{case.name}: {len(names)} files in {time.perf_counter() - start:.0f} s", flush=True)
    results = dict(command="python " + " ".join(sys.argv), environment=report.environment(),
                   adapter=adapter, rows=rows)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    env = results["environment"]
    kind = latency.SOFTWARE_LABEL if adapter["software"] else "hardware GPU"
    lines = [
        "# Quick-suite files on LiteRT's GPU accelerator vs the CPU interpreter", "",
        f"`{results['command']}` on {env['cpu']} ({env['cores']} cores; ISA: "
        f"{', '.join(env['cpu_isa'])}), {env['date']}; TF {env['tensorflow']}, Keras {env['keras']}, "
        f"ai-edge-litert {env['ai_edge_litert']}.", "",
        f"Adapter: {adapter['description'] or adapter['name']} -- **{kind}**. "
        f"{EXAMPLES} test examples per file, batch 1, float32 on the GPU (`enforce_f32`). "
        "`rel diff` = max |GPU - CPU| / max |CPU output|. Top-1 agreement of random-weight "
        "models is n/a (near-uniform softmax). GPU p50 = write input, run, read outputs "
        f"(5 runs){'; on this software device it is not a GPU speed' if adapter['software'] else ''}.",
        "", "| model | recipe | status | max abs diff | rel diff | within 1e-4 | top-1 agree | GPU p50 ms | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r["status"] == "ok"
        agree = "n/a" if r.get("random_weights") else (f"{r['top1_agreement']:.3f}" if ok else "")
        lines.append("| " + " | ".join([
            r["model"], r["recipe"], r["status"],
            f"{r['max_abs_diff']:.2e}" if ok else "", f"{r['rel_diff']:.2e}" if ok else "",
            ("yes" if r["rel_diff"] < REL_TOL else "no") if ok else "", agree,
            f"{r['gpu_p50_ms']:.3f}" if ok and r.get("gpu_p50_ms") else "",
            (r.get("reason") or "").replace("|", "/")]) + " |")
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
