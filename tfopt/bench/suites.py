"""The benchmark suites: which models, which recipes.

A suite is a declarative table (`TABLE`): one `SuiteRow` per model, with its
recipes and the suites it belongs to. `quick` is the README's main job (a few
minutes on 2 cores); `standard` adds the full-size MobileNetV2 and the 28x28
digits and times longer. Models with no labels (MobileNetV2 with random
weights, `weights=None` as nothing is downloaded) are measured for size,
latency and agreement with Keras only.

Every recipe runs through `tfopt.pipeline` (train, prune, QAT, export) with
`tfopt.defaults`. The tfmot baselines run scripts that import tf_keras and
tfmot, which tfopt never does: they live outside the package (the source
checkout's `benchmarks/`), and a suite finds them only when given their
directory (`baselines=`, `tfopt bench --baselines DIR` or the
`TFOPT_BASELINES` environment variable); without one, those rows are
reported `skipped: no baselines directory given`.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import weakref
from typing import Callable

import keras
import numpy as np

from tfopt import data as data_lib
from tfopt import export
from tfopt import pipeline
from tfopt import pruning
from tfopt import quantization
from tfopt.bench.harness import Skipped
from tfopt.bench.training import step_time_ratio
from tfopt.pipeline import KD_ALPHA
from tfopt.pipeline import KD_TEMPERATURE
from tfopt.models import compile_classifier
from tfopt.models import digits_cnn
from tfopt.models import digits_mlp
from tfopt.models import digits_mobilenet
from tfopt.models import digits_teacher
from tfopt.bench.harness import Artifact
from tfopt.bench.harness import Case
from tfopt.bench.harness import Recipe

from tfopt.defaults import BATCH_SIZE
from tfopt.defaults import EXPORT_BATCH
from tfopt.defaults import QAT_DECAY
from tfopt.defaults import QAT_LEARNING_RATE
from tfopt.defaults import REPRESENTATIVE_EXAMPLES


# -- models -----------------------------------------------------------------


def _trained(build, image_size, epochs, seed=0):
    def make():
        keras.utils.set_random_seed(seed)
        (x, y), (x_test, y_test) = data_lib.load_digits(image_size)
        model = pipeline.train(build(), x, y, epochs)
        return model, (x, y, x_test, y_test)

    return make


def _mobilenet(alpha, size, seed=0):
    def make():
        keras.utils.set_random_seed(seed)
        model = keras.applications.MobileNetV2(
            input_shape=(size, size, 3), alpha=alpha, weights=None, classes=10
        )
        rng = np.random.default_rng(seed)
        # Random weights, random images: enough for size, latency and
        # agreement; accuracy needs a trained model (not downloadable here).
        x = rng.normal(size=(REPRESENTATIVE_EXAMPLES, size, size, 3)).astype("float32")
        x_test = rng.normal(size=(32, size, size, 3)).astype("float32")
        return model, (x, None, x_test, None)

    return make


# -- recipes ----------------------------------------------------------------


def _path(workdir, model, recipe):
    safe = recipe.replace(" ", "_").replace(":", "of").replace("+", "")
    return os.path.join(workdir, f"{model.name}-{safe}.tflite")


def float_recipe():
    def make(model, data, workdir):
        return Artifact(pipeline.export(model, _path(workdir, model, "float")), model)

    return Recipe("float", make, group="float")


def ptq_recipe(mode):
    def make(model, data, workdir):
        exported = pipeline.export(model, _path(workdir, model, f"ptq-{mode}"), quantization=mode,
                                   representative_data=data[0])
        return Artifact(exported, model)

    return Recipe(f"ptq-{mode}", make, group="ptq")


# One cache of the trained intermediate models a case's recipes share (a
# "+sparsity" row reuses its plain row's pruning, "+kd" rows one student,
# structured rows one channel-pruned model), per case model; weak keys let a
# finished case's models be freed.
_CACHE = weakref.WeakKeyDictionary()


def _cached(model, key, make):
    """`make()` once per (case model, key)."""
    entries = _CACHE.setdefault(model, {})
    if key not in entries:
        entries[key] = make()
    return entries[key]


def _pruned_model(model, data, target, pattern, epochs):
    return _cached(model, ("pruned", target, pattern, epochs),
                   lambda: _prune(model, target, pattern, epochs, data))


_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
              keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def prunable_layer_names(model, include_depthwise=False):
    """Names of the layers the suites prune: every prunable layer but depthwise ones.

    A depthwise kernel holds a few weights per channel (9 for 3x3) that each
    carry a whole channel, and is a small share of the weights, so pruning
    it costs accuracy for little size. Separable convolutions are left whole
    too (their wrapper would prune the depthwise kernel with the pointwise).

    Args:
        model: A built Keras model (nested models are entered).
        include_depthwise: Also prune depthwise/separable layers.

    Returns:
        Layer names for `tfopt.pruning.prune_low_magnitude(..., layers=...)`.
    """
    return [layer.name for layer, _ in pruning.prunable_weights(model)
            if include_depthwise or not isinstance(layer, _DEPTHWISE)]


def _prune(model, target, pattern, epochs, data):
    x, y = data[0], data[1]
    labelled = pipeline.has_labels(x, y)
    example = pipeline.model_example_shape(model)
    steps = pipeline.steps_per_epoch(x, example_shape=example) if labelled else None
    keras.utils.set_random_seed(0)
    kwargs = {"layers": prunable_layer_names(model)}
    if pattern == "2:4":
        kwargs["sparsity_m_by_n"] = (2, 4)
        kwargs["layers"] = [n for n in _m_by_n_layers(model) if n in kwargs["layers"]]
        schedule = pruning.ConstantSparsity(0.5, 0, frequency=1)
    elif not labelled:  # one-shot: one masking step at learning rate 0
        schedule = pruning.ConstantSparsity(target, 0, end_step=0, frequency=1)
    else:
        ramp = max(1, epochs - 2) * steps
        schedule = pruning.PolynomialDecay(0.0, target, 0, ramp, frequency=1)
    if labelled:
        return pipeline.prune(model, x, y, schedule, epochs, **kwargs)
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=schedule, **kwargs)
    # One-shot on unlabelled data: one masking step at learning rate 0.
    # Frozen BatchNormalization runs in inference mode, so the masking
    # step leaves its statistics alone too.
    for layer in _all_layers(pruned):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    pruned.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    batch = pipeline.take(x, n=BATCH_SIZE, example_shape=example)[0]
    outputs = pruned.predict(batch, verbose=0)
    pruned.fit(batch, outputs, batch_size=BATCH_SIZE, epochs=1, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])
    final = pruning.strip_pruning(pruned)
    return final, pipeline.sparsity(final)


def _m_by_n_layers(model):
    return [fit.name for fit in pruning.pattern_support(model, sparsity_m_by_n=(2, 4)) if fit.fits]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def prune_recipe(target, epochs=5, sparsity_format=False, pattern="magnitude"):
    label = "prune-2:4" if pattern == "2:4" else f"prune-{round(target * 100)}"
    name = label + (" +sparsity" if sparsity_format else "")

    def make(model, data, workdir):
        final, sparsity = _pruned_model(model, data, target, pattern, epochs)
        exported = pipeline.export(final, _path(workdir, model, name), sparsity=sparsity_format)
        return Artifact(exported, final, extra={"sparsity": sparsity})

    return Recipe(name, make, group="pruning")


def tfmot_prune_recipe(target, epochs=5, baselines=None):
    """tfmot's pruning on tf_keras, in a subprocess, same data and steps.

    `baselines`: the directory holding the tfmot scripts (see the module
    docstring); without one the row is skipped.
    """

    def make(model, data, workdir):
        result = _run_baseline("tfmot_baseline.py", model, data, workdir, baselines, [
            "--sparsities", str(target), "--frequency", "1",
            "--ramp-epochs", str(max(1, epochs - 2)), "--finetune-epochs", "2",
            "--batch-size", str(BATCH_SIZE), "--skip-timing", "--tflite-dir", workdir])
        run = result["runs"][0]
        return Artifact(run["tflite_path"], keras_accuracy=run["accuracy"],
                        extra={"sparsity": run["sparsity"]})

    return Recipe(f"tfmot-prune-{round(target * 100)}", make, group="baseline")


def _fit_qat(base, data, epochs, preserve_sparsity=False):
    keras.utils.set_random_seed(0)
    return pipeline.quantize_aware(base, data[0], data[1], epochs,
                                   preserve_sparsity=preserve_sparsity)


def qat_recipe(epochs=2, prune_target=None):
    """QAT fine-tune of the case's model (optionally of its pruned copy)."""
    name = "qat-int8" if prune_target is None else f"prune-{round(prune_target * 100)} +qat-int8"

    def make(model, data, workdir):
        if prune_target is None:
            base, extra = model, {}
        else:
            base, sparsity = _pruned_model(model, data, prune_target, "magnitude", 5)
            extra = {"sparsity_before_qat": sparsity}
        qat = _fit_qat(base, data, epochs, preserve_sparsity=prune_target is not None)
        exported = pipeline.export(qat, _path(workdir, model, name), quantization="int8")
        int8_kernels = [w for w in exported.weights if w["dtype"] == "int8" and w["size"] >= 64]
        extra["sparsity"] = (sum(w["zero_fraction"] * w["size"] for w in int8_kernels)
                             / max(1, sum(w["size"] for w in int8_kernels)))
        if prune_target is None:
            # Fresh copies: timing trains them on one batch, which must not
            # touch the model that was just exported and is verified next.
            plain = compile_classifier(keras.models.clone_model(model))
            timed = compile_classifier(quantization.quantize_model(model))
            x, y = pipeline.take(data[0], data[1], BATCH_SIZE, pipeline.model_example_shape(model))
            timing = step_time_ratio(plain, timed, x, y)
            extra["train_step_vs_plain"] = timing["ratio"]
        return Artifact(exported, qat, extra=extra)

    return Recipe(name, make, group="qat")


