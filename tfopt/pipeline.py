"""The one recipe pipeline: train -> compress -> strip -> export -> verify -> measure.

`tfopt compress`, `tfopt bench` (its suites and `tfopt bench FILE.keras`) and
the compression search (`tfopt tune`, `tfopt.tuning`) all run their recipes
through these stages, so a recipe means the same thing everywhere: the same
compile (Adam, a cross-entropy matching the model's head), batch size,
calibration set, export shape and the same metric names (`METRICS`).

Stages (each takes and returns plain Keras models / `TFLiteExport`s):

- `train`: `fit` a classifier, alone or distilled from a teacher.
- `prune`: magnitude pruning inside `fit`, stripped afterwards.
- `quantize_aware`: QAT fine-tuning (optionally keeping pruning's zeros).
- `export`: TFLite file, float / PTQ / QAT int8 / litert-quantizer low-bit.
- `verify`: the exported file against the Keras model on held-out data.
"""

import numpy as np

from tfopt import data as data_lib
from tfopt.defaults import BATCH_SIZE
from tfopt.defaults import CALIBRATED_MODES
from tfopt.defaults import EXPORT_BATCH
from tfopt.defaults import LEARNING_RATE
from tfopt.defaults import QAT_DECAY
from tfopt.defaults import QAT_LEARNING_RATE
from tfopt.defaults import REPRESENTATIVE_EXAMPLES

# Knowledge-distillation defaults of the recipes that distil.
KD_TEMPERATURE = 4.0
KD_ALPHA = 0.1

# The metric names of every results file and trial (one vocabulary): whether
# larger ("max") or smaller ("min") is better, and what the name means. The
# reference of the `*_vs_float` ratios is the dense float model: a suite's
# float row, a search's dense baseline.
METRICS = {
    "keras_accuracy": ("max", "top-1 accuracy of the Keras model on the held-out data"),
    "tflite_accuracy": ("max", "top-1 accuracy of the exported file (LiteRT) on the held-out data"),
    "top1_agreement": ("max", "fraction of held-out examples where file and Keras agree"),
    "size_bytes": ("min", "bytes of the .tflite file"),
    "gzip_bytes": ("min", "bytes of the gzipped .tflite file"),
    "p50_ms": ("min", "median LiteRT CPU latency of one batch-1 invoke, ms"),
    "p90_ms": ("min", "90th percentile LiteRT CPU latency, ms"),
    "params": ("min", "parameters of the final Keras model"),
    "sparsity": ("max", "zero fraction of the prunable weights"),
    "accuracy_drop": ("min", "the float model's tflite_accuracy minus this one's"),
    "bytes_vs_float": ("min", "size_bytes / the float model's"),
    "gzip_vs_float": ("min", "gzip_bytes / the float model's"),
    "p50_vs_float": ("min", "p50_ms / the float model's"),
    # The compression search's own: its oracle objective and feasibility.
    "score": ("min", "the search's scalarised objective (tfopt.tuning.Scalarization)"),
    "feasible": ("max", "1.0 when the trial is within every constraint, else 0.0"),
}
# Names written before the vocabulary was shared, still written beside the
# new ones and read back by `canonical_metrics`: bench rows said `cpu_p50_ms`,
# search trials `*_vs_baseline` (objectives and constraints may name them).
LEGACY_NAMES = {
    "cpu_p50_ms": "p50_ms",
    "cpu_p90_ms": "p90_ms",
    "bytes_vs_baseline": "bytes_vs_float",
    "gzip_vs_baseline": "gzip_vs_float",
    "p50_vs_baseline": "p50_vs_float",
}


def direction(name):
    """`"max"` or `"min"`: which way metric `name` (or a legacy name) is better.

    Raises:
        ValueError: For a name outside `METRICS` and `LEGACY_NAMES`.

    Example:

    >>> direction("size_bytes"), direction("cpu_p50_ms")
    ('min', 'min')
    """
    canonical = LEGACY_NAMES.get(name, name)
    if canonical not in METRICS:
        known = sorted(set(METRICS) | set(LEGACY_NAMES))
        raise ValueError(f"Unknown objective(s) [{name!r}]; known metrics: {known}.")
    return METRICS[canonical][0]


