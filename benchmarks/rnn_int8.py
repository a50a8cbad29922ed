"""LSTM/GRU int8 files against their Keras models (issue 11, recurrent layers).

For `lstm_text` and `gru_text` of `tfopt.zoo` (Embedding + LSTM(32)/GRU(32)
over 32 tokens, the zoo's synthetic keyword task) trained at the zoo
suite's budget (`tfopt.bench.zoo_suite.BUDGETS`: base epochs, QAT
fine-tuning epochs at learning rate 1e-4, train/test examples), three int8
files at batch 1:

- `ptq-int8`: `to_tflite(model, quantization="int8", representative_data=
  x_train[:128])` (the recurrent layer is unrolled), compared with the
  float Keras model;
- `qat island`: `quantize_model(model, int8_recurrent=False)`, the LSTM/GRU
  left a float island;
- `qat int8_recurrent`: `quantize_model(model, int8_recurrent=True)`, the
  LSTM/GRU as unrolled int8 steps (`QuantizedRecurrent`);

the QAT files compared with their QAT Keras models. Columns: compute ops
int8 k/n (`tfopt.export.inspect.COMPUTE_OPS`: CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, BATCH_MATMUL, TRANSPOSE_CONV, CONV_3D, CONV_3D_TRANSPOSE),
the ops left float, top-1 agreement of the file with its Keras model,
logit error (max and mean |file - keras| over the Keras logits' range)
and the test accuracy of the Keras model and of the file.

Run it once per code version with `--label`, same `--json`:

    PYTHONPATH=/work/main nice -n 5 python benchmarks/rnn_int8.py --label before
    PYTHONPATH=$PWD nice -n 5 python benchmarks/rnn_int8.py --label after

Writes benchmarks/results/rnn_int8.{json,md} (about 5 minutes per label on
2 cores).
"""

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from qat_agreement import _cpu
from qat_agreement import run_lines

MODELS = ("lstm_text", "gru_text")
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
REPRESENTATIVE = 128
# A constant rate: tfopt's QAT recipe before it annealed the rate to 0
# (2026-12-02, tfopt.pipeline.qat_learning_rate); the recorded results used it.
QAT_LEARNING_RATE = 1e-4


def _checkout(path):
    """`path @ commit` of the tfopt checkout measured."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return path
    return f"{path} @ {commit}"


def _run_file(content, x):
    """The file's outputs, one example at a time (a batch-1 file)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    out = []
    for example in x:
        interpreter.set_tensor(source["index"], example[None].astype(source["dtype"]))
        interpreter.invoke()
        out.append(interpreter.get_tensor(sink["index"])[0].copy())
    return np.stack(out)


def _row(recipe, content, keras_model, x_test, y_test, start):
    from tfopt import export

    ours = _run_file(content, x_test)
    theirs = keras_model.predict(x_test, batch_size=64, verbose=0)
    spread = float(theirs.max() - theirs.min())
    precision = export.op_precision(content)
    floats = {**precision["float_compute"], **precision["float_other"]}
    return {
        "recipe": recipe,
        "int8_ops": f"{precision['int8_compute_ops']}/{precision['compute_ops']}",
        "float_ops": ", ".join(f"{op} x{n}" for op, n in sorted(floats.items())) or "none",
        "top1_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1))),
        "logit_error": float(np.max(np.abs(ours - theirs)) / spread),
        "logit_error_mean": float(np.mean(np.abs(ours - theirs)) / spread),
        "keras_accuracy": float(np.mean(theirs.argmax(-1) == y_test)),
        "file_accuracy": float(np.mean(ours.argmax(-1) == y_test)),
        "seconds": round(time.time() - start, 1),
    }


