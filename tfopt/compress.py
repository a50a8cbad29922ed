"""One-call compression of a user's model: train, strip, export, verify.

`compress(model, data, recipe, out)` is the one recipe pipeline behind
`tfopt compress FILE.keras` and `tfopt bench FILE.keras`: it applies a recipe
(post-training quantization, pruning inside `fit`, QAT, channel pruning),
strips the training wrappers, exports a `.tflite` file and verifies it
against the Keras model it came from on held-out data.

`load_model` and `load_data` read the user's files with one-line errors for
files that are missing, corrupt or of the wrong kind.
"""

import dataclasses
import os
import zipfile

import numpy as np

RECIPES = ("float", "ptq-dynamic", "ptq-float16", "ptq-int8", "prune-50", "prune-80",
           "qat-int8", "channels-50")
from tfopt.defaults import BATCH_SIZE  # noqa: F401  (re-exported)
from tfopt.defaults import EXPORT_BATCH
from tfopt.defaults import QAT_LEARNING_RATE
from tfopt.defaults import WARN_AGREEMENT
from tfopt.defaults import REPRESENTATIVE_EXAMPLES  # noqa: F401  (re-exported)
DEFAULT_EPOCHS = 3
TEST_FRACTION = 0.2
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass
class CompressResult:
    """What `compress` produced.

    Attributes:
        recipe: The recipe name.
        path: The `.tflite` file written.
        export: The `TFLiteExport` (bytes, sizes, ops, weights).
        keras_model: The Keras model the file was converted from (stripped).
        report: `tfopt.export.verify`'s dict on the held-out data
            (`keras_accuracy`, `tflite_accuracy`, `top1_agreement`...), plus
            `sparsity` (of the prunable weights), `params` and the file's
            `size_bytes`/`gzip_bytes`.
    """

    recipe: str
    path: str
    export: object
    keras_model: object
    report: dict


def check_output_path(path):
    """Fails before any work if the file `path` cannot be written.

    Args:
        path: The output file (None: nothing to check).

    Raises:
        ValueError: If `path` is a directory, its directory is missing or
            not writable, or the existing file is read-only.
        TypeError: If `path` is not a path.

    Example:

    >>> check_output_path("/no/such/dir/model.tflite")
    Traceback (most recent call last):
    ...
    ValueError: Cannot write '/no/such/dir/model.tflite': directory '/no/such/dir' does not exist (create it first).
    """
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"The output path must be a file path or None, got {type(path).__name__}."
        )
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(
            f"Output path {path!r} is a directory; give a file name such as "
            f"{os.path.join(path, 'model.tflite')!r}."
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"Cannot write {path!r}: directory {directory!r} does not exist "
            "(create it first)."
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"Cannot write {path!r}: directory {directory!r} is not writable.")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"Cannot write {path!r}: the existing file is read-only.")