def canonical_metrics(metrics):
    """A copy of `metrics` with every metric also under its `METRICS` name.

    Old keys are kept (files and callers that read them go on working);
    the canonical name is added next to each.

    Args:
        metrics: A dict (a bench row, a trial's metrics).

    Returns:
        A new dict.

    Example:

    >>> canonical_metrics({"cpu_p50_ms": 1.5})["p50_ms"]
    1.5
    """
    out = dict(metrics)
    for old, new in LEGACY_NAMES.items():
        if old in metrics and new not in out:
            out[new] = metrics[old]
    return out


# -- data: numpy arrays or a tf.data.Dataset of (x, y) ------------------------
# Every stage takes its training data as `x, y` arrays or as one
# `tf.data.Dataset` of `(x, y)` (batched or not; `y` None then). The helpers
# below are the one place that tells the two apart, so no recipe slices
# `x[:n]` or calls `len(x)` itself.


def is_dataset(data):
    """Whether `data` is a `tf.data.Dataset` (anything with `element_spec`)."""
    return data_lib._is_dataset(data)


def model_example_shape(model):
    """The shape of one example of `model`'s input(s), or None (unbuilt).

    Args:
        model: A built Keras model.

    Returns:
        For one input, its example shape (a tuple, without the batch); for
        several inputs, a dict `{input name: example shape}` in the model's
        input order (every `example_shape` argument of this module takes
        it); None when the model has no inputs yet (an unbuilt Sequential).

    Example:

    ```python
    a, b = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="vec")
    model = keras.Model([a, b], ...)
    tfopt.pipeline.model_example_shape(model)   # {"image": (8, 8, 1), "vec": (4,)}
    ```
    """
    try:
        inputs = getattr(model, "inputs", None)
    except (AttributeError, ValueError):  # an unbuilt Sequential
        return None
    if not inputs:
        return None
    import keras

    inputs = keras.tree.flatten(inputs)
    if len(inputs) == 1:
        return tuple(inputs[0].shape[1:])
    return {tensor.name: tuple(tensor.shape[1:]) for tensor in inputs}


def _several(example_shape):
    """Whether `example_shape` describes several inputs (a dict by name)."""
    return isinstance(example_shape, dict)


def _reader(example_shape):
    """`(example_shapes, names)` of `tfopt.data.model_batches` for `example_shape`."""
    if _several(example_shape):
        return list(example_shape.values()), list(example_shape)
    return [example_shape], None


def _x_spec(spec, several):
    """The inputs' part of a dataset's `element_spec` (`x` of `(x, y)`)."""
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, (tuple, list)) and spec:
        if several and not isinstance(spec[0], (tuple, list, dict)):
            return spec  # a bare tuple of the inputs
        return spec[0]
    return spec


def _rank(spec):
    return getattr(getattr(spec, "shape", None), "rank", None)


def _x_rank(dataset):
    return _rank(_x_spec(dataset.element_spec, False))


def _unbatched(dataset, example_shape):
    """True when `dataset` yields single examples of `example_shape`."""
    if example_shape is None:
        return False
    if not _several(example_shape):
        return _x_rank(dataset) == len(example_shape)
    x = _x_spec(dataset.element_spec, True)
    if isinstance(x, dict):
        specs = [x.get(name) for name in example_shape]
    elif isinstance(x, (tuple, list)) and len(x) == len(example_shape):
        specs = list(x)
    else:
        return False
    return all(_rank(spec) == len(shape) for spec, shape in zip(specs, example_shape.values()))


def num_examples(x, example_shape=None):
    """How many examples `x` holds: an array, or a list / dict of input arrays.

    Args:
        x: An array (or a list of examples), a dict of arrays by input
            name, or a list of arrays of several inputs.
        example_shape: As `take`'s: a dict (several inputs) makes a list
            the inputs' arrays rather than a list of examples.

    Example:

    >>> num_examples({"a": np.zeros((5, 3)), "b": np.zeros((5, 2))})
    5
    """
    if isinstance(x, dict):
        return len(next(iter(x.values()))) if x else 0
    if _several(example_shape) and isinstance(x, (list, tuple)) and x:
        return len(x[0])
    return len(x)


