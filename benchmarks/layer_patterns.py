"""Coverage by layer pattern: small models of the layers users ship, every technique.

    python benchmarks/layer_patterns.py [--patterns bilstm,conv3d] [--out DIR]

The zoo (`benchmarks/zoo.py`) and `benchmarks/applications.py` take whole
architectures; this takes the layers and graph patterns one at a time, in
tiny models (a few hundred weights): separable and depthwise 1-D/2-D
convs, Conv3D, transposed convs, Bidirectional/SimpleRNN/GRU/LSTM,
TimeDistributed, GroupNormalization, PReLU/ELU/LeakyReLU, raw `keras.ops`
nodes (split, concatenate, mean, sigmoid gates), dot-product Attention,
MultiHeadAttention + LayerNormalization, nested models, a custom layer,
several inputs, several outputs. Each model trains one epoch on random
data (random labels: a coverage check, not an accuracy one), then goes
through:

- `prune-50`: `prune_low_magnitude` at 50% inside `fit`, stripped, exported
  float; the cell gives the sparsity of the prunable kernels.
- `qat-int8`: `quantize_model`, one epoch, exported int8 from its fake-quant
  ranges; the share of compute ops in int8, the ops left float, and the
  file's max |file - Keras| over the range of the Keras outputs.
- `channels-50`: `prune_channels(model, 0.5)`; weights before -> after.
- `ptq-int8`: post-training int8 (batch 1) calibrated on the training
  inputs; int8 share and the file's error like QAT's.

A cell is `ok: ...` or `refused: <the error tfopt raised>` (a
ValueError/TypeError raised by tfopt's own code: a clear refusal, by
design or a gap) or `FAILED: <error>` (anything else: an error inside
Keras, numpy or the converter, or a failed conversion: a bug). No tfmot column: its registry refuses most of
these layers outright (see the README's supported-layers tables, which
carry tfmot's verdict per layer).

Results: results.json / results.md in --out (default
benchmarks/results/layer_patterns), rewritten after each pattern.
"""

import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TECHNIQUES = ("prune-50", "qat-int8", "channels-50", "ptq-int8")
CLASSES = 4