def measure(name, budget):
    """The three int8 files of zoo model `name` (a list of row dicts)."""
    import keras

    from tfopt import export
    from tfopt import quantization
    from tfopt import zoo

    (x, y), (x_test, y_test) = zoo.task(name, n_train=budget["n_train"], n_test=budget["n_test"])
    keras.utils.set_random_seed(0)
    model = zoo.compile_model(zoo.build(name))
    model.fit(x, y, batch_size=32, epochs=budget["epochs"], verbose=0)
    rows = []
    start = time.time()
    exported = export.to_tflite(model, quantization="int8", representative_data=x[:REPRESENTATIVE],
                                batch_size=1)
    rows.append(_row("ptq-int8", exported.content, model, x_test, y_test, start))
    for recipe, int8_recurrent in (("qat island", False), ("qat int8_recurrent", True)):
        start = time.time()
        keras.utils.set_random_seed(0)
        qat = zoo.compile_model(quantization.quantize_model(model, int8_recurrent=int8_recurrent),
                                QAT_LEARNING_RATE)
        qat.fit(x, y, batch_size=32, epochs=budget["finetune_epochs"], verbose=0)
        exported = export.to_tflite(qat, quantization="int8", batch_size=1)
        rows.append(_row(recipe, exported.content, qat, x_test, y_test, start))
    for row in rows:
        row["model"] = name
    return rows


def markdown(data, title="LSTM/GRU int8 files vs their Keras models"):
    lines = [f"# {title}", ""] + run_lines(data)
    lines += ["", "| model | recipe | version | compute ops int8 | float ops left | top-1 agreement | "
              "logit error max | logit error mean | Keras accuracy | file accuracy | s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(label, r) for label, run in data["runs"].items() for r in run["rows"]]
    keys = list(dict.fromkeys((r["model"], r["recipe"]) for _, r in rows))
    for model, recipe in keys:
        for label, r in rows:
            if (r["model"], r["recipe"]) == (model, recipe):
                lines.append(f"| {model} | {recipe} | {label} | {r['int8_ops']} | {r['float_ops']} | "
                             f"{r['top1_agreement']:.3f} | {r['logit_error']:.3f} | "
                             f"{r['logit_error_mean']:.3f} | {r['keras_accuracy']:.3f} | "
                             f"{r['file_accuracy']:.3f} | {r['seconds']} |")
    lines += ["", "PTQ rows compare the file with the float Keras model, QAT rows with the QAT Keras "
              "model. Logit error: |file - Keras| divided by the range (max - min) of the Keras logits, "
              "max and mean over all test logits. Seconds: QAT fine-tuning + export + evaluation "
              "(PTQ: export + evaluation), on a shared machine.", ""]
    lines += [f"- {note}" for note in data.get("notes", [])]
    return "\n".join(lines) + "\n"


def record(path, label, run, render=None):
    """Adds `run` under `label` to the JSON at `path` (other labels kept) and rewrites the .md
    (with `render(data)`, default `markdown`)."""
    data = {"runs": {}}
    if os.path.exists(path):  # read at the end: another label may have run meanwhile
        with open(path) as f:
            data = json.load(f)
    if run is not None:
        data["runs"][label] = run
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write((render or markdown)(data))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    parser.add_argument("--label", default="after", help="the code version measured (a column)")
    parser.add_argument("--json", default=os.path.join(RESULTS, "rnn_int8.json"))
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args(argv)
    if args.render:
        return record(args.json, args.label, None)
    import keras
    import tensorflow as tf

    import tfopt
    from tfopt.bench import zoo_suite

    rows, budgets = [], {}
    for name in args.models.split(","):
        entry = zoo_suite.budget(name)
        budgets[name] = {"epochs": entry.epochs, "finetune_epochs": entry.finetune_epochs,
                         "n_train": entry.n_train, "n_test": entry.n_test}
        for row in measure(name, budgets[name]):
            rows.append(row)
            print(json.dumps(row), flush=True)
    settings = ", ".join(f"{n}: {b['epochs']} base + {b['finetune_epochs']} QAT epochs, {b['n_train']} train / "
                         f"{b['n_test']} test" for n, b in budgets.items())
    record(args.json, args.label, {
        "command": "python benchmarks/rnn_int8.py " + " ".join(argv),
        "tfopt": _checkout(os.path.dirname(os.path.dirname(os.path.abspath(tfopt.__file__)))),
        "machine": _cpu(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": (f"zoo budgets {settings}; PTQ calibrated on {REPRESENTATIVE} train sequences; "
                     f"batch-1 files; TF {tf.__version__}, Keras {keras.__version__}"),
        "rows": rows,
    })


if __name__ == "__main__":
    main()