def _slice(x, n, example_shape=None):
    """The first `n` examples of arrays: one array, or a list / dict of inputs."""
    if isinstance(x, dict):
        return {key: value[:n] for key, value in x.items()}
    if _several(example_shape) and isinstance(x, (list, tuple)):
        return [item[:n] for item in x]
    return x[:n]


def batched(x, model, batch_size=BATCH_SIZE):
    """`x` batched for `fit`: an unbatched dataset gets `.batch(batch_size)`.

    Args:
        x: A numpy array (returned as is) or a `tf.data.Dataset`.
        model: The model it feeds (its input ranks tell single examples
            from batches, for one input or several).
        batch_size: Batch of an unbatched dataset.

    Returns:
        `x`, or the batched dataset.
    """
    if is_dataset(x) and _unbatched(x, model_example_shape(model)):
        return x.batch(batch_size)
    return x


def has_labels(x, y=None, example_shape=None):
    """Whether there are labels: `y` given, or `x` a dataset of `(x, y)`.

    Args:
        x: Inputs (arrays or a dataset).
        y: Labels, or None.
        example_shape: As `take`'s: for several inputs (a dict), a
            dataset of a bare tuple of tensors `(x1, x2)` is inputs only.

    Example:

    >>> has_labels(np.zeros((2, 3))), has_labels(np.zeros((2, 3)), np.zeros(2))
    (False, True)
    """
    if y is not None:
        return True
    if is_dataset(x):
        spec = x.element_spec
        return isinstance(spec, (tuple, list)) and len(spec) >= 2 and (
            not _several(example_shape) or isinstance(spec[0], (tuple, list, dict)))
    return False


def take(x, y=None, n=None, example_shape=None, name="data"):
    """The first `n` examples (all: None) as numpy `(x, y)`.

    Arrays are sliced; a dataset (or generator function) is streamed and
    read only up to `n` examples (`tfopt.data.model_batches`).

    Args:
        x: Inputs: an array, or a dataset of `x` or `(x, y)`; for a model
            of several inputs, a list of arrays in input order, a dict by
            input name, or a dataset of `((x1, x2), y)` / `({name: x}, y)`.
        y: Labels of array inputs (None: none, or in the dataset).
        n: How many examples.
        example_shape: One example's shape (tells single examples of an
            unbatched dataset from batches); for several inputs the dict
            `{input name: shape}` of `model_example_shape`.
        name: How to call `x` in errors.

    Returns:
        `(x_n, y_n)`, `y_n` None when there are no labels. For several
        inputs read from a dataset, `x_n` is a list in input order; arrays
        keep their form (list or dict).

    Raises:
        TypeError, ValueError: As `tfopt.data.model_batches` (an input
            missing or of the wrong shape, named).

    Example:

    >>> x, y = take(np.arange(10.0)[:, None], np.arange(10), 3)
    >>> x.shape, y.tolist()
    ((3, 1), [0, 1, 2])
    """
    if is_dataset(x) or callable(x):
        shapes, names = _reader(example_shape)
        xs, ys = data_lib.collect_model_inputs(x, shapes, names, n, name)
        labels = ys if y is None else np.asarray(y)[:len(xs[0])]
        return (xs if _several(example_shape) else xs[0]), labels
    return _slice(x, n, example_shape), None if y is None else y[:n]


def limit(x, n, example_shape=None):
    """`x` cut to `n` examples without reading the rest: for streaming readers.

    Arrays are sliced (one array, or a list / dict of a model's inputs); a
    dataset becomes a function returning an iterator of `(x, y)` batches
    (`x` a list in input order for several inputs) that stops after `n`
    examples (an input form of `tfopt.export.verify` and `evaluate_tflite`).
    `example_shape` is as `take`'s.
    """
    if is_dataset(x):
        shapes, names = _reader(example_shape)
        if _several(example_shape):
            return lambda: data_lib.model_batches(x, shapes, names, n)
        return lambda: data_lib.input_batches(x, example_shape, n)
    return _slice(x, n, example_shape)


