"""TensorFlow Model Optimization (tfmot) weight-clustering baseline.

Reference numbers for tfopt's clustering: tfmot's ``cluster_weights``
(KMEANS_PLUS_PLUS, as tfopt's default) on a trained model in tf_keras,
fine-tuned, ``strip_clustering``-ed and exported to a float TFLite file;
reports Keras and TFLite accuracy, bytes, gzip bytes and the largest number
of distinct values in a kernel.

tfmot needs legacy Keras 2 (tf_keras), so this script never imports tfopt
and is run as a subprocess::

    python benchmarks/tfmot_cluster_baseline.py --data DATA.npz --out RESULT.json \\
        --clusters 16 [--epochs 2] [--batch-size 32] [--lr 1e-3] [--seed 0] \\
        [--architecture digits_cnn_16|digits_teacher_16] [--tflite-path FILE]

DATA.npz: ``x_train, y_train, x_test, y_test`` and the float weights
``w0, w1, ...`` in ``get_weights()`` order of the named architecture
(identical to ``tfopt.models.digits_cnn`` / ``digits_teacher``).
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from tf_keras_common import build_model, compile_model, keras_accuracy, load_data, size_report  # noqa: E402


def teacher(size):
    """Identical to tfopt.models.digits_teacher."""
    return keras.Sequential([
        keras.Input((size, size, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])


def architecture(name, size):
    if name.startswith("digits_teacher"):
        return teacher(size), False
    if name.startswith("digits_cnn"):
        return build_model(size, size), True
    raise SystemExit(f"unknown --architecture {name!r}")


def tflite_accuracy(content, x, y):
    interpreter = Interpreter(model_content=content)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x)
    interpreter.invoke()
    return float(np.mean(interpreter.get_tensor(target["index"]).argmax(-1) == y))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--architecture", default="digits_cnn")
    p.add_argument("--tflite-path", default=None)
    args = p.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    x, y, x_test, y_test, weights = load_data(args.data)
    model, logits = architecture(args.architecture, x.shape[1])
    model.set_weights(weights)
    api = tfmot.clustering.keras
    clustered = api.cluster_weights(
        model, number_of_clusters=args.clusters,
        cluster_centroids_init=api.CentroidInitialization.KMEANS_PLUS_PLUS)
    clustered.compile(optimizer=keras.optimizers.Adam(args.lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                      metrics=["accuracy"])
    clustered.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    final = api.strip_clustering(clustered)
    converter = tf.lite.TFLiteConverter.from_keras_model(final)
    content = converter.convert()
    if args.tflite_path:
        with open(args.tflite_path, "wb") as handle:
            handle.write(content)
    distinct = max(int(np.unique(w).size) for w in final.get_weights() if w.ndim >= 2)
    result = {
        "tool": f"tfmot {tfmot.__version__} cluster_weights (tf_keras {keras.__version__})",
        "clusters": args.clusters,
        "accuracy": keras_accuracy(final, x_test, y_test),
        "tflite_accuracy": tflite_accuracy(content, x_test, y_test),
        "max_distinct_values": distinct,
        "tflite_path": args.tflite_path,
        **size_report(content),
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
