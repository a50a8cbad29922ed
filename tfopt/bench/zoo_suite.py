"""The `zoo` suite: every technique on every `tfopt.zoo` model.

Each zoo model is trained briefly on its small task, then each recipe
(float, PTQ int8 at batch 1 and batch N, magnitude pruning 50%/80% inside
`fit`, QAT int8, channel pruning 50%, tfmot's pruning and QAT on tf_keras
in a subprocess) makes its own file; a recipe that fails is recorded with
its reason and the others go on (the harness catches each row).

Columns added to the harness's (bytes, gzip, p50 and their ratios to the
float row): `keras_accuracy`, `tflite_accuracy`, `top1_agreement` (argmax
of the file vs its own Keras model, over every position of the first
output: classes, or mask pixels for the U-Net), `max_abs_diff` (over all
outputs), `logit_err_range` and `logit_err_rms` (the first output's error
relative to its logits' range and RMS: unlike agreement, they do not flip
on near-ties), `int8_share` with `int8_ops` ("k/n" compute ops int8) and
`float_ops` (ops left float), `sparsity`, `params_vs_float`.
"""

import dataclasses
import os
import time
from typing import Optional

import keras
import numpy as np

from tfopt import export
from tfopt import pipeline
from tfopt import pruning
from tfopt import quantization
from tfopt import zoo
from tfopt.bench.harness import Artifact
from tfopt.bench.harness import Case
from tfopt.bench.harness import Recipe

from tfopt.defaults import BATCH_SIZE
EPOCHS = 1
N_TRAIN = 384
N_TEST = 128
REPRESENTATIVE = 128
BATCH_N = 8          # the "batch N" PTQ row
# int8 conversions run in a child process: a converter crash on one model
# becomes that cell's failure instead of ending the run (about 5 s each).
ISOLATE_INT8 = True
SETTINGS = dict(warmup=10, runs=100, min_seconds=0.5, latency_rounds=3)


@dataclasses.dataclass(frozen=True)
class Budget:
    """How a zoo model is trained in the suite.

    Attributes:
        epochs: Epochs of the base (float) model.
        finetune_epochs: Epochs of each recipe that trains (pruning, QAT,
            channel pruning; tfmot's rows too).
        n_train: Training examples (the digits tasks have at most 1437).
        n_test: Held-out examples for agreement and accuracy (digits: at
            most 360).
        bn_momentum: Momentum of BatchNormalization's moving statistics
            (`tfopt.zoo.build`); None keeps the architecture's (0.99-0.9997,
            too slow for a short training: inference-mode accuracy stays
            near chance).
    """

    epochs: int
    finetune_epochs: int
    n_train: int
    n_test: int = 360
    bn_momentum: Optional[float] = 0.9


# One entry per zoo model: a budget that reaches a non-trivial held-out
# accuracy at 32x32 within minutes on 2 shared cores. Measured learning
# curves: benchmarks/results/zoo_budget/results.md (the hand-built nets) and
# benchmarks/results/qat_accuracy.md (the applications it trains); the other
# applications take the same budget as their measured relatives.
BUDGETS = {
    "mobilenet_v2": Budget(8, 2, 1437),
    "mobilenet_v3_small": Budget(8, 2, 1437),
    "mobilenet_v3_large": Budget(8, 2, 1437),
    "efficientnet_b0": Budget(8, 2, 1437),
    "efficientnet_v2_b0": Budget(8, 2, 1437),
    "resnet50": Budget(8, 2, 1437),
    "densenet121": Budget(8, 2, 1437),
    "convnext_tiny": Budget(8, 2, 1437),
    "nasnet_mobile": Budget(8, 2, 1437),
    "vit_tiny": Budget(12, 3, 1437),       # 0.90 at epoch 9-12
    "bert_tiny": Budget(3, 1, 4096),       # 1.00 from epoch 1
    "lstm_text": Budget(10, 2, 4096),      # 0.99 from epoch 5, 1.00 at 10
    "gru_text": Budget(8, 2, 4096),        # 0.99 from epoch 5
    "kws_conv1d": Budget(2, 1, 4096),      # 1.00 from epoch 1
    "unet": Budget(4, 1, 1437),            # per-pixel 0.988 at epoch 4, 0.994 at 12
    "detection_head": Budget(8, 2, 1437),  # 0.90 from epoch 6
}