def tfmot_qat_recipe(epochs=2, baselines=None):
    """tfmot's QAT on tf_keras, in a subprocess, same data and epochs."""

    def make(model, data, workdir):
        run = _run_baseline("tfmot_qat_baseline.py", model, data, workdir, baselines, [
            "--epochs", str(epochs), "--batch-size", str(BATCH_SIZE), "--lr", str(QAT_LEARNING_RATE),
            "--lr-decay", QAT_DECAY or "none",
            "--tflite-path", os.path.join(workdir, f"{model.name}-tfmot-qat.tflite")])
        extra = {"train_step_vs_plain": run["timing"]["ratio"]} if "timing" in run else {}
        return Artifact(run["qat"]["tflite_path"], keras_accuracy=run["qat"]["accuracy"], extra=extra)

    return Recipe("tfmot-qat-int8", make, group="baseline")


def _run_baseline(script_name, model, data, workdir, baselines, arguments):
    """Runs a tf_keras baseline script on the case's data and weights."""
    script = _baseline_script(script_name, baselines)
    example = pipeline.model_example_shape(model)
    x, y = pipeline.take(data[0], data[1], example_shape=example)  # arrays for the script
    x_test, y_test = pipeline.take(data[2], data[3], example_shape=example)
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "data.npz")
        weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        np.savez(npz, x_train=x, y_train=y, x_test=x_test, y_test=y_test, **weights)
        out = os.path.join(tmp, "result.json")
        command = [sys.executable, script, "--data", npz, "--out", out, *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{script_name} failed: {tail[0]}")
        with open(out) as handle:
            return json.load(handle)


def keras_quantize_recipe():
    """Keras's built-in `model.quantize("int8")`, exported like any model."""

    def make(model, data, workdir):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        clone.quantize("int8")
        exported = pipeline.export(clone, _path(workdir, model, "keras-quantize-int8"))
        return Artifact(exported, clone)

    return Recipe("keras-quantize-int8", make, group="baseline")


BASELINES_ENV = "TFOPT_BASELINES"
NO_BASELINES = ("no baselines directory given (tfopt bench --baselines DIR, or "
                f"{BASELINES_ENV}=DIR: the source checkout's benchmarks/)")


def baselines_directory(baselines=None):
    """The directory of the tfmot baseline scripts, or None.

    Args:
        baselines: A directory, or None for the `TFOPT_BASELINES`
            environment variable.

    Returns:
        The directory, or None when neither names one.

    Raises:
        ValueError: If the directory given does not exist.
    """
    directory = baselines if baselines is not None else os.environ.get(BASELINES_ENV) or None
    if directory is not None and not os.path.isdir(directory):
        raise ValueError(f"baselines directory {directory!r} does not exist (give the source "
                         "checkout's benchmarks/ folder).")
    return directory


def _baseline_script(name, baselines=None):
    # Baselines import tf_keras/tfmot, which tfopt itself never does: they
    # live outside the package, in the directory the caller names.
    directory = baselines_directory(baselines)
    if directory is None:
        raise Skipped(NO_BASELINES)
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise RuntimeError(f"baseline script {path} not found in the baselines directory")
    return path


# -- distillation -----------------------------------------------------------
# A case's model is the teacher; these recipes train a student with <= 1/4
# of its parameters, so the float row (the teacher's file) is the reference
# for the size and latency ratios.

def train_student(build, data, epochs, seed=0, teacher=None, temperature=KD_TEMPERATURE,
                  alpha=KD_ALPHA, learning_rate=1e-3):
    """Trains `build()` on the data, alone or distilled from `teacher`.

    The same seed gives the same initial weights and batch order with or
    without a teacher, so the two differ only in the loss.

    Returns:
        The trained student.
    """
    keras.utils.set_random_seed(seed)
    return pipeline.train(build(), data[0], data[1], epochs, learning_rate, teacher=teacher,
                          temperature=temperature, alpha=alpha)


def distil_prune_quantize(student, teacher, data, target=0.8, epochs=6, learning_rate=5e-4,
                          temperature=KD_TEMPERATURE, alpha=KD_ALPHA, seed=0):
    """One `fit` that distils, prunes (to `target`) and quantizes `student`.

    The trained float student is wrapped for QAT, then for pruning (the mask
    applies before fake quantization); sparsity ramps over the first half of
    the epochs. Returns the stripped QAT model, ready for int8 export.
    """
    keras.utils.set_random_seed(seed)
    example = pipeline.model_example_shape(student)
    steps = pipeline.steps_per_epoch(data[0], example_shape=example) * epochs
    schedule = pruning.PolynomialDecay(0.0, target, 0, steps // 2, frequency=1)
    final, _ = pipeline.prune(quantization.quantize_model(student), data[0], data[1], schedule,
                              epochs, learning_rate=learning_rate, teacher=teacher,
                              temperature=temperature, alpha=alpha)
    return final


def _student(teacher, data, build, epochs, distilled):
    return _cached(teacher, ("student", distilled), lambda: train_student(
        build, data, epochs, teacher=teacher if distilled else None))


def student_recipe(build, epochs=20, distilled=False, compress=False):
    """A student trained alone, distilled, or distilled + pruned 80% + QAT int8."""
    name = "student" + (" +kd" if distilled else "") + (" +prune-80 +qat-int8" if compress else "")

    def make(teacher, data, workdir):
        student = _student(teacher, data, build, epochs, distilled)
        extra = {"params_vs_teacher": student.count_params() / teacher.count_params()}
        if not compress:
            exported = pipeline.export(student, _path(workdir, teacher, name))
            return Artifact(exported, student, extra=extra)
        final = distil_prune_quantize(student, teacher, data)
        exported = pipeline.export(final, _path(workdir, teacher, name), quantization="int8")
        extra["sparsity"] = pipeline.sparsity(final)
        return Artifact(exported, final, extra=extra)

    return Recipe(name, make, group="distillation")


def _distillation_recipes(image_size):
    build = lambda: digits_cnn(image_size)  # noqa: E731
    return [float_recipe(), student_recipe(build), student_recipe(build, distilled=True),
            student_recipe(build, distilled=True, compress=True)]


# -- structured pruning -------------------------------------------------------
# Channels removed for real (`prune_channels`, L1, one shot), so the file is
# smaller and faster on any runtime. Labelled cases fine-tune after pruning;
# random-weight MobileNetV2 cases are pruned only (size/latency).

STRUCTURED_FINETUNE_EPOCHS = 5


def _structured_model(model, data, ratio, epochs):
    def make():
        small = pruning.prune_channels(model, ratio)
        if pipeline.has_labels(data[0], data[1]):
            keras.utils.set_random_seed(0)
            pipeline.train(small, data[0], data[1], epochs)
        return small

    return _cached(model, ("structured", ratio, epochs), make)


def structured_recipe(ratio, int8=False, epochs=STRUCTURED_FINETUNE_EPOCHS):
    """`prune_channels(model, ratio)` (+ fine-tune), float or PTQ int8 file."""
    name = f"structured {round(ratio * 100)}%" + (" + int8" if int8 else "")

    def make(model, data, workdir):
        small = _structured_model(model, data, ratio, epochs)
        exported = pipeline.export(small, _path(workdir, model, name),
                                   quantization="int8" if int8 else None,
                                   representative_data=data[0])
        extra = {"params_vs_float": small.count_params() / model.count_params()}
        return Artifact(exported, small, extra=extra)

    return Recipe(name, make, group="structured")


def structured_recipes():
    """The structured rows of the suites: 30%, 50%, 50% + int8."""
    return [structured_recipe(0.3), structured_recipe(0.5), structured_recipe(0.5, int8=True)]


# -- below int8: clustering, int4/blockwise, int16x8, mixed precision -------
# Files from litert-quantizer (tfopt.export.quantize_tflite) start from the
# case's float batch-1 file; mixed-precision budgets are fractions of the
# converter's int8 file (ptq-int8) of the same model.

CLUSTER_FINETUNE_EPOCHS = 2
MIXED_CANDIDATES = ("float16", "int8", "int16x8", "int4", "int2")


def _float_file(model):
    return export.to_tflite(model, batch_size=EXPORT_BATCH)


def lowbit_recipe(mode, block_size=32):
    """`quantize_tflite(float file, mode)`: int4 weight-only/dynamic/blockwise, int16x8."""
    name = f"lowbit-{mode}" + (f"-b{block_size}" if mode == "int4_blockwise" else "")

    def make(model, data, workdir):
        exported = pipeline.export(model, _path(workdir, model, name), lowbit=mode,
                                   block_size=block_size, representative_data=data[0])
        return Artifact(exported, model, extra={
            "precisions": sorted({row["precision"] for row in exported.layers})})

    return Recipe(name, make, group="lowbit")


def mixed_recipe(fraction_of_int8):
    """`mixed_precision` with a budget of `fraction_of_int8` x the int8 file's bytes."""
    name = f"mixed-{fraction_of_int8:g}x-int8"

    def make(model, data, workdir):
        representative = pipeline.take(data[0], n=REPRESENTATIVE_EXAMPLES,
                                       example_shape=pipeline.model_example_shape(model))[0]
        int8 = pipeline.export(model, quantization="int8", representative_data=representative)
        budget = int(fraction_of_int8 * int8.size_bytes)
        exported = export.mixed_precision(_float_file(model), budget, representative,
                                          path=_path(workdir, model, name),
                                          candidates=MIXED_CANDIDATES)
        return Artifact(exported, model, extra={
            "budget_bytes": budget,
            "precisions": [row["precision"] for row in exported.layers]})

    return Recipe(name, make, group="lowbit")


def cluster_recipe(number_of_clusters, epochs=CLUSTER_FINETUNE_EPOCHS):
    """`cluster_weights(model, k)` fine-tuned, stripped, float file (see gzip)."""
    from tfopt import clustering

    def make(model, data, workdir):
        keras.utils.set_random_seed(0)
        clustered = clustering.cluster_weights(model, number_of_clusters)
        if pipeline.has_labels(data[0], data[1]):
            pipeline.train(clustered, data[0], data[1], epochs, QAT_LEARNING_RATE * 10)
        final = clustering.strip_clustering(clustered)
        exported = pipeline.export(final, _path(workdir, model, f"cluster-{number_of_clusters}"))
        distinct = max(row["distinct_values"] for row in clustering.clustering_report(final))
        return Artifact(exported, final, extra={"max_distinct_values": distinct})

    return Recipe(f"cluster-{number_of_clusters}", make, group="clustering")


def tfmot_cluster_recipe(number_of_clusters, epochs=CLUSTER_FINETUNE_EPOCHS, baselines=None):
    """tfmot's `cluster_weights` on tf_keras, in a subprocess, same data and epochs."""

    def make(model, data, workdir):
        run = _run_baseline("tfmot_cluster_baseline.py", model, data, workdir, baselines, [
            "--clusters", str(number_of_clusters), "--epochs", str(epochs),
            "--batch-size", str(BATCH_SIZE), "--lr", str(QAT_LEARNING_RATE * 10),
            "--architecture", model.name,
            "--tflite-path", os.path.join(workdir, f"{model.name}-tfmot-cluster.tflite")])
        return Artifact(run["tflite_path"], keras_accuracy=run["accuracy"],
                        extra={"max_distinct_values": run["max_distinct_values"]})

    return Recipe(f"tfmot-cluster-{number_of_clusters}", make, group="baseline")


def keras_quantize_int4_recipe():
    """Keras's built-in `model.quantize("int4")`, exported like any model."""

    def make(model, data, workdir):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        clone.quantize("int4")
        exported = pipeline.export(clone, _path(workdir, model, "keras-quantize-int4"))
        return Artifact(exported, clone)

    return Recipe("keras-quantize-int4", make, group="baseline")


def lowbit_recipes(baselines=True, baselines_dir=None):
    """The below-int8 rows: clustering 16/32, int4 weight-only and blockwise,
    int16x8, mixed precision at 0.5x and 0.25x of int8 (+ baselines; the
    tfmot one from `baselines_dir`)."""
    recipes = [cluster_recipe(16), cluster_recipe(32), lowbit_recipe("int4_weight_only"),
               lowbit_recipe("int4_blockwise"), lowbit_recipe("int16x8"),
               mixed_recipe(0.5), mixed_recipe(0.25)]
    if baselines:
        recipes += [keras_quantize_int4_recipe(), tfmot_cluster_recipe(16, baselines=baselines_dir)]
    return recipes


# -- suites -----------------------------------------------------------------
# One declarative table: a row per model, its recipes (a function of the
# baselines directory, so the table is built fresh for every run) and the
# suites it belongs to. A suite is the table's rows that name it, in order.


@dataclasses.dataclass(frozen=True)
class SuiteRow:
    """One model of the suites and the recipes run on it.

    Attributes:
        name: The case's name (row label of the report).
        build: `() -> (model, data)`, see `harness.Case.build`.
        recipes: `(baselines_dir) -> [Recipe]`; the first is `float_recipe()`.
        description: One line for the report.
        suites: The suites this row is part of.
        random_weights: An untrained model (size/latency only).
    """

    name: str
    build: Callable
    recipes: Callable
    description: str
    suites: tuple = ("quick", "standard")
    random_weights: bool = False

    def case(self, baselines=None):
        """The `harness.Case` of this row (fresh recipe objects)."""
        return Case(self.name, self.build, list(self.recipes(baselines)), self.description,
                    random_weights=self.random_weights)


def _ptq_rows():
    return [float_recipe()] + [ptq_recipe(m) for m in ("dynamic", "float16", "int8")]


def _standard_recipes(prune=True, two_four=True, baselines=True):
    recipes = _ptq_rows()
    if prune:
        for target in (0.5, 0.8, 0.9):
            recipes.append(prune_recipe(target))
            recipes.append(prune_recipe(target, sparsity_format=True))
    if two_four:
        recipes.append(prune_recipe(0.5, pattern="2:4"))
    if baselines:
        recipes.append(keras_quantize_recipe())
    return recipes


def _cnn_recipes(baselines, structured, lowbit_baselines):
    return (_standard_recipes()
            + [tfmot_prune_recipe(0.8, baselines=baselines), qat_recipe(),
               qat_recipe(prune_target=0.8), tfmot_qat_recipe(baselines=baselines)]
            + (structured_recipes() if structured else [])
            + lowbit_recipes(baselines=lowbit_baselines, baselines_dir=baselines))


def _mobilenet_recipes(prune):
    recipes = _ptq_rows()
    if prune:
        recipes += [prune_recipe(0.8), prune_recipe(0.8, sparsity_format=True)]
    return recipes + structured_recipes()


TABLE = (
    SuiteRow("digits-cnn-16", _trained(lambda: digits_cnn(16), 16, epochs=20),
             # low-bit baselines: standard and benchmarks/lowbit.py only
             lambda b: _cnn_recipes(b, structured=True, lowbit_baselines=False),
             "Conv(12)+Dense CNN on 16x16 digits"),
    SuiteRow("digits-cnn-28", _trained(lambda: digits_cnn(28), 28, epochs=20),
             lambda b: _cnn_recipes(b, structured=False, lowbit_baselines=True),
             "Conv(12)+Dense CNN on 28x28 digits", suites=("standard",)),
    SuiteRow("digits-mlp", _trained(digits_mlp, 8, epochs=30),
             lambda b: _standard_recipes() + [qat_recipe(), qat_recipe(prune_target=0.8)],
             "MLP 128-64-10 on 8x8 digits (non-convolutional)"),
    SuiteRow("digits-mobilenet-28", _trained(lambda: digits_mobilenet(28), 28, epochs=15),
             lambda b: [float_recipe(), ptq_recipe("int8"), qat_recipe(),
                        qat_recipe(prune_target=0.8)],
             "MobileNetV2-style net (inverted residuals, BN, ReLU6) on 28x28 digits"),
    SuiteRow("digits-kd-16", _trained(lambda: digits_teacher(16), 16, epochs=15),
             lambda b: _distillation_recipes(16),
             "Teacher CNN (315k params, softmax head) distilled into the 6k-param digits CNN"),
    SuiteRow("digits-kd-28", _trained(lambda: digits_teacher(28), 28, epochs=15),
             lambda b: _distillation_recipes(28),
             "Teacher CNN (1.2M params, softmax head) distilled into the 20k-param digits CNN",
             suites=("standard",)),
    SuiteRow("mobilenetv2-0.35-96", _mobilenet(0.35, 96), lambda b: _mobilenet_recipes(True),
             "MobileNetV2 alpha 0.35, 96x96, random weights (size/latency only)",
             random_weights=True),
    SuiteRow("mobilenetv2-1.0-224", _mobilenet(1.0, 224),
             lambda b: _mobilenet_recipes(False) + [lowbit_recipe("int4_blockwise")],
             "MobileNetV2 alpha 1.0, 224x224, random weights (size/latency only)",
             suites=("standard",), random_weights=True),
)


def cases(suite, baselines=None):
    """The `harness.Case`s of `suite` from `TABLE`, in table order.

    Args:
        suite: A suite name of the table (`"quick"`, `"standard"`).
        baselines: The tfmot baseline scripts' directory (see the module
            docstring), or None.

    Returns:
        A list of `harness.Case`.
    """
    return [row.case(baselines) for row in TABLE if suite in row.suites]


def quick(baselines=None):
    """The README's main job: digits CNN, MLP and MobileNet-style net; small MobileNetV2."""
    return cases("quick", baselines)


def standard(baselines=None):
    """`quick` plus 28x28 digits and MobileNetV2 1.0 at 224x224."""
    return cases("standard", baselines)


SUITES = {"quick": quick, "standard": standard}
SETTINGS = {
    "quick": dict(warmup=20, runs=300, min_seconds=1.0),
    "standard": dict(warmup=50, runs=1000, min_seconds=3.0),
}


def get_suite(name, baselines=None):
    """The cases of suite `name`.

    Args:
        name: `"quick"`, `"standard"` or `"zoo"`.
        baselines: The directory of the tfmot baseline scripts (the source
            checkout's `benchmarks/`); None: the `TFOPT_BASELINES`
            environment variable, else the tfmot rows are skipped.

    Raises:
        ValueError: For an unknown name or a baselines directory that
            does not exist.
    """
    if name not in SUITES:
        raise ValueError(f"Unknown suite {name!r}; choose one of {sorted(SUITES)}.")
    directory = baselines_directory(baselines)
    if name == "zoo":
        # zoo_suite finds its tfmot script through _baseline_script(), which
        # falls back on the environment variable.
        if directory is not None:
            os.environ[BASELINES_ENV] = directory
        return SUITES[name]()
    return SUITES[name](directory)


# -- zoo ----------------------------------------------------------------------
# Every technique on every tfopt.zoo model (tfopt/bench/zoo_suite.py);
# benchmarks/zoo.py runs a slice (--models, --epochs).


def zoo():
    """Every `tfopt.zoo` model through every technique, tfmot beside it."""
    from tfopt.bench import zoo_suite

    return zoo_suite.cases()


def _zoo_settings():
    from tfopt.bench import zoo_suite

    return zoo_suite.SETTINGS


SUITES["zoo"] = zoo
SETTINGS["zoo"] = _zoo_settings()