def patterns():
    """name -> (description, builder) of every pattern model."""
    import keras
    from keras import layers as L
    from keras import ops

    def head(inputs, x):
        return keras.Model(inputs, L.Dense(CLASSES)(x))

    def separable_2d():
        i = keras.Input((16, 16, 3))
        x = L.SeparableConv2D(8, 3, activation="relu")(i)
        x = L.SeparableConv2D(8, 3, depth_multiplier=2)(x)
        return head(i, L.GlobalAveragePooling2D()(x))

    def depthwise_separable_1d():
        i = keras.Input((32, 4))
        x = L.Conv1D(8, 3)(i)
        x = L.DepthwiseConv1D(3)(x)
        x = L.SeparableConv1D(8, 3)(x)
        return head(i, L.GlobalMaxPooling1D()(x))

    def conv3d():
        i = keras.Input((8, 8, 8, 2))
        x = L.Conv3D(4, 3, activation="relu")(i)
        return head(i, L.GlobalAveragePooling3D()(x))

    def conv_transpose_1d():
        i = keras.Input((16, 4))
        x = L.Conv1D(8, 3, strides=2, padding="same")(i)
        x = L.Conv1DTranspose(8, 3, strides=2, padding="same")(x)
        return head(i, L.GlobalAveragePooling1D()(x))

    def conv_transpose_2d():
        i = keras.Input((8, 8, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
        x = L.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
        x = L.UpSampling2D()(x)
        return head(i, L.GlobalAveragePooling2D()(x))

    def bidirectional_lstm():
        i = keras.Input((10,), dtype="int32")
        x = L.Embedding(20, 8)(i)
        return head(i, L.Bidirectional(L.LSTM(8))(x))

    def simple_rnn_gru():
        i = keras.Input((10, 3))
        x = L.SimpleRNN(8, return_sequences=True)(i)
        return head(i, L.GRU(8)(x))

    def time_distributed():
        i = keras.Input((5, 8))
        x = L.TimeDistributed(L.Dense(6, activation="relu"))(i)
        return head(i, L.Flatten()(x))

    def group_norm():
        i = keras.Input((16, 16, 3))
        x = L.Conv2D(8, 3)(i)
        x = L.GroupNormalization(groups=2)(x)
        x = L.Activation("relu")(x)
        return head(i, L.GlobalAveragePooling2D()(x))

    def prelu_elu():
        i = keras.Input((12,))
        x = L.PReLU()(L.Dense(16)(i))
        x = L.LeakyReLU()(x)
        x = L.ELU()(L.Dense(8)(x))
        return head(i, x)

    def ops_split_gate():
        i = keras.Input((16, 16, 3))
        x = L.Conv2D(8, 3, padding="same")(i)
        a, b = ops.split(x, 2, axis=-1)
        x = ops.concatenate([ops.relu(a), ops.sigmoid(b) * a], axis=-1)
        return head(i, ops.mean(x, axis=(1, 2)))

    def ops_hard_swish():
        i = keras.Input((16, 16, 3))
        x = L.Conv2D(8, 3)(i)
        x = x * ops.relu6(x + 3.0) / 6.0
        x = L.Conv2D(8, 1)(x)
        return head(i, ops.mean(x, axis=(1, 2)))

    def dot_attention():
        i = keras.Input((6, 8))
        q = L.Dense(8)(i)
        x = L.Attention()([q, i])
        return head(i, L.GlobalAveragePooling1D()(x))

    def mha_layernorm():
        i = keras.Input((6, 8))
        x = L.MultiHeadAttention(2, 4)(i, i)
        x = L.LayerNormalization()(L.Add()([x, i]))
        x = L.Dense(8)(L.Dense(16, activation="gelu")(x))
        return head(i, ops.mean(x, axis=1))

    def pool_pad_crop():
        i = keras.Input((16, 16, 3))
        x = L.ZeroPadding2D(1)(i)
        x = L.Cropping2D(1)(L.Conv2D(8, 3)(x))
        x = L.AveragePooling2D(2)(x)
        x = L.MaxPooling2D(2)(L.Conv2D(8, 1, activation="relu6")(x))
        return head(i, L.Flatten()(x))

    def nested_models():
        inner = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(8)],
                                 name="inner")
        i = keras.Input((8,))
        return head(i, L.Dense(8, activation="relu")(inner(i)))

    def custom_layer():
        @keras.saving.register_keras_serializable(package="layer_patterns")
        class ChannelScale(L.Layer):
            def build(self, shape):
                self.gamma = self.add_weight(shape=(shape[-1],), initializer="ones")

            def call(self, x):
                return x * self.gamma

        i = keras.Input((8,))
        x = ChannelScale()(L.Dense(8)(i))
        return head(i, L.Dense(8, activation="relu")(x))

    def two_inputs():
        a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
        x = L.Concatenate()([L.Dense(8, activation="relu")(a), L.Dense(8, activation="relu")(b)])
        return head([a, b], x)

    def two_outputs():
        i = keras.Input((16, 16, 3))
        x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(i))
        return keras.Model(i, [L.Dense(CLASSES, name="cls")(x), L.Dense(4, name="box")(x)])

    def dense_3d_permute():
        i = keras.Input((6, 8))
        x = L.Permute((2, 1))(L.Dense(8, activation="relu")(i))
        return head(i, L.Reshape((48,))(L.Dense(6)(x)))

    return {
        "separable_2d": ("SeparableConv2D, depth_multiplier 1 and 2", separable_2d),
        "depthwise_separable_1d": ("Conv1D, DepthwiseConv1D, SeparableConv1D",
                                   depthwise_separable_1d),
        "conv3d": ("Conv3D, GlobalAveragePooling3D", conv3d),
        "conv_transpose_1d": ("Conv1D stride 2, Conv1DTranspose", conv_transpose_1d),
        "conv_transpose_2d": ("Conv2DTranspose, UpSampling2D", conv_transpose_2d),
        "bidirectional_lstm": ("Embedding, Bidirectional(LSTM)", bidirectional_lstm),
        "simple_rnn_gru": ("SimpleRNN (sequences), GRU", simple_rnn_gru),
        "time_distributed": ("TimeDistributed(Dense)", time_distributed),
        "group_norm": ("Conv2D, GroupNormalization", group_norm),
        "prelu_elu": ("PReLU, LeakyReLU, ELU", prelu_elu),
        "ops_split_gate": ("keras.ops split, concatenate, sigmoid gate, mean", ops_split_gate),
        "ops_hard_swish": ("hard-swish written as keras.ops (x * relu6(x + 3) / 6)",
                           ops_hard_swish),
        "dot_attention": ("Attention (dot-product)", dot_attention),
        "mha_layernorm": ("MultiHeadAttention, Add, LayerNormalization, GELU MLP", mha_layernorm),
        "pool_pad_crop": ("ZeroPadding2D, Cropping2D, AveragePooling2D, MaxPooling2D, relu6",
                          pool_pad_crop),
        "nested_models": ("a Sequential inside a Functional model", nested_models),
        "custom_layer": ("a user's layer with a weight, no QuantizeConfig", custom_layer),
        "two_inputs": ("two inputs, Concatenate", two_inputs),
        "two_outputs": ("two outputs (class + box heads)", two_outputs),
        "dense_3d_permute": ("Dense on 3-D input, Permute, Reshape", dense_3d_permute),
    }