def _finite_cardinality(x, what):
    import tensorflow as tf

    count = int(x.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            f"{what}: the training dataset is infinite (e.g. `.repeat()`); give "
            "steps_per_epoch=N, or a finite dataset (drop the `.repeat()`).")
    if count == tf.data.UNKNOWN_CARDINALITY:
        raise ValueError(
            f"{what}: the training dataset's length is unknown (e.g. after "
            "`.filter()`); give steps_per_epoch=N, or "
            "`dataset.apply(tf.data.experimental.assert_cardinality(N))`.")
    return count


def steps_per_epoch(x, batch_size=BATCH_SIZE, steps=None, example_shape=None):
    """Training steps of one epoch over `x` (the last batch may be partial).

    Args:
        x: Training inputs: an array, or a `tf.data.Dataset` (its
            cardinality: batches of a batched dataset, examples of an
            unbatched one, which `train` batches by `batch_size`).
        batch_size: `fit`'s batch size.
        steps: Steps given by the caller (returned as is when set).
        example_shape: One example's shape: tells an unbatched dataset
            from a batched one (None: a dataset is taken as batched); for
            several inputs the dict of `model_example_shape`.

    Returns:
        A positive int.

    Raises:
        ValueError: For a dataset of infinite or unknown length and no
            `steps`, or `steps` that is not a positive int.

    Example:

    >>> steps_per_epoch(np.zeros((100, 4)), batch_size=32)
    4
    """
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps_per_epoch={steps!r} must be a positive int.")
        return int(steps)
    if is_dataset(x):
        count = _finite_cardinality(x, "steps_per_epoch")
        if _unbatched(x, example_shape):
            return max(1, int(np.ceil(count / batch_size)))
        return max(1, count)
    return int(np.ceil(num_examples(x, example_shape) / batch_size))


def _check_epochs(epochs, what):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"{what}: epochs={epochs!r} must be a positive int.")


def train(model, x, y, epochs, learning_rate=LEARNING_RATE, batch_size=BATCH_SIZE, callbacks=(),
          teacher=None, temperature=KD_TEMPERATURE, alpha=KD_ALPHA, from_logits=None, seed=None,
          verbose=0, steps_per_epoch=None):
    """Trains a classifier with integer labels, alone or distilled.

    Args:
        model: A `keras.Model` (compiled here: Adam at `learning_rate`,
            sparse cross-entropy).
        x, y: Training inputs and integer labels, or `x` a
            `tf.data.Dataset` of `(x, y)` (batched or not: an unbatched one
            is batched by `batch_size`) and `y` None. For a model of
            several inputs, `x` is a list of arrays in input order or a
            dict by input name (or the dataset's `x` a tuple or dict).
        epochs: Epochs of `fit`.
        learning_rate: Adam's learning rate.
        batch_size: `fit`'s batch size.
        callbacks: Keras callbacks (e.g. `tfopt.pruning.UpdatePruningStep()`).
        teacher: A trained model to distil from (`tfopt.distillation.Distiller`
            with `temperature` and `alpha`), or None.
        from_logits: Whether the model outputs logits; None detects it from
            the model's head (a softmax last layer: probabilities).
        seed: Set with `keras.utils.set_random_seed` before compiling
            (None: leave the random state alone).
        verbose: `fit`'s verbosity.
        steps_per_epoch: `fit`'s steps per epoch (needed for an infinite
            dataset; None: one pass over the data).

    Returns:
        The trained model (the student, when distilled).

    Raises:
        ValueError: If `epochs` is not a positive int, `x` is a dataset
            and `y` is given, or the dataset is infinite and
            `steps_per_epoch` is None.

    Example:

    ```python
    model = tfopt.pipeline.train(model, x, y, epochs=3)
    ```
    """
    import keras

    _check_epochs(epochs, "train")
    fit_kwargs = {"batch_size": batch_size, "epochs": epochs, "verbose": verbose}
    if is_dataset(x):
        if y is not None:
            raise ValueError(
                "train: x is a tf.data.Dataset, so its labels come from its (x, y) "
                "elements; pass y=None.")
        if not has_labels(x, example_shape=model_example_shape(model)):
            raise ValueError(
                "train: the dataset yields inputs only; map it to (x, y) pairs "
                "(integer labels) to train; for several inputs x is a tuple or a "
                "dict of them: ((x1, x2), y).")
        if steps_per_epoch is None:
            import tensorflow as tf

            if int(x.cardinality()) == tf.data.INFINITE_CARDINALITY:
                _finite_cardinality(x, "train")
        x = batched(x, model, batch_size)
        fit_kwargs.update(batch_size=None, shuffle=False)  # a dataset shuffles itself
    if steps_per_epoch is not None:
        fit_kwargs["steps_per_epoch"] = steps_per_epoch
    if seed is not None:
        keras.utils.set_random_seed(seed)
    callbacks = list(callbacks)
    if teacher is not None:
        from tfopt.distillation import Distiller

        distiller = Distiller(student=model, teacher=teacher, temperature=temperature, alpha=alpha)
        distiller.compile(optimizer=keras.optimizers.Adam(learning_rate), metrics=["accuracy"])
        distiller.fit(x, y, callbacks=callbacks, **fit_kwargs)
        return distiller.student
    if from_logits is None:
        from tfopt.models import compile_classifier

        compile_classifier(model, learning_rate)
    else:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
            metrics=["accuracy"],
        )
    model.fit(x, y, callbacks=callbacks, **fit_kwargs)
    return model


