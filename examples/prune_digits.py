"""Prune a digits CNN to 80% sparsity inside model.fit, strip it, export it.

    python examples/prune_digits.py [--out DIR]

Trains a small CNN on the embedded scikit-learn digits, fine-tunes it while
PolynomialDecay ramps sparsity from 0 to 80% with a mask update every batch,
strips the pruning wrappers, and exports dense and pruned float TFLite files.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfopt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/prune_digits")
    parser.add_argument("--image-size", type=int, default=8, choices=(8, 16, 28))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = tfopt.data.load_digits(args.image_size)

    dense = tfopt.models.compile_classifier(tfopt.models.digits_cnn(args.image_size))
    dense.fit(x, y, batch_size=32, epochs=30, verbose=0)
    dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)[1]

    steps_per_epoch = int(np.ceil(len(x) / 32))
    schedule = tfopt.pruning.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.8,
        begin_step=0, end_step=4 * steps_per_epoch, frequency=1,
    )
    pruned = tfopt.models.compile_classifier(
        tfopt.pruning.prune_low_magnitude(dense, pruning_schedule=schedule)
    )
    pruned.fit(x, y, batch_size=32, epochs=8, verbose=0,
               callbacks=[tfopt.pruning.UpdatePruningStep()])
    final = tfopt.pruning.strip_pruning(pruned)
    final = tfopt.models.compile_classifier(final)
    pruned_accuracy = final.evaluate(x_test, y_test, verbose=0)[1]
    sparsity = tfopt.pruning.sparsity_report(final)["total"]["sparsity"]

    dense_file = tfopt.export.to_tflite(dense, os.path.join(args.out, "dense.tflite"))
    pruned_file = tfopt.export.to_tflite(final, os.path.join(args.out, "pruned.tflite"))
    final.save(os.path.join(args.out, "pruned.keras"))

    print(f"dense : accuracy {dense_accuracy:.4f}  tflite {dense_file.size_bytes} B, "
          f"gzip {dense_file.gzip_bytes} B")
    print(f"pruned: accuracy {pruned_accuracy:.4f}  sparsity {sparsity:.4f}  "
          f"tflite {pruned_file.size_bytes} B, gzip {pruned_file.gzip_bytes} B "
          f"({pruned_file.gzip_bytes / dense_file.gzip_bytes:.2f}x dense gzip)")
    print(f"files in {args.out}")


if __name__ == "__main__":
    main()
