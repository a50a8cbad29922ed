"""Two workers on loopback vs one process: the same training, the same result?

    python benchmarks/multiworker.py [--epochs 10] [--compress-epochs 6]

Runs `examples/multiworker_digits.py` (digits CNN 8x8: float training, then
pruning to 75% + QAT in one fit, int8 export on the chief) twice with the
same global batch (64) and seeds: with two `MultiWorkerMirroredStrategy`
workers on loopback ports (`--local 2`, 32 per worker) and in one process
(no TF_CONFIG, batch 64). Writes results/multiworker.{json,md}: test
accuracy of the float model, of the pruned + QAT model and of its int8
file, sparsity, bytes and wall time. On one 2-core machine the two workers
share the cores and talk over loopback: the wall time says nothing about
speed-up on real machines (and moves with the machine's load).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
EXAMPLE = os.path.join(ROOT, "examples", "multiworker_digits.py")


def run(extra, epochs, compress_epochs, workdir, name):
    report = os.path.join(workdir, f"{name}.json")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    env.pop("TF_CONFIG", None)
    command = [sys.executable, EXAMPLE, *extra, "--epochs", str(epochs),
               "--compress-epochs", str(compress_epochs), "--out", os.path.join(workdir, name),
               "--report", report]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with open(report) as f:
        return {**json.load(f), "wall_seconds": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--compress-epochs", type=int, default=6)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()

    from tfopt.bench import report

    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as workdir:
        rows = {
            "2 workers (loopback), 32 each": run(["--local", "2", "--batch-size", "32"],
                                                 args.epochs, args.compress_epochs, workdir, "two"),
            "1 process, 64": run(["--batch-size", "64"], args.epochs, args.compress_epochs,
                                 workdir, "one"),
        }
    load.append(os.getloadavg()[0])
    result = {"command": " ".join(["python benchmarks/multiworker.py", *sys.argv[1:]]),
              "environment": report.environment(), "load_average_1min": load, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "multiworker.json"), "w") as f:
        json.dump(result, f, indent=2)
    env = result["environment"]
    lines = [
        "# Two workers on loopback vs one process",
        "",
        f"`{result['command']}` on {env['cpu']} ({env['cores']} cores), {env['date']}, "
        f"TensorFlow {env['tensorflow']}, Keras {env['keras']}; 1-min load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after (other jobs running: wall times are "
        "disturbed, and two workers on one 2-core machine are not a speed-up test).",
        "",
        "| run | global batch | float acc | pruned+QAT Keras acc | int8 file acc | sparsity | bytes "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['global_batch']} | {row['float_accuracy']:.4f} | "
                     f"{row['keras_accuracy']:.4f} | {row['tflite_accuracy']:.4f} | "
                     f"{row['sparsity']:.2f} | {row['size_bytes']} | {row['wall_seconds']} |")
    with open(os.path.join(args.out, "multiworker.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