def sparsity(model):
    """Zero fraction of `model`'s prunable weights (`sparsity_report`'s total)."""
    from tfopt import pruning

    return float(pruning.sparsity_report(model)["total"]["sparsity"])


def prune(model, x, y, schedule, epochs, layers=None, block_size=None, sparsity_m_by_n=None,
          **train_kwargs):
    """Magnitude pruning inside `fit`, then stripped: a plain sparse model.

    Args:
        model: The model to prune (not modified: `prune_low_magnitude`
            works on a copy).
        x, y: Training data (arrays, or a dataset of `(x, y)` and `y` None).
        schedule: A `tfopt.pruning.PruningSchedule` (its steps: see
            `steps_per_epoch`).
        epochs: Training epochs (the schedule should end within them).
        layers: Layer names to prune (None: every prunable layer).
        block_size, sparsity_m_by_n: Pattern options of
            `prune_low_magnitude`.
        **train_kwargs: More `train` arguments (`learning_rate`,
            `teacher`, `callbacks`, `seed`, ...).

    Returns:
        `(stripped_model, sparsity)`.

    Raises:
        ValueError: From `prune_low_magnitude` (no layer to prune, a
            pattern that does not fit).

    Example:

    ```python
    schedule = tfopt.pruning.PolynomialDecay(0.0, 0.8, 0, 200, frequency=1)
    final, sparsity = tfopt.pipeline.prune(model, x, y, schedule, epochs=5)
    ```
    """
    from tfopt import pruning

    kwargs = {}
    if layers is not None:
        kwargs["layers"] = layers
    if block_size is not None:
        kwargs["block_size"] = block_size
    if sparsity_m_by_n is not None:
        kwargs["sparsity_m_by_n"] = sparsity_m_by_n
    wrapped = pruning.prune_low_magnitude(model, pruning_schedule=schedule, **kwargs)
    callbacks = list(train_kwargs.pop("callbacks", ())) + [pruning.UpdatePruningStep()]
    wrapped = train(wrapped, x, y, epochs, callbacks=callbacks, **train_kwargs)
    final = pruning.strip_pruning(wrapped)
    return final, sparsity(final)