def data_for(model, n=64, seed=0):
    """Random inputs (token ids for int inputs) and random labels."""
    import keras

    rng = np.random.default_rng(seed)
    xs = []
    for tensor in keras.tree.flatten(model.inputs):
        shape = (n, *tensor.shape[1:])
        if "int" in str(tensor.dtype):
            xs.append(rng.integers(0, 20, size=shape).astype("int32"))
        else:
            xs.append(rng.normal(size=shape).astype("float32"))
    x = xs if len(xs) > 1 else xs[0]
    ys = [rng.integers(0, CLASSES, size=n) if out.shape[-1] == CLASSES
          else rng.normal(size=(n, *out.shape[1:])).astype("float32")
          for out in keras.tree.flatten(model.outputs)]
    return x, (ys if len(ys) > 1 else ys[0])


def fit(model, x, y, callbacks=()):
    import keras

    outputs = keras.tree.flatten(model.outputs)
    losses = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)
              if out.shape[-1] == CLASSES else "mse" for out in outputs]
    model.compile("adam", losses if len(losses) > 1 else losses[0])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=list(callbacks))
    return model


def file_error(exported, model, x):
    """max |file - Keras| over the range of the Keras outputs (worst output)."""
    from tfopt import export

    reports = export.verify(exported, model, x)
    reports = reports.get("outputs", [reports])
    reference = model.predict(x, verbose=0)
    reference = reference if isinstance(reference, list) else [reference]
    return max(r["max_abs_diff"] / (float(np.ptp(ref)) or 1.0)
               for r, ref in zip(reports, reference))


def precision_text(content):
    from tfopt import export

    info = export.op_precision(content)
    text = f"int8 {info['int8_compute_ops']}/{info['compute_ops']}"
    floats = {**info.get("float_compute", {})}
    if floats:
        text += ", float: " + ", ".join(f"{op} x{n}" for op, n in sorted(floats.items()))
    return text


