"""Conversion of Keras models to TFLite (LiteRT) flatbuffers.

`to_tflite` covers float export and the converter's post-training
quantization modes, and returns a `TFLiteExport` that already holds the facts
a user checks next (ops, io dtypes and quantization, per-weight dtypes and
zeros), read back from the written flatbuffer by `tfopt.export.inspect`.
"""

import dataclasses
import gzip
import os
import re
import tempfile
import warnings

import keras
import numpy as np

from tfopt import _compat
from tfopt.compress import check_output_path
from tfopt.defaults import CALIBRATED_MODES

QUANTIZATION_MODES = ("auto", None, "float", "dynamic", "float16", "int8", "int16x8")
# Modes whose converter calibrates activations on a representative dataset.
# Calibration reads at most this many examples of `representative_data`
# (a dataset or generator is streamed and stopped there).
CALIBRATION_EXAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """A converted model, its sizes and what the flatbuffer contains.

    Attributes:
        path: Where the file was written, or None if kept in memory.
        content: The flatbuffer bytes.
        size_bytes: Size of the file.
        gzip_bytes: Size after `gzip -9`, the measure tfmot's guides use
            for what sparsity saves in transfer and storage.
        ops: Sorted names of the operators the file uses (`"CONV_2D"`,
            `"FULLY_CONNECTED"`, ... and `"Flex..."` for select TF ops).
        flex_ops: The select-TF (Flex) ops among `ops`; empty unless the
            model was converted with `allow_select_tf_ops=True` and needed
            them. A runtime without the Flex delegate cannot run those.
        inputs: One dict per input: `name`, `shape` (the signature, -1 for
            a dynamic dimension), `dtype` (e.g. `"float32"`, `"int8"`) and
            `quantization` `(scale, zero_point)` (`(0.0, 0)` if float).
        outputs: The same for the outputs.
        weights: One dict per constant tensor holding data: `name`,
            `dtype`, `shape`, `size` (element count), `zero_fraction` and
            `sparse` (stored in TFLite's sparse format).
        quantization: The quantization mode used (None for float).
        input_names: The Keras model's input names in its input order
            (set by `to_tflite`; empty for a file read from disk). `verify`
            and `run_tflite` feed a list of arrays by them.
    """

    path: str | None
    content: bytes
    size_bytes: int
    gzip_bytes: int
    ops: list = dataclasses.field(default_factory=list)
    flex_ops: list = dataclasses.field(default_factory=list)
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)
    quantization: str | None = None
    input_names: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_content(cls, content, path=None, quantization=None, **extra):
        """Builds the record of a flatbuffer: sizes and what it contains.

        Args:
            content: The `.tflite` bytes.
            path: Where they were written, or None.
            quantization: The mode label.
            **extra: Fields of a subclass (e.g. `LowBitExport.recipe`).

        Returns:
            An instance of `cls`.
        """
        from tfopt.export.inspect import inspect_tflite

        facts = inspect_tflite(content)
        return cls(path=path, content=content, size_bytes=len(content),
                   gzip_bytes=gzip_size(content), ops=facts["ops"],
                   flex_ops=facts["flex_ops"], inputs=facts["inputs"],
                   outputs=facts["outputs"], weights=facts["weights"],
                   quantization=quantization, **extra)


def gzip_size(content):
    """Bytes of `content` compressed with gzip at level 9.

    Args:
        content: The bytes to measure (e.g. a `.tflite` flatbuffer).

    Returns:
        The compressed length in bytes (`mtime=0`, so it is reproducible).

    Example:

    >>> gzip_size(b"\\0" * 1000) < 1000
    True
    """
    return len(gzip.compress(content, compresslevel=9, mtime=0))