def qat_learning_rate(x, epochs, learning_rate=QAT_LEARNING_RATE, decay=QAT_DECAY,
                      batch_size=BATCH_SIZE, steps=None, example_shape=None):
    """The learning rate of quantization-aware fine-tuning.

    QAT fine-tunes a trained model whose BatchNormalizations are folded into
    its kernels, so no normalization absorbs a large late step: the rate is
    annealed from `learning_rate` to 0 over the fine-tuning (a cosine), which
    ends it at a settled point. Measured on DenseNet121 (8 + 2 epochs on
    digits): 0.925 top-1 at a constant 1e-4 against float 0.983, 0.989
    with the decay (`benchmarks/qat_agreement.py`).

    Args:
        x: The fine-tuning inputs (an array or a `tf.data.Dataset`, as
            `steps_per_epoch` takes them).
        epochs: Fine-tuning epochs.
        learning_rate: The starting rate.
        decay: `"cosine"` (annealed to 0 over `epochs`) or None (constant).
        batch_size: `fit`'s batch size.
        steps: Steps of one epoch, if the data cannot tell.
        example_shape: One example's shape (tells an unbatched dataset
            from a batched one, as in `steps_per_epoch`).

    Returns:
        A float or a `keras.optimizers.schedules.CosineDecay`, for an
        optimizer's `learning_rate`.

    Raises:
        ValueError: For an unknown `decay`, or data whose length is
            unknown and no `steps`.

    Example:

    ```python
    rate = tfopt.pipeline.qat_learning_rate(x, epochs=2)
    qat.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)
    ```
    """
    _check_epochs(epochs, "qat_learning_rate")
    if decay is None:
        return learning_rate
    if decay != "cosine":
        raise ValueError(f"decay={decay!r}: use 'cosine' or None (a constant rate).")
    import keras

    total = steps_per_epoch(x, batch_size, steps, example_shape) * int(epochs)
    return keras.optimizers.schedules.CosineDecay(learning_rate, total)


def _sets_learning_rate(callbacks):
    """Whether a callback sets the optimizer's rate (a schedule cannot be set)."""
    import keras

    return any(isinstance(c, (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau))
               for c in callbacks)


def quantize_aware(model, x, y, epochs, learning_rate=QAT_LEARNING_RATE, preserve_sparsity=False,
                   decay=QAT_DECAY, **train_kwargs):
    """Quantization-aware fine-tuning: `quantize_model`, then `train`.

    Args:
        model: A trained (stripped) model; not modified.
        x, y: Training data (arrays, or a dataset of `(x, y)` and `y` None).
        epochs: QAT epochs.
        learning_rate: Fine-tuning rate at the start (default a tenth of
            training's).
        preserve_sparsity: Keep pruning's zeros through QAT.
        decay: `"cosine"`: the rate is annealed to 0 over the fine-tuning
            (`qat_learning_rate`); None keeps it constant. A callback that
            sets the rate (`keras.callbacks.LearningRateScheduler`,
            `ReduceLROnPlateau`) takes over: the rate then starts constant
            and the callback drives it. A dataset of unknown length
            fine-tunes at the constant rate, with a warning.
        **train_kwargs: More `train` arguments.

    Returns:
        The QAT model, ready for `export(..., quantization="int8")`.

    Raises:
        ValueError: As `train` and `qat_learning_rate`.

    Example:

    ```python
    qat = tfopt.pipeline.quantize_aware(model, x, y, epochs=2)
    ```
    """
    from tfopt import quantization

    if decay not in (None, "cosine"):
        raise ValueError(f"decay={decay!r}: use 'cosine' or None (a constant rate).")
    rate = learning_rate
    import tensorflow as tf

    unknown_length = (is_dataset(x) and train_kwargs.get("steps_per_epoch") is None
                      and int(x.cardinality()) == tf.data.UNKNOWN_CARDINALITY)
    if decay is not None and unknown_length:
        import warnings

        warnings.warn(
            f"quantize_aware: the dataset's length is unknown, so QAT fine-tunes at a "
            f"constant {learning_rate} instead of annealing it to 0 (decay={decay!r}); "
            "give it a length with `dataset.apply(tf.data.experimental.assert_cardinality(N))`, "
            "or pass decay=None.", stacklevel=2)
    elif decay is not None and not _sets_learning_rate(train_kwargs.get("callbacks", ())):
        rate = qat_learning_rate(
            x, epochs, learning_rate, decay, train_kwargs.get("batch_size", BATCH_SIZE),
            train_kwargs.get("steps_per_epoch"), model_example_shape(model))
    qat = quantization.quantize_model(model, preserve_sparsity=preserve_sparsity)
    return train(qat, x, y, epochs, learning_rate=rate, **train_kwargs)




