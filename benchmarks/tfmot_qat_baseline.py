"""TensorFlow Model Optimization (tfmot) quantization-aware-training baseline.

Reference numbers for tfopt: wraps a small trained CNN with tfmot's
``quantize_model``, fine-tunes it, exports it the standard tfmot way
(``TFLiteConverter`` with ``Optimize.DEFAULT``, float input/output) and reports
Keras and TFLite accuracy, TFLite size (raw and gzip), the dtypes of the
Conv/Dense weights in the file and the per-step training overhead of the QAT
wrappers relative to the plain float model.

tfmot only works with legacy Keras 2 (tf_keras), while tfopt uses Keras 3, so
this script is standalone (it never imports ``tfopt``) and is run by the parent
process as a subprocess::

    python benchmarks/tfmot_qat_baseline.py --data DATA.npz --out RESULT.json \
        [--epochs 2] [--batch-size 32] [--lr 1e-3] [--seed 0] \
        [--tflite-path FILE] [--skip-timing] \
        [--timing-rounds 5] [--timing-steps 20] [--timing-warmup 5]

DATA.npz has the same layout as for ``tfmot_baseline.py``: ``x_train, y_train,
x_test, y_test`` (float32 NHWC images with one channel, int32 labels 0-9) and
the trained float weights ``w0, w1, ...`` in ``model.get_weights()`` order of
the architecture built by ``build_model``. The result JSON is written to
RESULT.json; a short summary goes to stderr.

Both TFLite files (float and QAT) are exported with a fixed batch of 1 when
the converter allows it (``"batch": 1``), otherwise with the dynamic batch of
``from_keras_model`` (``"batch": "dynamic"``).
"""

import os

# Must happen before TensorFlow is imported: tfmot needs Keras 2 (tf_keras).
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # also set by tf_keras_common
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from tf_keras_common import build_model, compile_model, copy_model  # noqa: E402
from tf_keras_common import StepTimer, add_training_arguments, keras_accuracy, load_data, size_report  # noqa: E402

quant_api = tfmot.quantization.keras

# TFLite ops whose input #1 is the layer's weight tensor.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


# --------------------------------------------------------------------------- #
# Data and model
# --------------------------------------------------------------------------- #








def qat_wrap(model):
    """Default tfmot 8-bit QAT: fake-quant wrappers around every layer."""
    return quant_api.quantize_model(copy_model(model))


# --------------------------------------------------------------------------- #
# TFLite export and inspection
# --------------------------------------------------------------------------- #
def _converter_batch1(model):
    """Converter over a tf.function with a static [1, H, W, 1] input."""
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def serve(x):
        return model(x, training=False)

    # trackable_obj keeps the model's variables alive for the converter.
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], model)


def _convert(converter, optimize):
    if optimize:
        # The standard tfmot QAT export: fake-quant ranges become int8 ops,
        # inputs/outputs stay float32.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def export_tflite(model, optimize):
    """Return (flatbuffer bytes, batch), preferring a fixed batch of 1.

    The fixed-batch file is only kept if it converts and, for QAT, really has
    integer weights; otherwise fall back to tfmot's usual from_keras_model.
    """
    try:
        tflite_bytes = _convert(_converter_batch1(model), optimize)
        dtypes = weight_dtypes(tflite_bytes)
        if not optimize or (dtypes and all(d == "int8" for d in dtypes.values())):
            return tflite_bytes, 1
        print(f"batch-1 export not int8 ({dtypes}); using from_keras_model",
              file=sys.stderr)
    except Exception as exc:  # converter errors are not a stable type
        print(f"batch-1 export failed ({exc!r}); using from_keras_model",
              file=sys.stderr)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return _convert(converter, optimize), "dynamic"


def _tensor_dtypes(interp):
    return {t["index"]: np.dtype(t["dtype"]).name
            for t in interp.get_tensor_details()}


def weight_dtypes(tflite_bytes):
    """Dtype of the weight input of each Conv/Dense op, keyed OPNAME[_i].

    A weight fed through a DEQUANTIZE op is reported as "<stored>->dequantize"
    because the file then stores it in the narrower type.
    """
    interp = Interpreter(model_content=tflite_bytes)
    ops = interp._get_ops_details()  # no public API lists ops and their inputs
    dtypes = _tensor_dtypes(interp)
    producer = {out: op for op in ops for out in op["outputs"]}
    result, counts = {}, {}
    for op in ops:
        name = op["op_name"]
        if name not in WEIGHT_OPS:
            continue
        idx = op["inputs"][1]
        dtype = dtypes.get(idx, "?")
        src = producer.get(idx)
        if src is not None and src["op_name"] == "DEQUANTIZE":
            dtype = f"{dtypes.get(src['inputs'][0], '?')}->dequantize"
        counts[name] = counts.get(name, 0) + 1
        key = name if counts[name] == 1 else f"{name}_{counts[name] - 1}"
        result[key] = dtype
    return result


def op_names(tflite_bytes):
    interp = Interpreter(model_content=tflite_bytes)
    return [op["op_name"] for op in interp._get_ops_details()]


