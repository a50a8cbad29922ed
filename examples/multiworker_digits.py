"""Train the digits CNN, then prune + quantization-aware train it, on several workers.

    python examples/multiworker_digits.py --local 2     # two workers on this machine
    python examples/multiworker_digits.py               # one worker; TF_CONFIG set

Every worker runs this same script under `tf.distribute.MultiWorkerMirroredStrategy`
(it reads the cluster from `TF_CONFIG`); `--local N` starts N workers on
loopback ports of this machine and prints the chief's output. The chief
(worker 0) alone strips, exports the int8 file and checks it in LiteRT.
"""

import argparse
import json
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def launch_local(count, args):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    procs = []
    for index in range(count):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, __file__, *args], env=env,
                                      stdout=None if index == 0 else subprocess.DEVNULL))
    codes = [proc.wait() for proc in procs]
    if any(codes):
        sys.exit(f"worker exit codes: {codes}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local", type=int, default=0, help="start N workers on this machine")
    parser.add_argument("--out", default="results/multiworker_digits")
    parser.add_argument("--epochs", type=int, default=10, help="float training")
    parser.add_argument("--compress-epochs", type=int, default=6, help="pruning + QAT")
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--report", help="the chief writes its results to this JSON file")
    args = parser.parse_args()
    if args.local:
        launch_local(args.local, ["--out", args.out, "--epochs", str(args.epochs),
                                  "--compress-epochs", str(args.compress_epochs),
                                  "--batch-size", str(args.batch_size)]
                     + (["--report", args.report] if args.report else []))
        return

    import keras
    import numpy as np
    import tensorflow as tf

    import tfopt

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    chief = tfopt.distribute.is_chief(strategy)
    (x, y), (x_test, y_test) = tfopt.data.load_digits(8)
    global_batch = args.batch_size * strategy.num_replicas_in_sync
    options = tf.data.Options()  # every worker holds the arrays: each keeps its share
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # The same shuffle seed on every worker, so their shares form one global batch.
    train = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0)
             .batch(global_batch).with_options(options))
    steps = int(np.ceil(len(x) / global_batch)) * args.compress_epochs

    with strategy.scope():  # build, wrap and compile inside the scope
        keras.utils.set_random_seed(0)
        model = tfopt.models.compile_classifier(tfopt.models.digits_cnn(8), learning_rate=3e-3)
    tfopt.distribute.enable_multi_worker_fit(model)
    model.fit(train, epochs=args.epochs, verbose=2 if chief else 0, shuffle=False)

    with strategy.scope():  # prune to 75% and quantization-aware train together
        compressed = tfopt.pruning.prune_low_magnitude(
            tfopt.quantization.quantize_model(model),
            pruning_schedule=tfopt.pruning.PolynomialDecay(0.0, 0.75, 0, steps // 2, frequency=1))
        tfopt.models.compile_classifier(compressed, learning_rate=1e-3)
    tfopt.distribute.enable_multi_worker_fit(compressed)
    compressed.fit(train, epochs=args.compress_epochs, verbose=2 if chief else 0, shuffle=False,
                   callbacks=[tfopt.pruning.UpdatePruningStep()])

    if chief:
        os.makedirs(args.out, exist_ok=True)
        # A direct call reads this worker's copy of the weights (no collective).
        float_accuracy = float(np.mean(np.argmax(model(x_test, training=False), -1) == y_test))
        final = tfopt.pruning.strip_pruning(compressed)
        path = os.path.join(args.out, "digits_int8.tflite")
        exported = tfopt.export.to_tflite(final, path, quantization="int8")
        report = tfopt.export.verify(exported, final, x_test, y_test)
        result = {"workers": strategy.num_replicas_in_sync, "global_batch": global_batch,
                  "float_accuracy": float_accuracy,
                  "keras_accuracy": float(report["keras_accuracy"]),
                  "tflite_accuracy": float(report["tflite_accuracy"]),
                  "sparsity": float(tfopt.pruning.sparsity_report(final)["total"]["sparsity"]),
                  "size_bytes": exported.size_bytes}
        print(f"{result['workers']} workers: {path} {exported.size_bytes} B, sparsity "
              f"{result['sparsity']:.2f}, float {float_accuracy:.4f}, pruned+QAT Keras "
              f"{result['keras_accuracy']:.4f}, TFLite {result['tflite_accuracy']:.4f}")
        if args.report:
            with open(args.report, "w") as f:
                json.dump(result, f)


if __name__ == "__main__":
    main()