def run_pattern(builder):
    """{technique: cell} for one pattern model."""
    import keras

    from tfopt import export
    from tfopt import pruning
    from tfopt import quantization

    keras.utils.set_random_seed(0)
    base = builder()
    x, y = data_for(base)
    fit(base, x, y)
    cells = {}

    def prune():
        wrapped = pruning.prune_low_magnitude(
            keras.models.clone_model(base),
            pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
        fit(wrapped, x, y, [pruning.UpdatePruningStep()])
        stripped = pruning.strip_pruning(wrapped)
        export.to_tflite(stripped)
        layers = pruning.sparsity_report(wrapped)["layers"]
        zeros = sum(r["zeros"] for r in layers)
        size = sum(r["size"] for r in layers)
        return f"sparsity {zeros / max(size, 1):.3f} of {size} weights"

    def qat():
        model = fit(quantization.quantize_model(base), x, y)
        exported = export.to_tflite(model, quantization="int8")
        return f"{precision_text(exported.content)}, err {file_error(exported, model, x):.3f}"

    def channels():
        small = pruning.prune_channels(base, 0.5)
        return f"weights {base.count_params()} -> {small.count_params()}"

    def ptq():
        exported = export.to_tflite(base, quantization="int8", representative_data=x,
                                    batch_size=1)
        return f"{precision_text(exported.content)}, err {file_error(exported, base, x):.3f}"

    for technique, run in zip(TECHNIQUES, (prune, qat, channels, ptq)):
        try:
            cells[technique] = "ok: " + run()
        except (ValueError, TypeError) as error:
            # A refusal is tfopt's own error; a ValueError raised inside Keras,
            # numpy or the converter is a failure like any other.
            frames = traceback.extract_tb(error.__traceback__)
            own = bool(frames) and f"{os.sep}tfopt{os.sep}" in frames[-1].filename
            kind = "refused" if own and type(error).__name__ != "ConversionError" else "FAILED"
            cells[technique] = f"{kind}: {type(error).__name__}: {_short(error)}"
        except Exception as error:  # noqa: BLE001 - recorded: an internal error is a bug
            cells[technique] = f"FAILED: {type(error).__name__}: {_short(error)}"
    return cells


def _short(error, limit=220):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + "..."


def write(results, out):
    from tfopt.report import machine_line

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    env = results["environment"]
    lines = [
        "# Coverage by layer pattern", "",
        f"Command: `{results['command']}`  ",
        f"Machine: {machine_line(env)}", "",
        "Tiny models, one epoch on random data; `err` = max |file - Keras| over the range of "
        "the Keras outputs (worst output), `int8 k/n` = compute ops in int8 / all. "
        "`refused` = a clear tfopt error (by design or a gap); `FAILED` = a conversion "
        "failure or internal error. See the script's docstring.", "",
        "| pattern | layers | " + " | ".join(TECHNIQUES) + " |",
        "|---|---|" + "---|" * len(TECHNIQUES),
    ]
    for name, row in results["patterns"].items():
        cells = [row["cells"].get(t, "").replace("|", "/") for t in TECHNIQUES]
        lines.append(f"| {name} | {row['description']} | " + " | ".join(cells) + " |")
    counts = {t: sum(r["cells"].get(t, "").startswith("ok") for r in results["patterns"].values())
              for t in TECHNIQUES}
    total = len(results["patterns"])
    lines += ["", "Works: " + ", ".join(f"{t} {counts[t]}/{total}" for t in TECHNIQUES) + "."]
    with open(os.path.join(out, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", default="", help="comma-separated names (default all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                      "layer_patterns"))
    args = parser.parse_args(argv)
    from tfopt import report

    table = patterns()
    names = [p for p in args.patterns.split(",") if p] or list(table)
    unknown = [p for p in names if p not in table]
    if unknown:
        raise SystemExit(f"layer_patterns.py: unknown pattern(s) {unknown}; "
                         f"choose from {list(table)}")
    command = "python benchmarks/layer_patterns.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    results = {"command": command.strip(), "environment": report.environment(), "patterns": {}}
    for name in names:
        description, builder = table[name]
        start = time.perf_counter()
        cells = run_pattern(builder)
        results["patterns"][name] = {"description": description, "cells": cells,
                                     "seconds": round(time.perf_counter() - start, 1)}
        for technique in TECHNIQUES:
            print(f"{name:24} {technique:12} {cells[technique][:150]}", flush=True)
        results["environment"] = report.environment()
        write(results, args.out)


if __name__ == "__main__":
    main()
