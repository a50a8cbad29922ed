"""Compression search on the digits: which width, pruning and quantization
give the smallest int8 file within a point of the dense model's accuracy?

    python examples/tune_digits.py [--max-trials 8] [--out search-report]

Each trial trains a width-scaled CNN with its pruning recipe, quantizes it
(PTQ or QAT int8, or keeps it float), exports it to TFLite and measures the
file: accuracy, bytes, gzip bytes, p50 latency. Prints the Pareto front.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tfopt  # noqa: E402
from tfopt.tuning.examples import digits_data  # noqa: E402
from tfopt.tuning.examples import digits_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--out", default="search-report")
    args = parser.parse_args()

    (x, y), (x_val, y_val), _ = digits_data()
    hypermodel = tfopt.tuning.CompressionHyperModel(
        digits_model,                                  # build_model(width) -> keras.Model
        space={
            "width": [1.0, 0.75, 0.5],
            "epochs": 10,
            "pruning": ["none", "unstructured", "2:4"],
            "sparsity": [0.5, 0.75],
            "quantization": ["ptq", "qat"],
        })
    tuner = tfopt.tuning.RandomSearch(
        hypermodel, max_trials=args.max_trials, seed=0,
        max_accuracy_drop=0.01,                        # vs the dense float baseline
        directory=os.path.join(args.out, "projects"), project_name="digits", overwrite=True)
    tuner.search(x, y, validation_data=(x_val, y_val), verbose=0)

    base = tuner.baseline
    print(f"dense float baseline: accuracy {base['tflite_accuracy']:.4f}, {base['size_bytes']:.0f} bytes")
    front = tuner.pareto_front()
    if not front:
        print("no trial met max_accuracy_drop=0.01; run more trials (see the report)")
    for r in front:
        m = r.metrics
        print(f"trial {r.trial_id}: {r.values} -> accuracy {m['tflite_accuracy']:.4f}, "
              f"{m['size_bytes']:.0f} bytes ({m['bytes_vs_baseline']:.2f}x), p50 {m['p50_ms']:.4f} ms")
    paths = tuner.write_report(args.out, command="python examples/tune_digits.py")
    print("report:", ", ".join(p for p in paths.values() if p))


if __name__ == "__main__":
    main()