def file_kind(path):
    """What a file is, from its first bytes: "keras", "tflite", "npy", "npz", ...

    Args:
        path: A file path.

    Returns:
        `"tflite"` (a TFLite flatbuffer), `"keras"` (a zip archive holding
        `config.json`), `"npz"` (a zip of `.npy` members), `"zip"` (another
        zip), `"npy"`, `"h5"` (HDF5), `"directory"`, `"missing"`, or
        `"unknown"`.

    Example:

    >>> file_kind("/no/such/file")
    'missing'
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return "directory"
    if not os.path.isfile(path):
        return "missing"
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF"):
        return "h5"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        if "config.json" in names:
            return "keras"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "zip"
    return "unknown"


_KIND_NAMES = {
    "tflite": "a TFLite flatbuffer",
    "keras": "a Keras .keras model",
    "npy": "a NumPy .npy array",
    "npz": "a NumPy .npz archive",
    "zip": "a zip archive without a Keras config.json (corrupt or not a .keras model)",
    "h5": "an HDF5 file",
    "directory": "a directory",
    "unknown": "not a file tfopt reads (neither .keras, .tflite, .npy nor .npz: corrupt or another format)",
}


def describe(path):
    """One phrase saying what kind of file `path` is (for error messages)."""
    return _KIND_NAMES.get(file_kind(path), "missing")


def load_model(path):
    """Loads a `.keras` (or legacy `.h5`) model, with tfopt's layers registered.

    Args:
        path: Path to the model file.

    Returns:
        The `keras.Model`.

    Raises:
        ValueError: If the file is missing, is a `.tflite` or data file, is
            not a valid archive (corrupt), or Keras cannot rebuild it; the
            message names the file and says what it is.

    Example:

    ```python
    model = tfopt.compress.load_model("my.keras")
    ```
    """
    path = os.fspath(path)
    kind = file_kind(path)
    if kind == "missing":
        raise ValueError(f"No such model file: {path}")
    if kind == "tflite":
        raise ValueError(
            f"{path} is a TFLite file, not a Keras model: it is already exported "
            "(use `tfopt inspect` or `tfopt bench` on it).")
    if kind not in ("keras", "h5"):
        raise ValueError(f"{path} is not a Keras model: it is {_KIND_NAMES[kind]}.")
    import warnings

    import keras

    import tfopt

    tfopt._register()
    try:
        with warnings.catch_warnings():
            # A compiled model's optimizer variables are not restored (tfopt
            # recompiles for training): Keras's warning about it is noise.
            warnings.filterwarnings("ignore", message=".*optimizer.*")
            return keras.models.load_model(path)
    except Exception as error:  # Keras raises several types for bad archives
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"Cannot load {path} as a Keras model: {first[:300]}") from None


def load_array_file(path, what="data"):
    """Loads a `.npy` array or a `.npz` archive (dict of arrays), no pickles.

    Args:
        path: The file.
        what: How to call the file in error messages.

    Returns:
        A numpy array (`.npy`) or a dict of arrays (`.npz`).

    Raises:
        ValueError: If the file is missing or not a `.npy`/`.npz` file
            (e.g. a text file), or holds pickled objects.

    Example:

    ```python
    x = tfopt.compress.load_array_file("rep.npy")
    ```
    """
    path = os.fspath(path)
    kind = file_kind(path)
    if kind == "missing":
        raise ValueError(f"No such {what} file: {path}")
    if kind not in ("npy", "npz"):
        raise ValueError(
            f"{what} file {path} is not a .npy/.npz file: it is {_KIND_NAMES[kind]}. "
            "Save arrays with numpy.save or numpy.savez.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if kind == "npz":
            with loaded:
                return {name: loaded[name] for name in loaded.files}
        return loaded
    except ValueError as error:
        raise ValueError(
            f"{what} file {path} holds pickled Python objects, not numeric "
            f"arrays ({error}).") from None


def load_data(spec, image_size=None, test_fraction=TEST_FRACTION, seed=0, stream=False):
    """The user's labelled data as `(x_train, y_train, x_test, y_test)`.

    Args:
        spec: A `.npz` file with `x` and `y` (split here, stratified by
            nothing, seeded) or with `x_train`, `y_train`, `x_test`,
            `y_test`; an image folder with one sub-folder per class (read by
            `keras.utils.image_dataset_from_directory`, pixel values 0-255,
            so the model should rescale); or a 4-tuple of arrays (returned
            as is; its x_train/x_test may be `tf.data.Dataset`s of
            `(x, y)`, batched or not, with None labels), or
            `(train_dataset, test_dataset)` (returned as that 4-tuple).
        image_size: `(height, width)` for an image folder (the model's).
        test_fraction: Held-out fraction when the data is not split.
        seed: Seed of the split.
        stream: For an image folder, return the two `tf.data.Dataset`s
            of `(images, labels)` batches (read from disk as used, the
            training one reshuffled every epoch) as `(train, None, test,
            None)` instead of reading every image into arrays.

    Returns:
        `(x_train, y_train, x_test, y_test)` numpy arrays (or datasets, see
        `stream`).

    Raises:
        ValueError: If the file is missing or of the wrong kind, lacks the
            keys, or the folder has no images.

    Example:

    ```python
    x, y, x_test, y_test = tfopt.compress.load_data("data.npz")
    ```
    """
    if isinstance(spec, (tuple, list)) and len(spec) == 4:
        return tuple(spec)
    from tfopt import data as data_lib

    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(
            data_lib._is_dataset(d) for d in spec):
        return (spec[0], None, spec[1], None)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(
            "data must be a path (.npz or image folder) or (x_train, y_train, "
            f"x_test, y_test); got {type(spec).__name__}.")
    path = os.fspath(spec)
    if os.path.isdir(path):
        return _image_folder(path, image_size, test_fraction, seed, stream)
    arrays = load_array_file(path, "--data")
    if not isinstance(arrays, dict):
        raise ValueError(
            f"--data {path} is a single .npy array; give a .npz with x and y "
            "(numpy.savez(path, x=x, y=y)) so there are labels to train on.")
    if all(k in arrays for k in ("x_train", "y_train", "x_test", "y_test")):
        data = tuple(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    elif "x" in arrays and "y" in arrays:
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise ValueError(f"--data {path}: x has {len(x)} examples, y {len(y)}.")
        order = np.random.default_rng(seed).permutation(len(x))
        cut = len(x) - max(1, int(round(test_fraction * len(x))))
        data = (x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]])
    else:
        raise ValueError(
            f"--data {path} has arrays {sorted(arrays)}; expected x and y, or "
            "x_train, y_train, x_test and y_test.")
    x, y, x_test, y_test = data
    return (np.asarray(x, "float32"), np.asarray(y), np.asarray(x_test, "float32"),
            np.asarray(y_test))


def _image_folder(path, image_size, test_fraction, seed, stream=False):
    import keras

    classes = [d for d in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, d))]
    images = [f for c in classes for f in os.listdir(os.path.join(path, c))
              if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not classes or not images:
        raise ValueError(
            f"--data {path}: expected one sub-folder of images per class "
            f"({', '.join(IMAGE_EXTENSIONS)}); found {len(classes)} folder(s) and "
            f"{len(images)} image(s).")
    if image_size is None:
        raise ValueError("An image folder needs image_size=(height, width).")
    train, test = keras.utils.image_dataset_from_directory(
        path, validation_split=test_fraction, subset="both", seed=seed,
        image_size=tuple(image_size), batch_size=64, verbose=False)
    if stream:
        return train, None, test, None

    def arrays(dataset):
        xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
        return np.concatenate(xs).astype("float32"), np.concatenate(ys)

    (x, y), (x_test, y_test) = arrays(train), arrays(test)
    return x, y, x_test, y_test


def _check_recipe(recipe):
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}.")


def _input_names(model):
    import keras

    try:
        return [tensor.name for tensor in keras.tree.flatten(model.inputs or [])]
    except (AttributeError, ValueError):  # an unbuilt Sequential
        return []


def _model_input_shape(model):
    """The example shape of a single-input model (files and the CLI).

    Data files (`.npz`, image folders) and `tfopt compress`/`tfopt bench`
    hold one input; a model of several inputs is compressed from Python.
    """
    names = _input_names(model)
    if len(names) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(names)} inputs {names}: data files (.npz, "
            "image folders) and the tfopt command line take single-input models. "
            "Compress it from Python: tfopt.compress.compress(model, (x, y, x_test, "
            "y_test), recipe, out) with x a list of arrays in input order or a dict by "
            "input name, or with tf.data.Datasets of ((x1, x2), y).")
    return tuple(model.inputs[0].shape[1:])


def _model_inputs(model):
    """One example's shape: a tuple (one input) or `{name: shape}` (several).

    Raises:
        ValueError: For a model without inputs or with several outputs.
    """
    from tfopt import pipeline

    expected = pipeline.model_example_shape(model)
    if expected is None:
        raise ValueError(
            f"Model {model.name!r} has no inputs yet (an unbuilt Sequential?): give "
            "keras.Input(shape) as its first layer, or build it, before compress.")
    outputs = _outputs(model)
    if len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(outputs)} outputs: compress trains and "
            "scores classifiers of one output (one head of integer labels). Compress a "
            "single-output model, or convert this one with tfopt.export.to_tflite and "
            "check it with tfopt.export.verify (both take several outputs).")
    return expected


def _outputs(model):
    """`model`'s output tensors, flattened (a list)."""
    import keras

    try:
        return keras.tree.flatten(model.outputs or [])
    except (AttributeError, ValueError):
        return []


def _check_shape(what, input_name, shape, want, model, batched_or_not=False):
    """Raises if `shape` (one example's, or a batch's) does not fit `want`."""
    shape = tuple(shape)
    if batched_or_not:
        example = shape[-len(want):] if want else ()
        ok = len(shape) in (len(want), len(want) + 1) and all(
            e is None or s is None or e == s for e, s in zip(want, example))
    else:
        ok = len(shape) == len(want) and all(
            e is None or e == s for e, s in zip(want, shape))
    if not ok:
        where = "" if input_name is None else f" input {input_name!r}"
        raise ValueError(
            f"{what}{where} has {'inputs' if batched_or_not else 'examples'} of shape "
            f"{shape}; model {model.name!r} takes {want}"
            + (" (batched or not)." if batched_or_not else "."))


def _inputs_by_name(what, x, expected, model):
    """`[(input name, item)]` of `x` (a list/tuple in input order or a dict)."""
    names = list(expected)
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(
                f"{what} has no input(s) {missing} (keys {sorted(x)}); model "
                f"{model.name!r} takes inputs {names}: key the dict by those names.")
        return [(n, x[n]) for n in names]
    if isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(
                f"{what} gives {len(x)} inputs; model {model.name!r} takes {len(names)} "
                f"inputs {names} (a list in that order, or a dict by name).")
        return list(zip(names, x))
    raise ValueError(
        f"{what} is {type(x).__name__}; model {model.name!r} takes {len(names)} inputs "
        f"{names}: give a list of arrays in that order or a dict by input name.")


def _check_dataset(name, dataset, expected, model):
    """Checks a dataset's `element_spec` against the model's input(s), by name."""
    from tfopt import pipeline

    spec = dataset.element_spec
    several = isinstance(expected, dict)
    labelled = isinstance(spec, (tuple, list)) and len(spec) >= 2 and (
        not several or isinstance(spec[0], (tuple, list, dict)))
    if not labelled:
        raise ValueError(
            f"The {name} dataset yields inputs only ({spec}); map it to (x, y) pairs "
            "with integer labels" + (", x the model's inputs as a tuple or a dict "
                                     f"{list(expected)}." if several else "."))
    if not several:
        x = spec[0]
        if isinstance(x, dict):  # one input keyed by its name
            x = x[_input_names(model)[0]] if _input_names(model)[0] in x else (
                next(iter(x.values())) if len(x) == 1 else None)
        if not hasattr(x, "shape"):
            raise ValueError(
                f"The {name} dataset's inputs are {spec[0]}; model {model.name!r} takes "
                f"one input {_input_names(model)} of shape {expected}: yield (x, y).")
        _check_shape(f"The {name} dataset", None, x.shape, expected, model, True)
        return
    what = f"The {name} dataset"
    for input_name, item in _inputs_by_name(what, pipeline._x_spec(spec, True), expected, model):
        if not hasattr(item, "shape"):
            raise ValueError(
                f"{what} input {input_name!r} is {type(item).__name__}, not a tensor.")
        _check_shape(what, input_name, item.shape, expected[input_name], model, True)


def _check_arrays(name, x, expected, model):
    """Checks array inputs; returns how many examples they hold."""
    if not isinstance(expected, dict):
        if not hasattr(x, "shape"):
            raise TypeError(
                f"{name} must be a numpy array (or the data a tf.data.Dataset), got "
                f"{type(x).__name__}.")
        _check_shape(name, None, x.shape[1:], expected, model)
        return len(x)
    lengths = {}
    for input_name, array in _inputs_by_name(name, x, expected, model):
        if not hasattr(array, "shape"):
            raise TypeError(
                f"{name} input {input_name!r} must be a numpy array, got "
                f"{type(array).__name__}.")
        _check_shape(name, input_name, array.shape[1:], expected[input_name], model)
        lengths[input_name] = len(array)
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name} has inputs of different lengths {lengths}.")
    return next(iter(lengths.values()))


