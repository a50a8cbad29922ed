"""TensorFlow Model Optimization (tfmot) magnitude-pruning baseline.

Reference numbers for tfopt: prunes a small CNN with tfmot's
``prune_low_magnitude`` and reports accuracy, measured sparsity, float TFLite
size (raw and gzip) and the per-step training overhead of the pruning wrapper.

tfmot only works with legacy Keras 2 (tf_keras), while tfopt uses Keras 3, so
this script is standalone (it never imports ``tfopt``) and is run by the parent
process as a subprocess::

    python benchmarks/tfmot_baseline.py --data DATA.npz --out RESULT.json \
        [--sparsities 0.5,0.8,0.9] [--frequency 100] [--batch-size 32] \
        [--ramp-epochs 2] [--finetune-epochs 2] [--lr 1e-3] [--seed 0] \
        [--timing-rounds 5] [--timing-steps 20] [--timing-warmup 5]

DATA.npz holds ``x_train, y_train, x_test, y_test`` (float32 NHWC images with
one channel, int32 labels 0-9) and the trained dense weights ``w0, w1, ...`` in
``model.get_weights()`` order of the architecture built by ``build_model``.
The result JSON is written to RESULT.json; a short summary goes to stderr.
"""

import os

# Must happen before TensorFlow is imported: tfmot needs Keras 2 (tf_keras).
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # also set by tf_keras_common
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from tf_keras_common import build_model, compile_model, copy_model  # noqa: E402
from tf_keras_common import StepTimer, add_training_arguments, keras_accuracy, load_data, size_report  # noqa: E402

sparsity_api = tfmot.sparsity.keras


# --------------------------------------------------------------------------- #
# Data and model
# --------------------------------------------------------------------------- #








def prune_wrap(model, target, end_step, frequency):
    schedule = sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target,
        begin_step=0, end_step=end_step, frequency=frequency)
    return sparsity_api.prune_low_magnitude(model, pruning_schedule=schedule)


# --------------------------------------------------------------------------- #
# Measurements
# --------------------------------------------------------------------------- #


def kernel_sparsity(model):
    """Exact-zero fraction of the Conv2D/Dense kernels: (overall, per layer)."""
    zeros, total, per_layer = 0, 0, {}
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            n_zero = int(np.sum(kernel == 0))
            per_layer[layer.name] = n_zero / kernel.size
            zeros += n_zero
            total += kernel.size
    return zeros / total, per_layer


def to_tflite(model):
    """Plain float conversion (no optimizations) -> flatbuffer bytes."""
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tflite_accuracy(tflite_bytes, x, y):
    """Run the whole test set as one batch through the LiteRT interpreter."""
    interp = Interpreter(model_content=tflite_bytes)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    logits = interp.get_tensor(interp.get_output_details()[0]["index"])
    return float(np.mean(np.argmax(logits, axis=-1) == y))




def mask_update_steps(total_steps, end_step, frequency):
    """Steps at which tfmot's schedule recomputes masks during fit.

    The wrapper's step counter is 1 for the first batch, and PolynomialDecay
    prunes when step % frequency == 0 and step <= end_step. Reported because a
    frequency larger than end_step means the masks are never updated.
    """
    return [s for s in range(1, total_steps + 1)
            if s % frequency == 0 and s <= end_step]


# --------------------------------------------------------------------------- #
# Pruning runs
# --------------------------------------------------------------------------- #
def pruning_run(dense, data, target, args, steps_per_epoch):
    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(args.seed)
    end_step = args.ramp_epochs * steps_per_epoch
    epochs = args.ramp_epochs + args.finetune_epochs

    wrapped = compile_model(
        prune_wrap(copy_model(dense), target, end_step, args.frequency), args.lr)
    wrapped.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs,
                shuffle=True, verbose=0,
                callbacks=[sparsity_api.UpdatePruningStep()])
    stripped = sparsity_api.strip_pruning(wrapped)

    overall, per_layer = kernel_sparsity(stripped)
    tflite_bytes = to_tflite(stripped)
    updates = mask_update_steps(epochs * steps_per_epoch, end_step, args.frequency)
    tflite_path = None
    if args.tflite_dir:
        # Kept so the caller can time the very file tfmot produced.
        size = "x".join(str(d) for d in x_train.shape[1:3])
        tflite_path = os.path.join(args.tflite_dir, f"tfmot_prune_{round(target * 100)}_{size}.tflite")
        with open(tflite_path, "wb") as handle:
            handle.write(tflite_bytes)
    return {
        "tflite_path": tflite_path,
        "target_sparsity": target,
        "accuracy": keras_accuracy(stripped, x_test, y_test),
        "tflite_accuracy": tflite_accuracy(tflite_bytes, x_test, y_test),
        "sparsity": overall,
        "layer_sparsity": per_layer,
        **size_report(tflite_bytes),
        "mask_updates": len(updates),
    }