def budget(name, epochs=None, n_train=None, n_test=None):
    """The training budget of zoo model `name`.

    Args:
        name: A `tfopt.zoo` model name.
        epochs: If given, a uniform budget instead of the `BUDGETS` entry:
            `epochs` for the base model and every recipe, the
            architecture's own BatchNormalization momentum (the settings of
            the first zoo run).
        n_train: Overrides the training examples (default: the entry's,
            or `N_TRAIN` with `epochs`).
        n_test: Overrides the held-out examples (default: the entry's, or
            `N_TEST` with `epochs`).

    Returns:
        A `Budget`.

    Raises:
        ValueError: For an unknown model name or a negative count.
    """
    zoo._entry(name)
    for label, value in (("epochs", epochs), ("n_train", n_train), ("n_test", n_test)):
        if value is not None and value < 0:
            raise ValueError(f"{label} must be >= 0, got {value}.")
    if epochs is not None:
        return Budget(epochs, epochs, n_train or N_TRAIN, n_test or N_TEST, None)
    entry = BUDGETS[name]
    return dataclasses.replace(entry, n_train=n_train or entry.n_train,
                               n_test=n_test or entry.n_test)


def budget_markdown(budgets):
    """A table of `{model: Budget}`."""
    lines = ["| model | base epochs | recipe epochs | train examples | test examples "
             "| BN momentum |", "|---|---|---|---|---|---|"]
    for name, entry in budgets.items():
        entry = entry if isinstance(entry, Budget) else Budget(**entry)
        momentum = "architecture's" if entry.bn_momentum is None else entry.bn_momentum
        lines.append(f"| {name} | {entry.epochs} | {entry.finetune_epochs} | {entry.n_train} "
                     f"| {entry.n_test} | {momentum} |")
    return "\n".join(lines)


class ZooData(tuple):
    """`(x, y, x_test, None)` for the harness (which then leaves accuracy to
    the recipes, as zoo labels are not always class ids), with the real
    test labels in `.y_test` and the model name in `.name`."""

    def __new__(cls, x, y, x_test, y_test, name):
        data = super().__new__(cls, (x, y, x_test, None))
        data.y_test = y_test
        data.name = name
        return data


# -- running a file ----------------------------------------------------------