def _check_data(model, data):
    from tfopt import pipeline

    x, y, x_test, y_test = data
    expected = _model_inputs(model)
    datasets = [(n, d) for n, d in (("train", x), ("test", x_test)) if pipeline.is_dataset(d)]
    for name, dataset in datasets:
        labels = y if name == "train" else y_test
        if labels is not None:
            raise ValueError(
                f"The {name} data is a tf.data.Dataset: its labels come from its (x, y) "
                "elements; give None in the label slot.")
        _check_dataset(name, dataset, expected, model)
    if datasets:
        if len(datasets) < 2:
            raise ValueError("Give both the train and the test data as tf.data.Datasets, "
                             "or both as arrays.")
        return
    counts = {name: _check_arrays(name, array, expected, model)
              for name, array in (("x_train", x), ("x_test", x_test))}
    for name, count, labels in (("train", counts["x_train"], y), ("test", counts["x_test"], y_test)):
        if labels is None or len(labels) != count:
            raise ValueError(
                f"The {name} data needs one label per example "
                f"({count} examples, {0 if labels is None else len(labels)} labels).")


def _clone(model):
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _prune(model, data, target, epochs):
    from tfopt import pipeline
    from tfopt import pruning

    steps = pipeline.steps_per_epoch(data[0], example_shape=_model_inputs(model))
    # Ramp over all but the last epoch (at least MIN_RAMP_UPDATES steps),
    # then fine-tune at the final sparsity.
    ramp = max(pruning.schedules.MIN_RAMP_UPDATES - 1, max(1, epochs - 1) * steps)
    schedule = pruning.PolynomialDecay(0.0, target, 0, ramp, frequency=1)
    epochs_needed = max(epochs, int(np.ceil((ramp + 1) / steps)))
    final, _ = pipeline.prune(_clone(model), data[0], data[1], schedule, epochs_needed, seed=0)
    return final


