"""Where does a PTQ int8 file lose accuracy? Per-op error of a zoo model's int8 file.

    python benchmarks/ptq_op_errors.py --model vit_tiny --float-model DIR/vit_tiny.keras \
        [--calibration 128] [--debug 64] [--top 15] [--out benchmarks/results/ptq_op_errors]

Trains (or loads, `--float-model`) the zoo model at its `zoo_suite.BUDGETS`
entry, converts it to int8 with TFLite's calibration with the converter
settings of `tfopt.export.to_tflite(..., quantization="int8")` (builtin
int8 ops, `--calibration` training inputs; but not its unrolling and
time-shifted calibration of recurrent layers: use it on feed-forward
models and transformers) and runs TensorFlow's
`tf.lite.experimental.QuantizationDebugger` on `--debug` test inputs: each
op is run on the quantized inputs of the file and compared with its float
result, so the error of one op is not the sum of the ops before it. The
table ranks the ops by RMS error in units of their output's quantization
step (`rmse / scale`: 0.29 is the rounding of an exact int8 op, 1/sqrt(12));
it also gives the whole file's top-1 agreement and max logit error against
the Keras model on the test inputs.

Writes `<out>/<model>.md` and `.json`.
"""

import argparse
import csv
import io
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def float_model(name, path, x, y):
    import keras

    from tfopt import zoo
    from tfopt.bench import zoo_suite

    if path and os.path.exists(path):
        return keras.saving.load_model(path), f"loaded from {path}"
    plan = zoo_suite.budget(name)
    model = zoo.compile_model(zoo.build(name, bn_momentum=plan.bn_momentum))
    model.fit(x, y, batch_size=32, epochs=plan.epochs, verbose=0)
    if path:
        model.save(path)
    return model, f"trained {plan.epochs} epochs on {len(x)} examples"


def op_errors(model, x_calibration, x_debug):
    """Rows of the debugger's layer statistics, with `rmse_per_step`."""
    import tensorflow as tf

    from tfopt.export import tflite

    with tempfile.TemporaryDirectory() as tmp:
        model.export(os.path.join(tmp, "sm"), format="tf_saved_model", verbose=False,
                     input_signature=tflite._input_signature(model, None))
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(tmp, "sm"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([x_calibration[i:i + 1]]
                                                    for i in range(len(x_calibration)))
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: ([x_debug[i:i + 1]] for i in range(len(x_debug))))
        debugger.run()
        buffer = io.StringIO()
        debugger.layer_statistics_dump(buffer)
    rows = []
    for index, row in enumerate(csv.DictReader(io.StringIO(buffer.getvalue()))):
        scale = float(row["scale"]) if row.get("scale") else 0.0
        mse = float(row.get("mean_squared_error") or 0.0)
        rows.append({"index": index, "op": row["op_name"], "tensor": row["tensor_name"],
                     "scale": scale, "rmse_per_step": (mse ** 0.5 / scale) if scale else None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_tiny")
    parser.add_argument("--float-model", default=None,
                        help="a .keras file: loaded if it exists, else the trained model is saved there")
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--debug", type=int, default=64)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "ptq_op_errors"))
    args = parser.parse_args(argv)

    from tfopt import export
    from tfopt import report
    from tfopt import zoo
    from tfopt.bench import zoo_suite
    from tfopt.export.verify import run_tflite

    plan = zoo_suite.budget(args.model)
    (x, y), (x_test, y_test) = zoo.task(args.model, n_train=plan.n_train, n_test=plan.n_test)
    model, origin = float_model(args.model, args.float_model, x, y)
    x, x_test = x.astype("float32"), x_test.astype("float32")
    exported = export.to_tflite(model, quantization="int8",
                                representative_data=x[:args.calibration])
    ours, theirs = run_tflite(exported, x_test), model.predict(x_test, verbose=0)
    whole = {"top1_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1))),
             "logit_error": float(np.abs(ours - theirs).max() / np.ptp(theirs)),
             "float_accuracy": float(np.mean(theirs.argmax(-1) == y_test)),
             "int8_accuracy": float(np.mean(ours.argmax(-1) == y_test))}
    rows = op_errors(model, x[:args.calibration], x_test[:args.debug])
    ranked = sorted((r for r in rows if r["rmse_per_step"] is not None
                     and np.isfinite(r["rmse_per_step"])),
                    key=lambda r: -r["rmse_per_step"])
    command = "python benchmarks/ptq_op_errors.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = report.environment()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.model}.json"), "w") as handle:
        json.dump({"command": command, "environment": env, "float_model": origin,
                   "file": whole, "ops": rows}, handle, indent=1)
    lines = [f"# PTQ int8 per-op error: {args.model}", "",
             f"Command: `{command}`  ", f"Machine: {report.machine_line(env)}  ",
             f"Float model: {origin}; calibration {args.calibration} training inputs, "
             f"debugger on {args.debug} test inputs.", "",
             f"Whole file on {len(x_test)} test inputs: top-1 agreement with Keras "
             f"{whole['top1_agreement']:.3f}, max logit error {whole['logit_error']:.1%} of the "
             f"range, accuracy float {whole['float_accuracy']:.3f} / int8 "
             f"{whole['int8_accuracy']:.3f}.", "",
             f"The {args.top} ops with the largest error (RMS over the debug inputs, in "
             "quantization steps of the op's output; an exact int8 op rounds to 0.29), in "
             f"the file's order of {len(rows)} quantized ops:", "",
             "| # | op | tensor | output scale | RMS error / step |", "|---|---|---|---|---|"]
    for r in sorted(ranked[:args.top], key=lambda r: r["index"]):
        lines.append(f"| {r['index']} | {r['op']} | `{r['tensor'][-70:]}` | {r['scale']:.4g} | "
                     f"{r['rmse_per_step']:.2f} |")
    by_op = {}
    for r in ranked:
        by_op.setdefault(r["op"], []).append(r["rmse_per_step"])
    lines += ["", "Median RMS error / step by op type: " + ", ".join(
        f"{op} {np.median(v):.2f} (max {max(v):.2f}, {len(v)} ops)"
        for op, v in sorted(by_op.items(), key=lambda kv: -np.median(kv[1]))) + "."]
    with open(os.path.join(args.out, f"{args.model}.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