def _run_tflite(content, x):
    """Outputs of a TFLite file on `x` (list, in the Keras output order)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    runner = interpreter.get_signature_runner()
    input_name = next(iter(runner.get_input_details()))
    input_details = runner.get_input_details()[input_name]
    batch = int(input_details["shape_signature"][0])
    # Keras exports outputs as output_0, output_1, ... in model order.
    keys = sorted(runner.get_output_details(), key=lambda k: int(k.rsplit("_", 1)[-1])
                  if k.rsplit("_", 1)[-1].isdigit() else k)
    step = batch if batch > 0 else min(len(x), 64)
    chunks = []
    for start in range(0, len(x), step):
        part = x[start:start + step]
        n = len(part)
        if batch > 0 and n < batch:
            part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
        result = runner(**{input_name: part.astype(input_details["dtype"])})
        chunks.append([np.asarray(result[k])[:n] for k in keys])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(keys))]


def _keras_outputs(model, x):
    out = model.predict(x, batch_size=64, verbose=0)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _labels(y):
    return y[0] if isinstance(y, tuple) else y


def compare(content, keras_model, data):
    """Agreement and accuracy of a TFLite file with its Keras model.

    Returns:
        A dict: `top1_agreement`, `max_abs_diff`, `keras_accuracy`,
        `tflite_accuracy` (argmax of the first output; for the U-Net, per
        pixel).
    """
    x = data[2]
    labels = _labels(data.y_test)
    ours, theirs = _run_tflite(content, x), _keras_outputs(keras_model, x)
    if len(ours) != len(theirs):
        raise ValueError(f"the file has {len(ours)} outputs, the Keras model {len(theirs)}")
    columns = {"max_abs_diff": float(max(np.max(np.abs(a.astype("float32") - b))
                                         for a, b in zip(ours, theirs)))}
    columns.update(logit_errors(ours[0], theirs[0]))
    first_file, first_keras = ours[0].argmax(-1), theirs[0].argmax(-1)
    columns["top1_agreement"] = float(np.mean(first_file == first_keras))
    columns["keras_accuracy"] = float(np.mean(first_keras == labels))
    columns["tflite_accuracy"] = float(np.mean(first_file == labels))
    return columns


def logit_errors(file_logits, keras_logits):
    """The file's logit error relative to the Keras model's logits.

    Returns:
        `{"logit_err_range": max|file - keras| / (max - min of keras),
        "logit_err_rms": ||file - keras|| / ||keras||}` (0 when the Keras
        logits are constant).
    """
    ours = np.asarray(file_logits, "float64")
    theirs = np.asarray(keras_logits, "float64")
    error = ours - theirs
    spread = float(theirs.max() - theirs.min())
    norm = float(np.sqrt(np.mean(theirs ** 2)))
    return {
        "logit_err_range": float(np.max(np.abs(error)) / spread) if spread > 0 else 0.0,
        "logit_err_rms": float(np.sqrt(np.mean(error ** 2)) / norm) if norm > 0 else 0.0,
    }


# Why an op stays float, where it is known (else the converter left it float
# although TFLite has an int8 kernel: an island for the QAT/PTQ work to close).
FLOAT_REASONS = {
    # tensorflow/lite/kernels/neg.cc: float32, int32, int64 only.
    "NEG": "no int8 kernel (LayerNormalization's lowering)",
}


def _precision_columns(content):
    precision = export.op_precision(content)
    floats = {**precision["float_compute"], **precision["float_other"]}
    described = [f"{op} x{n}" + (f" ({FLOAT_REASONS[op]})" if op in FLOAT_REASONS else "")
                 for op, n in sorted(floats.items())]
    return {
        "int8_share": precision["int8_share"],
        "int8_ops": f"{precision['int8_compute_ops']}/{precision['compute_ops']}",
        "float_ops": ", ".join(described) or "none",
    }


def _artifact(model_for_file, data, exported, extra=None, int8=False):
    extra = dict(extra or {})
    extra.update(compare(exported.content, model_for_file, data))
    if int8:
        extra.update(_precision_columns(exported.content))
    # keras_model=None: the harness then takes the accuracy columns from here.
    return Artifact(exported, None, keras_accuracy=extra.pop("keras_accuracy"), extra=extra)


def _path(workdir, data, recipe):
    return os.path.join(workdir, f"{data.name}-{recipe}.tflite")


# -- recipes -------------------------------------------------------------------


def float_recipe():
    def make(model, data, workdir):
        exported = export.to_tflite(model, _path(workdir, data, "float"), batch_size=1)
        return _artifact(model, data, exported)

    return Recipe("float", make, group="float")


def ptq_int8_recipe(batch_size=1):
    name = f"ptq-int8 b{batch_size}"

    def make(model, data, workdir):
        exported = export.to_tflite(
            model, _path(workdir, data, f"ptq-int8-b{batch_size}"), quantization="int8",
            representative_data=data[0][:REPRESENTATIVE], batch_size=batch_size,
            isolate=ISOLATE_INT8)
        return _artifact(model, data, exported, int8=True)

    return Recipe(name, make, group="ptq")


def prune_recipe(target, epochs=EPOCHS):
    """Magnitude pruning to `target` inside `fit` (reached at 3/4 of the steps)."""

    def make(model, data, workdir):
        x, y = data[0], data[1]
        steps = int(np.ceil(len(x) / BATCH_SIZE))
        end = max(1, int(0.75 * steps * epochs))
        schedule = pruning.PolynomialDecay(0.0, target, 0, end, frequency=1)
        keras.utils.set_random_seed(0)
        wrapped = pruning.prune_low_magnitude(model, pruning_schedule=schedule)
        zoo.compile_model(wrapped)
        wrapped.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0,
                    callbacks=[pruning.UpdatePruningStep()])
        final = pruning.strip_pruning(wrapped)
        sparsity = pruning.sparsity_report(final)["total"]["sparsity"]
        exported = export.to_tflite(final, _path(workdir, data, f"prune-{round(target * 100)}"),
                                    batch_size=1)
        return _artifact(final, data, exported, {"sparsity": sparsity})

    return Recipe(f"prune-{round(target * 100)}", make, group="pruning")


def qat_recipe(epochs=EPOCHS):
    def make(model, data, workdir):
        x, y = data[0], data[1]
        keras.utils.set_random_seed(0)
        # Adam from defaults.QAT_LEARNING_RATE annealed to 0 (defaults.QAT_DECAY).
        rate = pipeline.qat_learning_rate(x, epochs, batch_size=BATCH_SIZE)
        qat = zoo.compile_model(quantization.quantize_model(model), rate)
        qat.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
        exported = export.to_tflite(qat, _path(workdir, data, "qat-int8"), quantization="int8",
                                    batch_size=1, isolate=ISOLATE_INT8)
        return _artifact(qat, data, exported, int8=True)

    return Recipe("qat-int8", make, group="qat")


def channel_recipe(ratio=0.5, epochs=EPOCHS):
    def make(model, data, workdir):
        small = pruning.prune_channels(model, ratio)
        keras.utils.set_random_seed(0)
        zoo.compile_model(small).fit(data[0], data[1], batch_size=BATCH_SIZE, epochs=epochs,
                                     verbose=0)
        exported = export.to_tflite(small, _path(workdir, data, f"channels-{round(ratio * 100)}"),
                                    batch_size=1)
        return _artifact(small, data, exported,
                         {"params_vs_float": small.count_params() / model.count_params()})

    return Recipe(f"channels-{round(ratio * 100)}", make, group="structured")


def tfmot_recipe(technique, epochs=EPOCHS, finetune_epochs=None, bn_momentum=None):
    """tfmot 0.8.1 on tf_keras (benchmarks/tfmot_zoo.py, a subprocess), same architecture.

    One subprocess per model runs both techniques (its result is kept on
    the case's data for the second row): it trains the base model for
    `epochs`, then each technique for `finetune_epochs` (default `epochs`).
    """
    name = {"prune": "tfmot-prune-50", "qat": "tfmot-qat-int8"}[technique]

    def make(model, data, workdir):
        if getattr(data, "tfmot", None) is None:
            data.tfmot = run_tfmot_zoo(data, epochs, workdir, finetune_epochs=finetune_epochs,
                                       bn_momentum=bn_momentum)
        result = data.tfmot.get(technique, {"status": "failed", "reason": "not run"})
        if result["status"] != "ok":
            raise RuntimeError(f"tfmot: {result['reason']}")
        extra = {key: result.get(key) for key in ("tflite_accuracy", "top1_agreement", "sparsity",
                                                  "logit_err_range", "logit_err_rms")}
        if technique == "qat":
            with open(result["tflite_path"], "rb") as handle:
                extra.update(_precision_columns(handle.read()))
        return Artifact(result["tflite_path"], None, keras_accuracy=result.get("keras_accuracy"),
                        extra=extra)

    return Recipe(name, make, group="baseline")


def run_tfmot_zoo(data, epochs, workdir, techniques=("prune", "qat"), finetune_epochs=None,
                  bn_momentum=None):
    """Runs benchmarks/tfmot_zoo.py on a case's task; returns {technique: result}."""
    import json
    import subprocess
    import sys
    import tempfile

    from tfopt.bench.suites import _baseline_script

    script = _baseline_script("tfmot_zoo.py")
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "task.npz")
        y = data[1]
        arrays = dict(x=data[0], x_test=data[2], y_test=_labels(data.y_test))
        if isinstance(y, tuple):
            arrays.update(y=y[0], y_boxes=y[1])
        else:
            arrays["y"] = y
        np.savez(npz, **arrays)
        out = os.path.join(tmp, "result.json")
        command = [sys.executable, script, "--model", data.name, "--data", npz,
                   "--techniques", ",".join(techniques), "--epochs", str(epochs),
                   "--batch-size", str(BATCH_SIZE), "--tflite-dir", workdir, "--out", out]
        if finetune_epochs is not None:
            command += ["--finetune-epochs", str(finetune_epochs)]
        if bn_momentum is not None:
            command += ["--bn-momentum", str(bn_momentum)]
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
        if not os.path.isfile(out):
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            reason = f"tfmot_zoo.py exited {done.returncode}: {tail}"
            return {t: {"status": "failed", "reason": reason} for t in techniques}
        with open(out) as handle:
            return json.load(handle)