def _make_model(model, data, recipe, epochs):
    """The Keras model to export for `recipe`, and its export mode."""
    from tfopt import pipeline
    from tfopt import pruning

    if recipe == "float":
        return model, None
    if recipe.startswith("ptq-"):
        return model, recipe[len("ptq-"):]
    if recipe.startswith("prune-"):
        return _prune(model, data, int(recipe[len("prune-"):]) / 100, epochs), None
    if recipe == "qat-int8":
        return pipeline.quantize_aware(_clone(model), data[0], data[1], epochs,
                                       learning_rate=QAT_LEARNING_RATE, seed=0), "int8"
    if recipe == "channels-50":
        small = pruning.prune_channels(model, 0.5)
        return pipeline.train(small, data[0], data[1], epochs, seed=0), None
    raise AssertionError(recipe)  # unreachable: checked by _check_recipe


def compress(model, data, recipe, out, epochs=DEFAULT_EPOCHS, verify_examples=512,
             batch_size=EXPORT_BATCH):
    """Applies a compression recipe to a model, exports and verifies it.

    The one recipe pipeline of the `tfopt compress` and `tfopt bench
    FILE.keras` commands: train (when the recipe trains), strip the
    wrappers, export to TFLite, verify against the Keras model on the held
    out data. The model passed in is not modified (recipes that train work
    on a copy).

    Recipes:

    - `"float"`: the model as is, float32.
    - `"ptq-dynamic"`, `"ptq-float16"`, `"ptq-int8"`: post-training
      quantization (int8 calibrated on 200 training examples).
    - `"prune-50"`, `"prune-80"`: magnitude pruning to 50% / 80% inside
      `fit` (a polynomial ramp over all epochs but the last), stripped.
    - `"qat-int8"`: quantization-aware fine-tuning (learning rate 1e-4),
      exported int8.
    - `"channels-50"`: half of the prunable channels removed
      (`tfopt.pruning.prune_channels`), then fine-tuned.

    Training recipes compile with Adam and a sparse cross-entropy matching
    the model's head (softmax or logits): a classifier with integer labels.

    Args:
        model: A `keras.Model` of one output and one or several inputs,
            or a path to a `.keras` file (one input).
        data: `(x_train, y_train, x_test, y_test)`, `(train_dataset,
            test_dataset)` (`tf.data.Dataset`s of `(x, y)`, batched or
            not; streamed for calibration and verification), or a path: a `.npz`
            (`x`/`y` or the four arrays) or an image folder (see
            `load_data`; a folder is streamed). For a model of several
            inputs each `x` is a list of arrays in input order or a dict
            by input name, or the datasets yield `((x1, x2), y)` or
            `({name: x}, y)`; files hold one input only.
        recipe: One of `RECIPES`.
        out: The `.tflite` path to write (its directory must exist).
        epochs: Training epochs of the recipes that train.
        verify_examples: Held-out examples used for verification.
        batch_size: Fixed batch of the exported file (1: the deployment
            shape); None keeps it dynamic.

    Returns:
        A `CompressResult`.

    Raises:
        ValueError: For an unknown recipe, a bad output path, files that
            are missing or of the wrong kind, data that does not fit the
            model (the input named), a model of several outputs, a data
            file for a model of several inputs, or a failed conversion.
        TypeError: If `model` or `data` is of an unsupported type.

    Warns:
        UserWarning: If the written file's top-1 agreement with the Keras
            model on the held-out data is under `tfopt.defaults.WARN_AGREEMENT`
            (0.95), with the likely cause.

    Example:

    ```python
    result = tfopt.compress.compress("my.keras", "data.npz", "prune-80", "my-80.tflite")
    print(result.report["tflite_accuracy"], result.export.size_bytes)
    ```
    """
    import keras

    from tfopt import pipeline

    _check_recipe(recipe)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive int.")
    check_output_path(out)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not isinstance(model, keras.Model):
        raise TypeError(f"compress takes a keras.Model or a .keras path, got {type(model).__name__}.")
    if isinstance(data, (str, os.PathLike)):
        data = load_data(data, image_size=_model_input_shape(model)[:2], stream=True)
    data = load_data(data)
    _check_data(model, data)
    final, mode = _make_model(model, data, recipe, epochs)
    calibrated = mode == "int8" and recipe != "qat-int8"  # QAT carries its ranges
    exported = pipeline.export(final, out, quantization=mode,
                               representative_data=data[0] if calibrated else None,
                               batch_size=batch_size)
    report = pipeline.verify(exported, final, data[2], data[3], examples=verify_examples)
    _warn_if_disagreeing(model, final, recipe, out, report)
    return CompressResult(recipe, os.fspath(out), exported, final, report)


