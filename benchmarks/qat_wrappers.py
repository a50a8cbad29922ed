"""QAT int8 files of wrapper and recurrent layers (issue 11: Bidirectional,
SimpleRNN, TimeDistributed, PReLU, GroupNormalization).

Six small models, each trained on a small task, then two int8 files at
batch 1:

- `ptq-int8`: `to_tflite(model, quantization="int8", representative_data=
  x_train[:128])`, compared with the float Keras model;
- `qat`: `quantize_model(model)`, fine-tuned `QAT_EPOCHS` at learning rate
  1e-3, `to_tflite(qat, quantization="int8")`, compared with the QAT Keras
  model (or the refusal, e.g. on a tfopt without the rows).

Models: `bilstm_text` (Embedding + Bidirectional(LSTM(16)), keyword task),
`bigru_sum_text` (Bidirectional(GRU(16), return_sequences, merge "sum") +
GlobalAveragePooling1D), `simplernn_text` (SimpleRNN(16)),
`timedist_frames` (TimeDistributed(Conv2D) + TimeDistributed(GAP) +
TimeDistributed(Dense) over 4 digit frames; the class is frame 0's digit), `prelu_mlp`
(Dense + PReLU on 8x8 digits), `groupnorm_cnn` (Conv2D + GroupNormalization
on 8x8 digits). Columns as `rnn_int8.py`: compute ops int8 k/n, the ops
left float, top-1 agreement of the file with its Keras model, logit error
(max and mean over the Keras logits' range), accuracies.

Run once per code version with `--label`, same `--json`:

    PYTHONPATH=/work/main nice -n 5 python benchmarks/qat_wrappers.py --label before
    PYTHONPATH=$PWD nice -n 5 python benchmarks/qat_wrappers.py --label after

Writes benchmarks/results/qat_wrappers.{json,md} (a few minutes per label
on 2 cores).
"""

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from qat_agreement import _cpu
import rnn_int8
from rnn_int8 import _checkout
from rnn_int8 import _row

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
MODELS = ("bilstm_text", "bigru_sum_text", "simplernn_text", "timedist_frames", "prelu_mlp",
          "groupnorm_cnn")
VOCAB, SEQ, CLASSES = 40, 16, 4
EPOCHS, QAT_EPOCHS, REPRESENTATIVE = 6, 1, 128


def keyword_task(n, seed):
    """Noise tokens with one keyword (the class + 1) at a random position."""
    rng = np.random.default_rng(seed)
    x = rng.integers(CLASSES + 1, VOCAB, size=(n, SEQ))
    y = rng.integers(0, CLASSES, size=n)
    x[np.arange(n), rng.integers(0, SEQ, size=n)] = y + 1
    return x.astype("int32"), y.astype("int32")


def frames_task(images, labels, n, seed):
    """4 digit frames; the class is the digit of frame 0 (the others are noise digits)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(images), size=(n, 4))
    return images[picks], labels[picks[:, 0]]


def build(name):
    import keras
    from keras import layers

    if name in ("bilstm_text", "bigru_sum_text", "simplernn_text"):
        inputs = keras.Input((SEQ,), dtype="int32")
        h = layers.Embedding(VOCAB, 16)(inputs)
        if name == "bilstm_text":
            h = layers.Bidirectional(layers.LSTM(16))(h)
        elif name == "bigru_sum_text":
            h = layers.Bidirectional(layers.GRU(16, return_sequences=True), merge_mode="sum")(h)
            h = layers.GlobalAveragePooling1D()(h)
        else:
            h = layers.SimpleRNN(16)(h)
        return keras.Model(inputs, layers.Dense(CLASSES)(h), name=name)
    if name == "timedist_frames":
        inputs = keras.Input((4, 8, 8, 1))
        h = layers.TimeDistributed(layers.Conv2D(16, 3, activation="relu"))(inputs)
        h = layers.TimeDistributed(layers.GlobalAveragePooling2D())(h)
        h = layers.TimeDistributed(layers.Dense(16, activation="relu"))(h)
        return keras.Model(inputs, layers.Dense(10)(layers.Flatten()(h)), name=name)
    if name == "prelu_mlp":
        inputs = keras.Input((8, 8, 1))
        h = layers.PReLU()(layers.Dense(64)(layers.Flatten()(inputs)))
        return keras.Model(inputs, layers.Dense(10)(h), name=name)
    inputs = keras.Input((8, 8, 1))
    h = layers.GroupNormalization(groups=4)(layers.Conv2D(16, 3)(inputs))
    h = layers.GlobalAveragePooling2D()(layers.Activation("relu")(h))
    return keras.Model(inputs, layers.Dense(10)(h), name=name)


def task(name):
    from tfopt import data

    if name.endswith("_text"):
        return keyword_task(2048, 0), keyword_task(256, 1)
    (x, y), (x_test, y_test) = data.load_digits()
    if name == "timedist_frames":
        return frames_task(x, y, 2048, 0), frames_task(x_test, y_test, 256, 1)
    return (x, y), (x_test, y_test)


def _compiled(model, learning_rate):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def measure(name):
    import keras

    from tfopt import export
    from tfopt import quantization

    (x, y), (x_test, y_test) = task(name)
    keras.utils.set_random_seed(0)
    model = _compiled(build(name), 1e-2)
    model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0)
    start = time.time()
    exported = export.to_tflite(model, quantization="int8", representative_data=x[:REPRESENTATIVE],
                                batch_size=1)
    rows = [_row("ptq-int8", exported.content, model, x_test, y_test, start)]
    start = time.time()
    try:
        keras.utils.set_random_seed(0)
        qat = _compiled(quantization.quantize_model(model), 1e-3)
        qat.fit(x, y, batch_size=32, epochs=QAT_EPOCHS, verbose=0)
        exported = export.to_tflite(qat, quantization="int8", batch_size=1)
        rows.append(_row("qat", exported.content, qat, x_test, y_test, start))
    except Exception as error:  # a refusal on an older tfopt: recorded, not raised
        nan = float("nan")
        rows.append({"recipe": "qat", "int8_ops": "refused",
                     "float_ops": f"{type(error).__name__}: {str(error)[:160]}".replace("|", "/"),
                     "top1_agreement": nan, "logit_error": nan, "logit_error_mean": nan,
                     "keras_accuracy": nan, "file_accuracy": nan, "seconds": round(time.time() - start, 1)})
    for row in rows:
        row["model"] = name
    return rows


def markdown(data):
    return rnn_int8.markdown(data, title="QAT int8 files of wrapper and recurrent layers")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--json", default=os.path.join(RESULTS, "qat_wrappers.json"))
    args = parser.parse_args(argv)
    import tfopt

    rows = []
    for name in args.models:
        for row in measure(name):
            rows.append(row)
            print(json.dumps(row), flush=True)
    rnn_int8.record(args.json, args.label, {
        "command": "python benchmarks/qat_wrappers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "tfopt": _checkout(os.path.dirname(os.path.dirname(os.path.abspath(tfopt.__file__)))),
        "machine": _cpu(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": f"{EPOCHS} float epochs at 1e-2, {QAT_EPOCHS} QAT epoch at 1e-3, batch 32, files at batch 1",
        "rows": rows,
    }, render=markdown)


if __name__ == "__main__":
    main()
