"""Remove half the filters of a digits CNN, fine-tune it, export it.

    python examples/structured_digits.py [--out DIR] [--ratio 0.5]

Trains the Conv(12)+Dense digits CNN, scans each layer's sensitivity to
structured pruning, removes `--ratio` of the conv filters one-shot (L1),
fine-tunes the narrower model and exports dense and pruned float TFLite
files: the pruned file is smaller and faster on any runtime, no sparse
kernels needed.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tfopt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/structured_digits")
    parser.add_argument("--ratio", type=float, default=0.5)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = tfopt.data.load_digits(16)

    dense = tfopt.models.compile_classifier(tfopt.models.digits_cnn(16))
    dense.fit(x, y, batch_size=32, epochs=20, verbose=0)
    dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)[1]

    table = tfopt.pruning.sensitivity_analysis(dense, x_test, y_test, ratios=(0.25, 0.5, 0.75))
    for row in table:
        print(f"  {row['layer']:>8} ratio {row['ratio']:.2f}: drop {100 * row['drop']:.1f} points")
    tfopt.pruning.plot_sensitivity(table, os.path.join(args.out, "sensitivity.png"))

    small = tfopt.models.compile_classifier(tfopt.pruning.prune_channels(dense, args.ratio))
    small.fit(x, y, batch_size=32, epochs=10, verbose=0)
    small_accuracy = small.evaluate(x_test, y_test, verbose=0)[1]

    dense_file = tfopt.export.to_tflite(dense, os.path.join(args.out, "dense.tflite"), batch_size=1)
    small_file = tfopt.export.to_tflite(small, os.path.join(args.out, "pruned.tflite"), batch_size=1)
    dense_ms = tfopt.bench.measure_latency(dense_file).p50_ms
    small_ms = tfopt.bench.measure_latency(small_file).p50_ms
    print(f"dense:  {dense.count_params():6d} params, {dense_file.size_bytes:6d} bytes, "
          f"{dense_ms:.3f} ms, accuracy {dense_accuracy:.4f}")
    print(f"pruned: {small.count_params():6d} params, {small_file.size_bytes:6d} bytes, "
          f"{small_ms:.3f} ms, accuracy {small_accuracy:.4f}")


if __name__ == "__main__":
    main()