def export(model, path=None, quantization="auto", representative_data=None, sparsity=False,
           batch_size=EXPORT_BATCH, lowbit=None, block_size=32):
    """Exports a recipe's final model: the deployment shape, calibrated PTQ.

    Args:
        model: The final Keras model (stripped / QAT).
        path: The `.tflite` file to write (None: in memory).
        quantization: `tfopt.export.to_tflite`'s mode (`"auto"`: QAT
            models int8, others float; None: float; `"dynamic"`,
            `"float16"`, `"int8"`, `"int16x8"`).
        representative_data: Training inputs (an array, or a dataset
            streamed up to what is used; for several inputs a list in input
            order, a dict by name, or a dataset of such); the first
            `REPRESENTATIVE_EXAMPLES` calibrate `"int8"`/`"int16x8"` PTQ
            and low-bit modes (ignored otherwise).
        sparsity: Store sparse tensors in the file.
        batch_size: The file's fixed batch (None: dynamic).
        lowbit: A `tfopt.export.quantize_tflite` mode (`"int4_blockwise"`,
            `"int4_weight_only"`, `"int16x8"`, ...): the float file is
            re-quantized with litert-quantizer.
        block_size: Block of `"int4_blockwise"`.

    Returns:
        A `TFLiteExport`.

    Raises:
        ValueError: From conversion (an op TFLite lacks, no calibration
            data for a calibrated mode).

    Example:

    ```python
    exported = tfopt.pipeline.export(model, "m.tflite", "int8", representative_data=x)
    ```
    """
    from tfopt import export as export_lib

    calibration = None
    if is_dataset(representative_data):
        calibration = take(representative_data, n=REPRESENTATIVE_EXAMPLES,
                           example_shape=model_example_shape(model), name="representative_data")[0]
    elif representative_data is not None:
        calibration = _slice(representative_data, REPRESENTATIVE_EXAMPLES,
                             model_example_shape(model))
    if lowbit is not None:
        return export_lib.quantize_tflite(
            export_lib.to_tflite(model, batch_size=batch_size), path, mode=lowbit,
            block_size=block_size, representative_data=calibration)
    return export_lib.to_tflite(
        model, path, quantization=quantization,
        representative_data=calibration if quantization in CALIBRATED_MODES else None,
        sparsity=sparsity, batch_size=batch_size)


def verify(exported, model, x_test, y_test=None, examples=512):
    """The exported file against `model` on held-out data, plus size facts.

    Args:
        exported: A `TFLiteExport` (or path).
        model: The Keras model it came from.
        x_test, y_test: Held-out data (labels may be None), or `x_test` a
            dataset of `x` or `(x, y)` (streamed, `examples` read).
        examples: How many held-out examples to use.

    Returns:
        `tfopt.export.verify`'s dict (`keras_accuracy`, `tflite_accuracy`,
        `top1_agreement`, `max_abs_diff`, `n`, ...) plus `sparsity`,
        `params`, `size_bytes` and `gzip_bytes`.

    Example:

    ```python
    report = tfopt.pipeline.verify(exported, model, x_test, y_test)
    ```
    """
    from tfopt import export as export_lib

    y = None if y_test is None else y_test[:examples]
    x = limit(x_test, examples, model_example_shape(model))
    report = export_lib.verify(exported, model, x, y)
    report.update(
        sparsity=sparsity(model),
        params=int(model.count_params()),
        size_bytes=exported.size_bytes,
        gzip_bytes=exported.gzip_bytes,
    )
    return report
