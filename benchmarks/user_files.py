"""The CLI on a user's own files (issue 12): start-up time, QAT default export, bench FILE.

    python benchmarks/user_files.py --out benchmarks/results/user_files

Measures, on the machine it runs on:
1. `tfopt --help` wall time in fresh processes (and that TensorFlow is not
   imported), against `python -c "import tensorflow"`.
2. A digits CNN (28x28) exported float, QAT with the default
   (`quantization="auto"` -> int8) and QAT forced to float: bytes and accuracy.
3. `tfopt compress` and `tfopt bench MODEL.keras --data DATA` on that model
   saved as `.keras` with its data as `.npz`: wall time and the rows.
Writes `user_files.json` and `user_files.md` into `--out`.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wall(command, repeats):
    env = dict(os.environ, PYTHONPATH=ROOT)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed: {done.stderr[-500:]}")
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/user_files")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sys.path.insert(0, ROOT)

    results = {"command": "python " + " ".join(sys.argv), "python": platform.python_version()}
    check = ("import sys; from tfopt import cli\n"
             "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "assert 'tensorflow' not in sys.modules")
    results["help"] = _wall([sys.executable, "-c", check], args.repeats)
    results["import_tensorflow"] = _wall([sys.executable, "-c", "import tensorflow"], args.repeats)

    import keras
    import numpy as np

    import tfopt
    from tfopt.bench import report

    results["environment"] = report.environment()
    (x, y), (x_test, y_test) = tfopt.data.load_digits(28)
    keras.utils.set_random_seed(0)
    model = tfopt.models.compile_classifier(tfopt.models.digits_cnn(28))
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    qat = tfopt.models.compile_classifier(tfopt.quantization.quantize_model(model), 1e-4)
    qat.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    exports = {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, source, mode in (("float model, float", model, "auto"),
                                   ("QAT model, default (auto -> int8)", qat, "auto"),
                                   ("QAT model, forced float (warns)", qat, None)):
            exported = tfopt.export.to_tflite(source, quantization=mode, batch_size=1)
            exports[name] = {
                "quantization": exported.quantization, "size_bytes": exported.size_bytes,
                "gzip_bytes": exported.gzip_bytes,
                "tflite_accuracy": tfopt.export.evaluate_tflite(exported, x_test, y_test)}
    results["qat_export"] = exports

    with tempfile.TemporaryDirectory() as tmp:
        path, data = os.path.join(tmp, "digits_cnn.keras"), os.path.join(tmp, "digits.npz")
        model.save(path)
        np.savez(data, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
        compress = [sys.executable, "-m", "tfopt.cli", "compress", path, "--data", data,
                    "--recipe", "prune-80", "--epochs", str(args.epochs),
                    "--out", os.path.join(tmp, "p80.tflite")]
        env = dict(os.environ, PYTHONPATH=ROOT)
        start = time.perf_counter()
        done = subprocess.run(compress, capture_output=True, text=True, env=env, timeout=1200)
        results["compress"] = {"command": "tfopt " + " ".join(compress[3:]).replace(tmp + "/", ""),
                               "seconds": time.perf_counter() - start,
                               "stdout": done.stdout.strip(), "stderr_lines": len(done.stderr.splitlines()),
                               "returncode": done.returncode}
        bench_out = os.path.join(args.out, "bench")
        bench = [sys.executable, "-m", "tfopt.cli", "bench", path, "--data", data,
                 "--recipes", "ptq-dynamic,ptq-int8,prune-50,prune-80,qat-int8,channels-50",
                 "--epochs", str(args.epochs), "--out", bench_out]
        start = time.perf_counter()
        done = subprocess.run(bench, capture_output=True, text=True, env=env, timeout=1800)
        rows = json.load(open(os.path.join(bench_out, "results.json")))["rows"] \
            if done.returncode == 0 else []
        results["bench"] = {"command": "tfopt " + " ".join(bench[3:]).replace(tmp + "/", ""),
                            "seconds": time.perf_counter() - start, "returncode": done.returncode,
                            "native_stderr_lines": sum(1 for line in done.stderr.splitlines()
                                                       if line.startswith(("I0000", "W0000", "E0000"))),
                            "rows": [{k: r.get(k) for k in ("recipe", "status", "tflite_accuracy",
                                                            "size_bytes", "gzip_bytes", "sparsity",
                                                            "cpu_p50_ms")} for r in rows]}

    with open(os.path.join(args.out, "user_files.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    env = results["environment"]
    lines = [
        "# The CLI on a user's own files", "",
        f"`{results['command']}` on {env['cpu']} ({env['cores']} cores), {env['date']}; "
        f"TF {env['tensorflow']}, Keras {env['keras']}. The machine was shared with other "
        "jobs: wall times are upper bounds, latencies are not comparable across runs.", "",
        "## Start-up", "",
        "| command | median s | min s | max s |", "|---|---|---|---|",
        f"| tfopt --help (TensorFlow not imported) | {results['help']['median_s']:.2f} | "
        f"{results['help']['min_s']:.2f} | {results['help']['max_s']:.2f} |",
        f"| python -c 'import tensorflow' | {results['import_tensorflow']['median_s']:.2f} | "
        f"{results['import_tensorflow']['min_s']:.2f} | {results['import_tensorflow']['max_s']:.2f} |",
        "", "## QAT export default (digits CNN 28x28)", "",
        "| export | mode | bytes | gzip | tflite acc |", "|---|---|---|---|---|",
    ]
    for name, row in exports.items():
        lines.append(f"| {name} | {row['quantization'] or 'float'} | {row['size_bytes']} | "
                     f"{row['gzip_bytes']} | {row['tflite_accuracy']:.4f} |")
    c = results["compress"]
    lines += ["", "## tfopt compress", "", f"`{c['command']}`: {c['seconds']:.1f} s, exit "
              f"{c['returncode']}, {c['stderr_lines']} stderr line(s).", "", "```", c["stdout"], "```"]
    b = results["bench"]
    lines += ["", "## tfopt bench MODEL.keras", "", f"`{b['command']}`: {b['seconds']:.1f} s, exit "
              f"{b['returncode']}, {b['native_stderr_lines']} TensorFlow C++ log line(s) on stderr. "
              "Full table: `bench/results.md`.", "",
              "| recipe | status | tflite acc | bytes | gzip | sparsity | p50 ms |",
              "|---|---|---|---|---|---|---|"]
    for r in b["rows"]:
        def f(v, d=4):
            return f"{v:.{d}f}" if isinstance(v, float) else ("" if v is None else str(v))
        lines.append(f"| {r['recipe']} | {r['status']} | {f(r['tflite_accuracy'])} | "
                     f"{r['size_bytes']} | {r['gzip_bytes']} | {f(r['sparsity'], 3)} | "
                     f"{f(r['cpu_p50_ms'])} |")
    with open(os.path.join(args.out, "user_files.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
