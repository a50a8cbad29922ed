"""tfmot 0.8.1 on tf_keras, on a tfopt.zoo architecture: the side-by-side of the zoo suite.

Run by `tfopt.bench.zoo_suite` in a subprocess (TF_USE_LEGACY_KERAS=1); never
imported by tfopt. The architecture comes from tfopt/zoo.py itself, executed
with `keras` bound to tf_keras (the builders use only layers both share), so
it is the same network; the data is the zoo task the parent passes in an
npz. The model is trained here from its own random init for `--epochs`,
then each technique is applied as tfmot's guides do:

- prune: `prune_low_magnitude` (PolynomialDecay 0 -> 50% over 3/4 of the
  steps, UpdatePruningStep) for `--epochs`, `strip_pruning`, float file.
- qat: `quantize_model` for `--epochs`, converted with Optimize.DEFAULT
  (int8 from the fake-quant ranges).

Every technique records its own failure (the first line of the error) and
the others go on. Writes one JSON: {technique: {status, reason | tflite_path,
keras_accuracy, tflite_accuracy, top1_agreement, sparsity}}.

    TF_USE_LEGACY_KERAS=1 python benchmarks/tfmot_zoo.py --model unet \
        --data task.npz --techniques prune,qat --out result.json --tflite-dir /tmp
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_zoo():
    """tfopt/zoo.py executed with `keras` = tf_keras (tfopt itself is not imported)."""
    saved = sys.modules.get("keras")
    sys.modules["keras"] = tf_keras
    try:
        spec = importlib.util.spec_from_file_location("zoo_tf_keras",
                                                      os.path.join(ROOT, "tfopt", "zoo.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("keras", None)
        else:
            sys.modules["keras"] = saved
    return module


def load_task(path):
    with np.load(path) as npz:
        x, x_test = npz["x"], npz["x_test"]
        if "y_boxes" in npz.files:
            return x, (npz["y"], npz["y_boxes"]), x_test, npz["y_test"]
        return x, npz["y"], x_test, npz["y_test"]


def first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def run_tflite(content, x, n_classes):
    """The file's first output (the one with `n_classes` channels) on `x`."""
    interpreter = tf.lite.Interpreter(model_content=content)
    detail = interpreter.get_input_details()[0]
    output = next(d for d in interpreter.get_output_details() if d["shape"][-1] == n_classes)
    results = []
    for example in x:
        interpreter.resize_tensor_input(detail["index"], (1, *example.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], example[None].astype(detail["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(output["index"])[0])
    return np.stack(results)


def evaluate(model, content, x_test, labels, tflite_path):
    with open(tflite_path, "wb") as handle:
        handle.write(content)
    keras_out = first(model.predict(x_test, verbose=0))
    file_out = run_tflite(content, x_test, keras_out.shape[-1])
    return {
        "status": "ok",
        "tflite_path": tflite_path,
        "keras_accuracy": float(np.mean(keras_out.argmax(-1) == labels)),
        "tflite_accuracy": float(np.mean(file_out.argmax(-1) == labels)),
        "top1_agreement": float(np.mean(file_out.argmax(-1) == keras_out.argmax(-1))),
        **logit_errors(file_out, keras_out),
    }


def logit_errors(file_logits, keras_logits):
    """As tfopt.bench.zoo_suite.logit_errors (tfopt is not imported here)."""
    error = file_logits.astype("float64") - keras_logits
    spread = float(keras_logits.max() - keras_logits.min())
    norm = float(np.sqrt(np.mean(keras_logits.astype("float64") ** 2)))
    return {
        "logit_err_range": float(np.max(np.abs(error)) / spread) if spread > 0 else 0.0,
        "logit_err_rms": float(np.sqrt(np.mean(error ** 2)) / norm) if norm > 0 else 0.0,
    }


def kernel_sparsity(model):
    kernels = [w.numpy() for w in model.weights
               if w.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel",
                                                          "embeddings", "recurrent_kernel")]
    total = sum(k.size for k in kernels)
    return float(sum((k == 0).sum() for k in kernels) / total) if total else None


def prune(zoo, base, data, epochs, batch_size, tflite_path):
    import tensorflow_model_optimization as tfmot

    x, y, x_test, labels = data
    steps = int(np.ceil(len(x) / batch_size)) * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, max(1, int(0.75 * steps)),
                                                    frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    zoo.compile_model(pruned)
    pruned.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    content = tf.lite.TFLiteConverter.from_keras_model(final).convert()
    result = evaluate(final, content, x_test, labels, tflite_path)
    result["sparsity"] = kernel_sparsity(final)
    return result


def qat(zoo, base, data, epochs, batch_size, tflite_path):
    import tensorflow_model_optimization as tfmot

    x, y, x_test, labels = data
    model = tfmot.quantization.keras.quantize_model(base)
    # tfopt's QAT recipe: Adam from 1e-4 annealed to 0 (cosine), the same here.
    steps = -(-len(x) // batch_size) * epochs
    zoo.compile_model(model, tf_keras.optimizers.schedules.CosineDecay(1e-4, steps))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return evaluate(model, converter.convert(), x_test, labels, tflite_path)


def _reason(error):
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return (text[0] if text else repr(error))[:400]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="npz with x, y (y_boxes), x_test, y_test")
    parser.add_argument("--techniques", default="prune,qat")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="epochs of each technique (default --epochs)")
    parser.add_argument("--bn-momentum", type=float, default=None,
                        help="BatchNormalization momentum of the base model (default: the "
                             "architecture's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tflite-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = {}
    try:
        zoo = load_zoo()
        data = load_task(args.data)
        tf_keras.utils.set_random_seed(0)
        base = zoo.MODELS[args.model].build()
        if args.bn_momentum is not None:
            for layer in base._flatten_layers(include_self=False):
                if isinstance(layer, tf_keras.layers.BatchNormalization):
                    layer.momentum = args.bn_momentum
        zoo.compile_model(base)
        base.fit(data[0], data[1], batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    except Exception as error:  # the architecture itself fails on tf_keras
        reason = "building/training on tf_keras: " + _reason(error)
        results = {t: {"status": "failed", "reason": reason} for t in args.techniques.split(",")}
    else:
        for technique in args.techniques.split(","):
            fn = {"prune": prune, "qat": qat}[technique]
            path = os.path.join(args.tflite_dir, f"{args.model}-tfmot-{technique}.tflite")
            try:
                epochs = args.epochs if args.finetune_epochs is None else args.finetune_epochs
                results[technique] = fn(zoo, base, data, epochs, args.batch_size, path)
            except Exception as error:  # recorded; the next technique goes on
                if os.environ.get("TFOPT_BENCH_TRACEBACKS"):
                    traceback.print_exc()
                results[technique] = {"status": "failed", "reason": _reason(error)}
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