def to_tflite(
    model,
    path=None,
    quantization="auto",
    representative_data=None,
    int8_io=False,
    sparsity=False,
    batch_size=None,
    allow_select_tf_ops=False,
    unroll_rnn=True,
    isolate="auto",
    rnn_calibration="time_shifted",
):
    """Converts a Keras model to a TFLite file, float or quantized.

    The model is exported as a SavedModel (Keras 3's `model.export`, with an
    explicit input signature) and converted with TFLite builtin ops only, so
    an op TFLite lacks fails here, at conversion, and not on the device.

    Quantization modes (post-training, all by the TFLite converter):

    - `"auto"` (the default): `"int8"` for a QAT model (one from
      `tfopt.quantization.quantize_model`, whose fake-quant ranges are its
      calibration), float otherwise.
    - `None` or `"float"`: float32 weights and activations. Asked for
      explicitly on a QAT model it warns: the file then keeps the
      fake-quant ops and is larger than the float model.
    - `"dynamic"`: int8 weights, float activations (`Optimize.DEFAULT`).
      The converter leaves tensors under 1,024 elements in float32, so a
      tiny model may come out unchanged.
    - `"float16"`: float16 weights, dequantized at load time.
    - `"int8"`: full integer (int8 weights and activations, int32 biases),
      calibrated on `representative_data`. Inputs and outputs stay float32
      unless `int8_io`. On this converter an op with no int8 kernel does
      not fail: it silently stays float between DEQUANTIZE and QUANTIZE
      ops, so check `ops` and `weights` when full integer matters.
      A model from `tfopt.quantization.quantize_model` (QAT) carries its
      ranges in fake-quant ops and needs no `representative_data`.
    - `"int16x8"`: int16 activations, int8 weights, calibrated likewise:
      more accurate than int8, with fewer and slower kernels.

    Args:
        model: A built Keras model with defined input shapes. A model still
            wrapped for pruning (`prune_low_magnitude`) is passed through
            `tfopt.pruning.strip_pruning` first, with a warning (strip it
            yourself to silence it).
        path: Where to write the `.tflite` file; None keeps it in memory.
            Its directory must exist and be writable: this is checked before
            the (slow) conversion.
        quantization: One of `"auto"`, `None`/`"float"`, `"dynamic"`,
            `"float16"`, `"int8"`, `"int16x8"`.
        representative_data: Inputs to calibrate activation ranges, only for
            `"int8"` and `"int16x8"` of a non-QAT model (given otherwise it
            would be ignored, so it is an error): a numpy array of shape
            `(n, *input_shape)`, a list of arrays, a `tf.data.Dataset`
            (batched or not, `(x, y)` elements allowed: labels are dropped)
            or a function returning an iterator of `[x_batch]` lists (the
            converter's own form). For a model of several inputs: a list of
            arrays in its input order, a dict by input name, or a dataset
            of such (`tfopt.data.model_batches`); each input is fed
            to the converter by name. At most `CALIBRATION_EXAMPLES` (1,000)
            examples are read; a few hundred training examples suffice.
        int8_io: Make the file's input and output int8 too (only with
            `"int8"`); feed it with the input's own scale and zero point.
        sparsity: Also store sparse weights in TFLite's sparse format
            (`Optimize.EXPERIMENTAL_SPARSITY`). The written model is then
            loaded, allocated and invoked once in the LiteRT interpreter
            (XNNPACK by default), because some combinations convert into
            files the runtime refuses.
        batch_size: Fix the input's batch dimension to this size. None (the
            default) keeps it dynamic: the file is allocated at batch 1 and
            can be resized to any batch. A fixed batch cannot be resized
            (shapes such as Flatten's are folded into constants).
        allow_select_tf_ops: Allow select TensorFlow ops (Flex) for ops
            TFLite has no builtin for; the file then needs the Flex delegate.
        unroll_rnn: Convert a clone whose LSTM/GRU/SimpleRNN layers are
            unrolled over their (static) time steps (see
            `unroll_recurrent`): every op then has a TFLite int8 kernel, at
            any batch size. False keeps the while loop (float export only:
            int8 fails, and crashes the converter at batch 1).
        rnn_calibration: How an unrolled recurrent model is calibrated for
            `"int8"`/`"int16x8"`. `"time_shifted"` (the default) adds
            circular time shifts of `representative_data` (see
            `time_shifted`), so that every unrolled step's ranges cover
            what any step sees: right when an event may occur at any
            position (keywords, tokens). `"as_given"` calibrates on
            `representative_data` exactly as given: for sequences whose
            position matters and whose shifts are not realistic inputs
            (a trend, a sequence padded at one end), where a shift can
            widen the ranges needlessly. (A model of several inputs is
            calibrated as given either way.)
        isolate: Run the converter in a child process, so that a converter
            crash (segfault, abort) raises `ConversionError` here instead of
            killing this process. It costs a fresh Python + TensorFlow
            import per export (several seconds), so `"auto"` (the default)
            isolates only the case known to crash: recurrent layers left as
            loops. True always, False never.

    Returns:
        A `TFLiteExport` with the bytes, sizes, ops, io and weight facts.

    Raises:
        TypeError: If `model` is not a Keras model, or
            `representative_data` is none of the accepted forms.
        ValueError: If the model is not built or has undefined input
            dimensions; if `quantization` is unknown; if `"int8"` or
            `"int16x8"` lacks `representative_data` or its example shape
            does not match the model's input; if `representative_data` is
            given where it would be ignored; if `int8_io` is used without
            `"int8"`; if `path`'s directory is missing or not writable; or if
            `sparsity=True` gives a file the interpreter cannot run.
        ConversionError: (a `ValueError` and a `RuntimeError`) if the
            converter fails (ops TFLite lacks are named) or, isolated,
            crashes (the signal is named, `error.signal`).

    Example:

    ```python
    exported = tfopt.export.to_tflite(
        final, "model.tflite", quantization="int8",
        representative_data=x_train[:200])
    print(exported.size_bytes, exported.gzip_bytes, exported.ops)
    ```
    """
    check_output_path(path)
    if rnn_calibration not in RNN_CALIBRATIONS:
        raise ValueError(f"rnn_calibration must be one of {RNN_CALIBRATIONS}, "
                         f"got {rnn_calibration!r}.")
    model = _strip_if_wrapped(model)
    quantization = _resolve_quantization(model, quantization)
    signature, input_specs, calibration = _validate(
        model, quantization, representative_data, int8_io, batch_size
    )
    isolate = _check_isolate(isolate)
    name = model.name
    if unroll_rnn:
        model = unroll_recurrent(model)
        if rnn_calibration == "time_shifted":
            calibration = time_shifted(model, calibration)
    # A QAT model's fake-quant ranges are int8 ranges: they replace
    # calibration for "int8" only; other modes calibrate like any model
    # (the same rule as `_validate`).
    qat = quantization == "int8" and _is_qat(model)
    job = {
        "has_rnn_loops": any(not _unrolled(layer) for layer in recurrent_layers(model)),
        "model_name": name,
        "quantization": quantization,
        "int8_io": bool(int8_io),
        "sparsity": bool(sparsity),
        "allow_select_tf_ops": bool(allow_select_tf_ops),
        "qat": bool(qat),
        "batch_size": batch_size,
        "input_dtype": input_specs[0].dtype.name,
        "input_names": [spec.name for spec in input_specs],
        "input_dtypes": [spec.dtype.name for spec in input_specs],
    }
    if isolate == "auto":  # the one case known to crash the converter here
        isolate = job["has_rnn_loops"]
    with tempfile.TemporaryDirectory() as tmp:
        job["saved_model"] = os.path.join(tmp, "saved_model")
        model.export(
            job["saved_model"], format="tf_saved_model", verbose=False,
            input_signature=signature,
        )
        calibrate = quantization in CALIBRATED_MODES and not qat
        if isolate:
            content = _convert_in_child(job, calibration if calibrate else None, tmp)
        else:
            try:
                content = convert_saved_model(job, calibration if calibrate else None)
            except Exception as error:  # the converter raises several types
                raise _conversion_error(name, error, allow_select_tf_ops) from None
    if sparsity:
        _check_runs(model, content, quantization)
    if path is not None:
        with open(path, "wb") as handle:
            handle.write(content)
    return TFLiteExport.from_content(content, path, quantization,
                                     input_names=[spec.name for spec in input_specs])