# -- the suite -------------------------------------------------------------------


def recipes(epochs=EPOCHS, tfmot=True, base_epochs=None, bn_momentum=None):
    """The zoo's recipes, in table order.

    Args:
        epochs: Training epochs of each recipe that trains.
        tfmot: Include the tfmot rows.
        base_epochs: Epochs of tfmot's own base model (default `epochs`).
        bn_momentum: BatchNormalization momentum of tfmot's base model.

    Returns:
        A list of `Recipe`s.
    """
    rows = [float_recipe(), ptq_int8_recipe(1), ptq_int8_recipe(BATCH_N),
            prune_recipe(0.5, epochs), prune_recipe(0.8, epochs), qat_recipe(epochs),
            channel_recipe(0.5, epochs)]
    if tfmot:
        base = epochs if base_epochs is None else base_epochs
        rows += [tfmot_recipe(t, base, epochs, bn_momentum) for t in ("prune", "qat")]
    return rows


def _build_case(name, plan):
    def build():
        start = time.perf_counter()
        model = zoo.build(name, bn_momentum=plan.bn_momentum)
        (x, y), (x_test, y_test) = zoo.task(name, plan.n_train, plan.n_test)
        keras.utils.set_random_seed(0)
        zoo.compile_model(model).fit(x, y, batch_size=BATCH_SIZE, epochs=plan.epochs, verbose=0)
        model.train_seconds = time.perf_counter() - start
        return model, ZooData(x, y, x_test, y_test, name)

    return build