# --------------------------------------------------------------------------- #
# Step timing
# --------------------------------------------------------------------------- #


def time_steps(dense, x_train, y_train, args):
    x = x_train[:args.batch_size]
    y = y_train[:args.batch_size]
    # Long end_step so every timed step is inside the pruning range.
    configs = {
        "plain": None,
        "every_step": 1,              # mask update on every step
        "at_frequency": args.frequency,
    }
    timers = {}
    for name, freq in configs.items():
        keras.utils.set_random_seed(args.seed)
        model = copy_model(dense)
        if freq is not None:
            model = prune_wrap(model, 0.8, 100000, freq)
        callback = sparsity_api.UpdatePruningStep() if freq is not None else None
        timers[name] = StepTimer(compile_model(model, args.lr), x, y, callback)
        timers[name].run(args.timing_warmup, record=False)  # tracing, caches

    # Interleaved rounds so drift in machine load hits all models alike.
    for _ in range(args.timing_rounds):
        for timer in timers.values():
            timer.run(args.timing_steps)

    plain = timers["plain"].median_ms()
    every = timers["every_step"].median_ms()
    at_freq = timers["at_frequency"].median_ms()
    return {
        "plain_ms": plain,
        "every_step_ms": every,
        "every_step_ratio": every / plain,
        "at_frequency_ms": at_freq,
        "at_frequency_ratio": at_freq / plain,
    }


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="input .npz (data + dense weights)")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--sparsities", default="0.5,0.8,0.9",
                   help="comma-separated target sparsities")
    p.add_argument("--frequency", type=int, default=100,
                   help="tfmot pruning frequency (steps between mask updates)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ramp-epochs", type=int, default=2,
                   help="epochs over which sparsity ramps from 0 to target")
    p.add_argument("--finetune-epochs", type=int, default=2,
                   help="extra epochs at constant final sparsity")
    p.add_argument("--tflite-dir", default=None,
                   help="also write each stripped model's .tflite here")
    add_training_arguments(p)
    args = p.parse_args(argv)
    args.sparsities = [float(s) for s in args.sparsities.split(",") if s.strip()]
    return args


def summarize(result):
    d = result["dense"]
    lines = [f"tfmot {result['tfmot_version']} / TF {result['tf_version']}, "
             f"frequency={result['frequency']}",
             f"  dense: acc={d['accuracy']:.4f} tflite={d['tflite_bytes']}B "
             f"gzip={d['tflite_gzip_bytes']}B"]
    for r in result["runs"]:
        lines.append(
            f"  target={r['target_sparsity']:.2f}: sparsity={r['sparsity']:.4f} "
            f"acc={r['accuracy']:.4f} tflite_acc={r['tflite_accuracy']:.4f} "
            f"gzip={r['tflite_gzip_bytes']}B mask_updates={r['mask_updates']}")
    t = result.get("timing")
    if t is None:
        return "\n".join(lines)
    lines.append(
        f"  step: plain={t['plain_ms']:.2f}ms every_step={t['every_step_ms']:.2f}ms "
        f"(x{t['every_step_ratio']:.2f}) at_frequency={t['at_frequency_ms']:.2f}ms "
        f"(x{t['at_frequency_ratio']:.2f})")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    x_train, y_train, x_test, y_test, weights = load_data(args.data)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)

    keras.utils.set_random_seed(args.seed)
    dense = build_model(*x_train.shape[1:3])
    dense.set_weights(weights)
    dense_tflite = to_tflite(dense)

    data = (x_train, y_train, x_test, y_test)
    result = {
        "tool": "tfmot",
        "tfmot_version": tfmot.__version__,
        "tf_version": tf.__version__,
        "frequency": args.frequency,
        "steps_per_epoch": steps_per_epoch,
        "end_step": args.ramp_epochs * steps_per_epoch,
        "dense": {"accuracy": keras_accuracy(dense, x_test, y_test),
                  **size_report(dense_tflite)},
        "runs": [pruning_run(dense, data, s, args, steps_per_epoch)
                 for s in args.sparsities],
    }
    if not args.skip_timing:
        result["timing"] = time_steps(dense, x_train, y_train, args)

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(summarize(result), file=sys.stderr)


if __name__ == "__main__":
    main()