def _warn_if_disagreeing(model, final, recipe, out, report):
    """No silent wrong artifact: a file that disagrees with its model is flagged.

    Top-1 agreement for score vectors; for a one-unit output (a binary
    classifier's logit) the argmax always agrees, so the share of examples
    whose sign agrees is used: the report's mean cosine of scalars is
    `2 * that share - 1`.
    """
    import warnings

    if not report.get("n"):
        return
    agreement = report.get("top1_agreement")
    outputs = final.outputs if hasattr(final, "outputs") else None
    if outputs and len(outputs) == 1 and outputs[0].shape[-1] == 1 and len(outputs[0].shape) == 2:
        agreement = (1.0 + report["cosine_similarity"]) / 2.0
    if agreement is None or agreement >= WARN_AGREEMENT:
        return
    hint = {"ptq-int8": "calibration data unlike the held-out data, or activations int8 cannot "
                        "hold: try 'qat-int8', or ptq-int16x8/float16 with tfopt.export.to_tflite",
            "qat-int8": "train longer so the ranges settle, or check the supported-layers notes"}
    warnings.warn(
        f"compress: the {recipe} file {os.fspath(out)!r} agrees with its Keras model "
        f"{model.name!r} on only {agreement:.1%} of {report['n']} held-out examples (flagged under "
        f"{WARN_AGREEMENT:.0%}); it is written, but expect it to behave differently from the "
        f"model. Likely cause: {hint.get(recipe, 'the conversion')}.",
        UserWarning, stacklevel=3)