def cases(models=None, epochs=None, n_train=None, n_test=None, tfmot=True):
    """The zoo suite's cases.

    Args:
        models: Zoo model names (default: all of `tfopt.zoo.names()`).
        epochs: None: each model's `BUDGETS` entry. A number: that many
            epochs for the base model and every recipe (see `budget`).
        n_train: Training examples (default: from the budget).
        n_test: Test examples for agreement and accuracy (default: from
            the budget).
        tfmot: Include the tfmot side-by-side rows.

    Returns:
        A list of `Case`s.

    Raises:
        ValueError: For an unknown model name.
    """
    models = list(models or zoo.names())
    # Unknown names and bad counts fail here, before any training.
    plans = {name: budget(name, epochs, n_train, n_test) for name in models}
    return [Case(name, _build_case(name, plan),
                 recipes(plan.finetune_epochs, tfmot, plan.epochs, plan.bn_momentum),
                 zoo.MODELS[name].description) for name, plan in plans.items()]


def summary_markdown(rows, models):
    """One table: a row per model, a cell per recipe ("ok ..." or the failure)."""
    names = []
    for row in rows:
        if row["recipe"] not in names:
            names.append(row["recipe"])
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for model in models:
        cells = []
        for recipe in names:
            row = next((r for r in rows if r["model"] == model and r["recipe"] == recipe), None)
            cells.append(_cell(row))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row):
    if row is None:
        return ""
    if row["status"] != "ok":
        return "**failed**: " + row.get("reason", "").splitlines()[0][:160].replace("|", "/")
    parts = []
    if row.get("int8_ops"):
        parts.append(f"int8 {row['int8_ops']}")
        if row.get("float_ops") not in (None, "none"):
            parts.append(f"float: {row['float_ops']}")
    if row.get("sparsity") is not None:
        parts.append(f"sparsity {row['sparsity']:.3f}")
    if row.get("top1_agreement") is not None:
        parts.append(f"agree {row['top1_agreement']:.3f}")
    if row.get("logit_err_range") is not None and row.get("recipe") != "float":
        parts.append(f"logit err {100 * row['logit_err_range']:.1f}% range "
                     f"/ {100 * row['logit_err_rms']:.1f}% rms")
    if row.get("tflite_accuracy") is not None:
        parts.append(f"acc {row['tflite_accuracy']:.3f}")
    parts.append(f"{row['size_bytes'] / 1e6:.2f} MB")
    if row.get("p50_vs_float") is not None:
        parts.append(f"p50 x{row['p50_vs_float']:.2f}")
    return "ok: " + ", ".join(parts)