def _strip_if_wrapped(model):
    """A model still wrapped for pruning or clustering is stripped (with a warning)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"to_tflite takes a keras.Model, got {type(model).__name__}.")
    from tfopt import clustering
    from tfopt import pruning

    if clustering.cluster_wrappers(model):
        try:
            stripped = clustering.strip_clustering(model)
        except TypeError:
            stripped = None  # subclassed: exported as it is (centroids gathered)
        if stripped is not None:
            warnings.warn(
                f"to_tflite: model {model.name!r} still has clustering wrappers; it was "
                "exported through tfopt.clustering.strip_clustering (the file holds the "
                "clustered weights, not centroids and indices). Call strip_clustering "
                "yourself before export to silence this warning.",
                stacklevel=3,
            )
            model = stripped
    if not pruning.api.pruning_wrappers(model):
        return model
    try:
        stripped = pruning.strip_pruning(model)
    except TypeError:
        # A subclassed model cannot be cloned; in inference its wrappers are
        # constant masks that the converter folds, so the file is right.
        return model
    warnings.warn(
        f"to_tflite: model {model.name!r} still has pruning wrappers; it was "
        "exported through tfopt.pruning.strip_pruning (the file holds the "
        "masked weights, without mask variables). Call strip_pruning "
        "yourself before export to silence this warning.",
        stacklevel=3,
    )
    return stripped


def _resolve_quantization(model, quantization):
    """Maps `"auto"` to int8 for QAT models, float otherwise."""
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"Unknown quantization={quantization!r}; use one of "
            f"{', '.join(repr(m) for m in QUANTIZATION_MODES)}."
        )
    qat = _is_qat(model)
    if quantization == "auto":
        return "int8" if qat else None
    if quantization == "float":
        quantization = None
    if quantization is None and qat:
        warnings.warn(
            f"to_tflite: {model.name!r} is a QAT model, exported as float as "
            "asked: the file keeps the fake-quant ops and is larger than the "
            "float model. Its natural export is quantization='int8' (the "
            "default 'auto' does that).",
            stacklevel=3,
        )
    return quantization


def _validate(model, quantization, representative_data, int8_io, batch_size):
    """Checks the arguments; returns the export signature and its specs."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"to_tflite takes a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built; give it an Input shape first."
        )
    if int8_io and quantization != "int8":
        raise ValueError(
            f"int8_io=True needs quantization='int8' (got {quantization!r}): "
            "only a fully integer model can take and return int8."
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size={batch_size!r} must be a positive int or None.")
    signature = _input_signature(model, batch_size)
    leaves = keras.tree.flatten(signature)
    for spec in leaves:
        if any(dim is None for dim in spec.shape[1:]):
            raise ValueError(
                f"Model {model.name!r} has an input of shape "
                f"{tuple(spec.shape)} with undefined dimensions; TFLite "
                "export needs every dimension but the batch defined."
            )
    if quantization == "int16x8" and _is_qat(model):
        # Its fake-quant nodes become int8 QUANTIZE/DEQUANTIZE pairs, which
        # the converter cannot give 16-bit activations.
        raise ValueError(
            f"Model {model.name!r} is a QAT (fake-quant int8) model: TFLite's converter "
            "cannot make it int16x8. Export it with quantization='int8', or export the "
            "float model it came from with 'int16x8'."
        )
    # A QAT model carries its own ranges (fake-quant ops): no calibration.
    qat = quantization == "int8" and _is_qat(model)
    if representative_data is not None and (quantization not in CALIBRATED_MODES or qat):
        why = ("a QAT model takes its int8 ranges from its fake-quant ops"
               if qat else f"quantization={quantization!r} does not calibrate")
        raise ValueError(
            f"representative_data would be ignored: {why}. Drop it, or use "
            "quantization='int8' or 'int16x8' (post-training calibration of "
            "a non-QAT model)."
        )
    if quantization in CALIBRATED_MODES and not qat:
        if representative_data is None:
            raise ValueError(
                f"quantization={quantization!r} calibrates activation ranges "
                "and needs representative_data: inputs such as x_train[:200] "
                "or a tf.data.Dataset."
            )
        calibration = _check_representative(representative_data, leaves, batch_size)
    else:
        calibration = None
    return signature, leaves, calibration


def _is_qat(model):
    from tfopt.quantization.api import is_quantized

    return is_quantized(model)


def _input_signature(model, batch_size):
    import tensorflow as tf

    try:
        specs = _compat.get_input_signature(model)
    except ValueError as error:
        raise ValueError(
            f"Model {model.name!r} has no defined input shape: {error}"
        ) from None

    leaves = keras.tree.flatten(specs)
    # Every input gets a name: it is the SavedModel signature's key, by
    # which calibration and `verify` feed a model of several inputs (a
    # subclassed model's specs have none).
    fixed = [tf.TensorSpec((batch_size, *spec.shape[1:]), spec.dtype or "float32",
                           name=getattr(spec, "name", None) or f"input_{i}")
             for i, spec in enumerate(leaves)]
    return keras.tree.pack_sequence_as(specs, fixed)


def _check_representative(data, specs, batch_size):
    """Reads the calibration examples once, checking their shapes up front.

    One reader for one input or several (`tfopt.data.collect_model_inputs`):
    returns the array of a one-input model, else one array per input in
    `specs` order (fed to the converter by the specs' names).
    """
    from tfopt.data import collect_model_inputs

    xs, _ = collect_model_inputs(
        data, [tuple(spec.shape[1:]) for spec in specs],
        [spec.name for spec in specs], CALIBRATION_EXAMPLES, name="representative_data")
    if len(xs[0]) < (batch_size or 1):
        raise ValueError(
            f"representative_data has {len(xs[0])} examples; at least "
            f"{batch_size or 1} needed."
        )
    return xs[0] if len(specs) == 1 else xs


# -- the conversion core: in this process or in a child -----------------------

# Seconds a child conversion may take before it is stopped (a hung converter
# is reported like a crash).
CHILD_TIMEOUT = 1800


class ConversionError(ValueError, RuntimeError):
    """The TFLite converter failed or crashed on a model.

    A `ValueError` (what callers catching bad models expect, and what every
    conversion failure raised before) and a `RuntimeError` (a crash of the
    converter is not the caller's bad value).

    Attributes:
        model_name: The Keras model's name.
        signal: For a converter that crashed in an isolated child process,
            the signal's name (e.g. `"SIGSEGV"`); None for an ordinary
            conversion failure.
    """

    def __init__(self, message, model_name=None, signal=None):
        super().__init__(message)
        self.model_name = model_name
        self.signal = signal


def convert_saved_model(job, representative_data=None):
    """Converts an exported SavedModel to TFLite bytes (the conversion core).

    `to_tflite` calls this in its own process, or in a child process
    (`python -m tfopt.export._isolated`) when it isolates the conversion.

    Args:
        job: A dict with `saved_model` (the directory), `quantization`,
            `int8_io`, `sparsity`, `allow_select_tf_ops`, `qat`,
            `batch_size` and `input_dtype`.
        representative_data: Calibration inputs (a numpy array, or a list
            of arrays in `job["input_names"]` order for a model of several
            inputs) when the mode calibrates, else None.

    Returns:
        The flatbuffer bytes.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(job["saved_model"])
    # With fake-quant ops the converter takes every range from them;
    # asking for TFLITE_BUILTINS_INT8 would make it demand calibration.
    _configure(converter, job["quantization"], job["int8_io"], job["sparsity"],
               job["allow_select_tf_ops"], qat=job["qat"])
    if isinstance(representative_data, (list, tuple)):  # one array per input
        converter.representative_dataset = _representative_inputs(
            representative_data, job["input_names"], job["input_dtypes"], job["batch_size"])
    elif representative_data is not None:
        spec = tf.TensorSpec((None,), job["input_dtype"])
        converter.representative_dataset = _representative_dataset(
            representative_data, spec, job["batch_size"]
        )
    return converter.convert()


def _check_isolate(isolate):
    if isolate not in (True, False, "auto"):
        raise ValueError(f"isolate={isolate!r} must be True, False or 'auto'.")
    return isolate


def _convert_in_child(job, representative_data, tmp):
    """Runs `convert_saved_model` in a fresh Python process.

    A crash there (segfault, abort) ends the child only; it comes back as a
    `ConversionError` naming the model and the signal.
    """
    import json
    import signal as signal_lib
    import subprocess
    import sys

    job = dict(job, out=os.path.join(tmp, "model.tflite"),
               error=os.path.join(tmp, "error.txt"))
    if representative_data is not None:
        if isinstance(representative_data, (list, tuple)):  # one array per input
            job["representative"] = os.path.join(tmp, "representative.npz")
            np.savez(job["representative"], *representative_data)
        else:
            job["representative"] = os.path.join(tmp, "representative.npy")
            np.save(job["representative"], np.asarray(representative_data))
    job_path = os.path.join(tmp, "job.json")
    with open(job_path, "w") as handle:
        json.dump(job, handle)
    # The child imports this very copy of tfopt.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    name = job["model_name"]
    what = f"quantization={job['quantization']!r}, batch_size={job['batch_size']!r}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tfopt.export._isolated", job_path],
            env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(
            f"TFLite conversion of {name!r} ({what}) did not finish in "
            f"{CHILD_TIMEOUT} s; the converter process was stopped.",
            model_name=name, signal="timeout") from None
    if done.returncode == 0 and os.path.isfile(job["out"]):
        with open(job["out"], "rb") as handle:
            return handle.read()
    if os.path.isfile(job["error"]):  # an ordinary conversion error
        with open(job["error"]) as handle:
            text = handle.read()
        raise _conversion_error(name, RuntimeError(text), job["allow_select_tf_ops"])
    if done.returncode < 0:
        try:
            signal_name = signal_lib.Signals(-done.returncode).name
        except ValueError:
            signal_name = f"signal {-done.returncode}"
    else:  # the child failed before converting (import error, memory...)
        tail = "\n".join((done.stderr or "").strip().splitlines()[-20:])
        raise ConversionError(
            f"The conversion child process for {name!r} ({what}) failed with exit status "
            f"{done.returncode} before it could report a conversion error; its last "
            f"output:\n{tail}",
            model_name=name, signal=None)
    raise ConversionError(
        f"The TFLite converter crashed ({signal_name}) converting {name!r} "
        f"({what}); it ran in a child process, so only that process died. "
        f"{_crash_hint(job)}",
        model_name=name, signal=signal_name)


def _crash_hint(job):
    if job.get("has_rnn_loops"):
        return ("The model keeps recurrent layers as while loops "
                "(unroll_rnn=False); export with unroll_rnn=True, or float.")
    return ("Try another quantization mode or batch_size, or simplify the "
            "model (the crash is inside TensorFlow's converter).")


# -- recurrent layers ---------------------------------------------------------


def recurrent_layers(model):
    """The recurrent layers (RNN subclasses, Bidirectional) of `model`.

    Nested models are searched too.

    Args:
        model: A Keras model.

    Returns:
        A list of layers.
    """
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += recurrent_layers(layer)
    return found


def _set_unroll(config):
    """Sets `unroll=True` in a layer config and the RNN configs inside it."""
    config = dict(config)
    if "unroll" in config:
        config["unroll"] = True
    for key in ("layer", "backward_layer"):
        inner = config.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            config[key] = dict(inner, config=_set_unroll(inner["config"]))
    return config


def unroll_recurrent(model):
    """A copy of `model` whose recurrent layers are unrolled (`unroll=True`).

    Keras 3's LSTM/GRU/SimpleRNN run a `while` loop over time steps. The
    TFLite converter does not fuse Keras 3 recurrent layers into its
    UNIDIRECTIONAL_SEQUENCE_LSTM kernel (it recognises only tf.keras's
    annotated functions), so the loop stays a WHILE op whose TensorList
    state fails int8 conversion (`TensorListReserve`) and, at batch 1,
    crashes the converter. Unrolled, each time step is plain
    FULLY_CONNECTED/ADD/MUL/LOGISTIC/TANH ops that all have int8 kernels,
    for a static sequence length (TFLite export needs one anyway).

    Args:
        model: A Sequential or Functional model (nested models included).
            Any other model, or one without recurrent layers, is returned
            as it is.

    Returns:
        The model itself if nothing needs unrolling, else a clone sharing
        nothing with it, with the same weights.
    """
    from tfopt import graph

    rnns = recurrent_layers(model)
    if not rnns or not graph.is_graph_model(model):
        return model
    if all(_unrolled(layer) for layer in rnns):
        return model

    def clone_layer(layer):
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            new = layer.__class__.from_config(_set_unroll(layer.get_config()))
            return new, layer.get_weights()
        return layer, None  # shared: the clone is only exported

    return graph.clone_with(model, clone_layer)


# The values of `to_tflite(rnn_calibration=...)`.
RNN_CALIBRATIONS = ("time_shifted", "as_given")
# Most calibration examples `time_shifted` makes (each input example is
# repeated at most once per time step).
RNN_CALIBRATION_EXAMPLES = 4096
# ... and at most this many bytes of them (long sequences of many features).
RNN_CALIBRATION_BYTES = 256 * 2**20


def time_shifted(model, data):
    """Calibration inputs for an unrolled recurrent model: each sequence at every time shift.

    Unrolled, every time step is its own ops with its own calibrated int8
    range, set by what the representative sequences held at that step. An
    event that is rare per step (a keyword at one position of 32) leaves
    some steps calibrated without it, and the file clips it there: the
    zoo's GRU classifier calibrated on 128 sequences lost 11 points
    (keyword position 9 never occurred in them; logit error 83% of the
    range). Circularly shifting each sequence over the time axis shows
    every step every event, so each step's ranges cover what any step
    sees, as one range per tensor role would (the original sequences are
    kept: ranges only widen).

    Applied when the model has one input and recurrent layers whose
    sequence length is its axis 1 (the input is the sequence: tokens `(T,)`
    or features `(T, F)`); anything else, a model of several inputs
    included, is returned unchanged.

    Args:
        model: The model to convert (after `unroll_recurrent`).
        data: Calibration inputs, a numpy array, or None.

    Returns:
        The inputs with the shifted copies after them (at most
        `RNN_CALIBRATION_EXAMPLES` rows and `RNN_CALIBRATION_BYTES` bytes,
        shifts evenly spaced), or `data`.
    """
    if data is None or len(getattr(model, "inputs", None) or []) != 1:
        return data
    data = np.asarray(data)
    steps = data.shape[1] if data.ndim >= 2 else 0
    lengths = set()
    for layer in recurrent_layers(model):
        try:
            lengths.add(layer.input.shape[1])
        except (AttributeError, ValueError, IndexError, TypeError):
            return data  # a layer used more than once or without a static shape
    if steps < 2 or lengths != {steps}:
        return data
    count = max(1, min(steps, RNN_CALIBRATION_EXAMPLES // max(len(data), 1),
                       RNN_CALIBRATION_BYTES // max(data.nbytes, 1)))
    shifts = np.unique(np.linspace(0, steps, count, endpoint=False).astype(int))
    return np.concatenate([np.roll(data, int(s), axis=1) for s in shifts])


def _unrolled(layer):
    if isinstance(layer, keras.layers.Bidirectional):
        return _unrolled(layer.forward_layer) and _unrolled(layer.backward_layer)
    return bool(getattr(layer, "unroll", False))


def _representative_dataset(data, input_spec, batch_size):
    data = np.asarray(data, dtype=input_spec.dtype.as_numpy_dtype)
    # A fixed batch must be fed whole batches; a dynamic one is calibrated
    # an example at a time (the calibrator resizes the input to fit).
    step = batch_size or 1

    def generate():
        for start in range(0, len(data) - step + 1, step):
            yield [data[start:start + step]]

    return generate


def _representative_inputs(arrays, names, dtypes, batch_size):
    """The converter's calibration feed for several inputs: dicts by input name
    (the SavedModel signature's keys; the file's input order need not be the
    model's)."""
    arrays = [np.asarray(a, dtype=dtype) for a, dtype in zip(arrays, dtypes)]
    step = batch_size or 1

    def generate():
        for start in range(0, len(arrays[0]) - step + 1, step):
            yield {name: a[start:start + step] for name, a in zip(names, arrays)}

    return generate


def _configure(converter, quantization, int8_io, sparsity, allow_select_tf_ops, qat=False):
    import tensorflow as tf

    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    optimizations = []
    if quantization is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8" and not qat:
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif quantization == "int16x8":
        ops = [tf.lite.OpsSet
               .EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if allow_select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.optimizations = optimizations
    converter.target_spec.supported_ops = ops


def _conversion_error(model_name, error, allow_select_tf_ops):
    text = str(error)
    # The converter's message is a full MLIR dump; these two summary lines
    # are what a user needs: ops that select TF ops would cover, and ops
    # that nothing but a custom kernel would.
    select = _listed_ops(text, "TF Select ops:")
    custom = _listed_ops(text, "Custom ops:")
    custom += [op for op in re.findall(
        r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)
        if op not in custom and op not in select]
    lacking = (
        f" Op(s) {', '.join(custom)} have neither a TFLite builtin nor a "
        "select TensorFlow kernel; replace them in the model (or register a "
        "custom op)." if custom else ""
    )
    if select and not allow_select_tf_ops:
        return ConversionError(
            f"TFLite conversion of {model_name!r} failed: no TFLite builtin "
            f"for op(s) {', '.join(select)}. Pass allow_select_tf_ops=True to "
            "use select TensorFlow ops (the runtime then needs the Flex "
            "delegate), or replace those ops." + lacking
        )
    if custom:
        return ConversionError(f"TFLite conversion of {model_name!r} failed:" + lacking)
    # Otherwise the useful part is the op's complaint after the location
    # noise: "error: loc(...): 'tfl.x' op operand #0 must be ...".
    complaints = re.findall(r"error: (?:loc\(.*?\)\)+: )?('[\w.]+' op [^\n]+)", text)
    first = complaints[0] if complaints else "\n".join(text.strip().splitlines()[:8])
    return ConversionError(f"TFLite conversion of {model_name!r} failed: {first}")


def _listed_ops(text, label):
    ops = []
    for line in text.splitlines():
        if line.strip().startswith(label):
            for op in line.strip()[len(label):].split(","):
                op = op.strip()
                if op and op not in ops:
                    ops.append(op)
    return ops


def _check_runs(model, content, quantization):
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(
                detail["index"], np.zeros(detail["shape"], detail["dtype"])
            )
        interpreter.invoke()
    except Exception as error:  # the interpreter raises RuntimeError/ValueError
        raise ValueError(
            f"sparsity=True gave a TFLite file for {model.name!r} "
            f"(quantization={quantization!r}) that the LiteRT interpreter "
            f"cannot run ({str(error).strip()}). int8 with "
            "EXPERIMENTAL_SPARSITY is a known case XNNPACK refuses; export "
            "with sparsity=False (gzip still captures the zeros) or use "
            "float, 'dynamic' or 'float16'."
        ) from None
