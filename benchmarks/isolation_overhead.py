"""What crash isolation costs: `to_tflite(isolate=True)` vs in-process, interleaved.

    python benchmarks/isolation_overhead.py [--repeats 3]

Exports the 8x8 digits CNN to int8 (batch 1) alternately in this process and
in a child process; writes results/isolation_overhead.{json,md}. The child
pays a fresh Python + TensorFlow import, so the cost depends on the machine's
load: compare only rows of one run.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()

    import keras

    from tfopt import export
    from tfopt.bench import report
    from tfopt.data import load_digits
    from tfopt.models import digits_cnn

    (x, _), _ = load_digits(8)
    keras.utils.set_random_seed(3)
    model = digits_cnn(8)
    kwargs = dict(quantization="int8", representative_data=x[:64], batch_size=1)
    export.to_tflite(model, **kwargs)  # warm-up (tracing, converter import)
    seconds = {"in_process": [], "isolated": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for key, isolate in (("in_process", False), ("isolated", True)):
            start = time.perf_counter()
            export.to_tflite(model, isolate=isolate, **kwargs)
            seconds[key].append(round(time.perf_counter() - start, 2))
    load.append(os.getloadavg()[0])
    env = report.environment()
    result = {"command": "python benchmarks/isolation_overhead.py " + " ".join(sys.argv[1:]),
              "environment": env, "load_average_1min": load, "seconds": seconds}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "isolation_overhead.json"), "w") as handle:
        json.dump(result, handle, indent=2, default=str)
    median = {k: sorted(v)[len(v) // 2] for k, v in seconds.items()}
    text = (f"# Crash isolation overhead\n\n`{result['command']}` on {env['cpu']} "
            f"({env['cores']} cores), {env['date']}; 1-minute load average {load[0]:.1f} -> "
            f"{load[1]:.1f} (other jobs were running).\n\n"
            "| export (digits CNN, int8, batch 1) | seconds per export (interleaved runs) | median |\n"
            "|---|---|---|\n"
            + "".join(f"| {k} | {', '.join(str(s) for s in v)} | {median[k]} |\n"
                      for k, v in seconds.items())
            + f"\nIsolation adds {median['isolated'] - median['in_process']:.1f} s per export here.\n")
    with open(os.path.join(args.out, "isolation_overhead.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