def tflite_accuracy(tflite_bytes, x, y):
    """Accuracy in the LiteRT interpreter.

    A dynamic-batch file runs the whole set as one batch; a fixed-batch file is
    fed chunk by chunk (its Reshape has the batch baked in, so resizing the
    input would be wrong).
    """
    interp = Interpreter(model_content=tflite_bytes)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    if inp["shape_signature"][0] == -1:
        interp.resize_tensor_input(inp["index"], list(x.shape))
        batch = len(x)
    else:
        batch = int(inp["shape"][0])
    interp.allocate_tensors()
    preds = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if n < batch:  # pad the last chunk of a fixed-batch model
            pad = np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        interp.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        interp.invoke()
        preds.append(np.argmax(interp.get_tensor(out["index"])[:n], axis=-1))
    return float(np.mean(np.concatenate(preds) == y))






# --------------------------------------------------------------------------- #
# Float reference and QAT run
# --------------------------------------------------------------------------- #
def float_run(model, x_test, y_test):
    tflite_bytes, batch = export_tflite(model, optimize=False)
    return {
        "accuracy": keras_accuracy(model, x_test, y_test),
        "tflite_accuracy": tflite_accuracy(tflite_bytes, x_test, y_test),
        **size_report(tflite_bytes),
        "weight_dtypes": weight_dtypes(tflite_bytes),
        "batch": batch,
    }


def qat_run(model, data, args):
    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(args.seed)
    rate = args.lr
    if args.lr_decay == "cosine":  # as tfopt's QAT (tfopt.pipeline.qat_learning_rate)
        rate = keras.optimizers.schedules.CosineDecay(
            args.lr, -(-len(x_train) // args.batch_size) * args.epochs)
    qat = compile_model(qat_wrap(model), rate)
    start = time.perf_counter()
    qat.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
            shuffle=True, verbose=0)
    fit_s = time.perf_counter() - start

    tflite_bytes, batch = export_tflite(qat, optimize=True)
    if args.tflite_path:
        # Kept so the caller can time the very file tfmot produced.
        with open(args.tflite_path, "wb") as handle:
            handle.write(tflite_bytes)
    return {
        "accuracy": keras_accuracy(qat, x_test, y_test),
        "tflite_accuracy": tflite_accuracy(tflite_bytes, x_test, y_test),
        **size_report(tflite_bytes),
        "weight_dtypes": weight_dtypes(tflite_bytes),
        "ops": op_names(tflite_bytes),
        "batch": batch,
        "tflite_path": args.tflite_path,
        "epochs": args.epochs,
        "fit_seconds": fit_s,
    }


# --------------------------------------------------------------------------- #
# Step timing
# --------------------------------------------------------------------------- #


def time_steps(model, x_train, y_train, args):
    x = x_train[:args.batch_size]
    y = y_train[:args.batch_size]
    timers = {}
    for name, make in (("plain", copy_model), ("qat", qat_wrap)):
        keras.utils.set_random_seed(args.seed)
        timers[name] = StepTimer(compile_model(make(model), args.lr), x, y)
        timers[name].run(args.timing_warmup, record=False)  # tracing, caches

    # Interleaved rounds so drift in machine load hits both models alike.
    for _ in range(args.timing_rounds):
        for timer in timers.values():
            timer.run(args.timing_steps)

    plain = timers["plain"].median_ms()
    qat = timers["qat"].median_ms()
    return {"plain_ms": plain, "qat_ms": qat, "ratio": qat / plain}


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="input .npz (data + float weights)")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--epochs", type=int, default=2, help="QAT fine-tuning epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tflite-path", default=None,
                   help="also write the QAT .tflite to this file")
    p.add_argument("--lr-decay", choices=("none", "cosine"), default="none",
                   help="cosine: anneal --lr to 0 over the QAT epochs, as tfopt's QAT recipe")
    add_training_arguments(p)
    return p.parse_args(argv)


def summarize(result):
    f, q = result["float"], result["qat"]
    lines = [
        f"tfmot {result['tfmot_version']} / TF {result['tf_version']}",
        f"  float: acc={f['accuracy']:.4f} tflite_acc={f['tflite_accuracy']:.4f} "
        f"tflite={f['tflite_bytes']}B gzip={f['tflite_gzip_bytes']}B batch={f['batch']}",
        f"  qat:   acc={q['accuracy']:.4f} tflite_acc={q['tflite_accuracy']:.4f} "
        f"tflite={q['tflite_bytes']}B gzip={q['tflite_gzip_bytes']}B batch={q['batch']} "
        f"weights={q['weight_dtypes']}",
    ]
    t = result.get("timing")
    if t is not None:
        lines.append(f"  step: plain={t['plain_ms']:.2f}ms qat={t['qat_ms']:.2f}ms "
                     f"(x{t['ratio']:.2f})")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    x_train, y_train, x_test, y_test, weights = load_data(args.data)

    keras.utils.set_random_seed(args.seed)
    model = build_model(*x_train.shape[1:3])
    model.set_weights(weights)

    data = (x_train, y_train, x_test, y_test)
    result = {
        "tool": "tfmot-qat",
        "tfmot_version": tfmot.__version__,
        "tf_version": tf.__version__,
        "float": float_run(model, x_test, y_test),
        "qat": qat_run(model, data, args),
    }
    if not args.skip_timing:
        result["timing"] = time_steps(model, x_train, y_train, args)

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(summarize(result), file=sys.stderr)


if __name__ == "__main__":
    main()
