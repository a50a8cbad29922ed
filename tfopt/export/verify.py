"""Checks an exported TFLite file against the Keras model it came from."""

import os

import numpy as np

_INTEGER_IO = (np.int8, np.uint8, np.int16)


def verify(export_or_path, keras_model, x, y=None, batch_size=256):
    """Runs a TFLite file and the Keras model on `x` and compares them.

    The file runs in the LiteRT interpreter (XNNPACK by default), in chunks
    of `batch_size`: a file with a dynamic batch is resized to the chunk, a
    file with a fixed batch is fed batches of its own size (the last one
    padded). Integer inputs are quantized and integer outputs dequantized
    with the file's own scale and zero point, so int8-io files compare on
    the same scale as the Keras outputs. A dataset or generator is streamed
    batch by batch (only the outputs are kept).

    Args:
        export_or_path: A `TFLiteExport`, a path to a `.tflite` file, or
            its bytes.
        keras_model: The reference: a Keras model (run with `predict`), or
            a numpy array of its outputs on `x` already computed.
        x: Inputs: a numpy array of shape `(n, *input_shape)`, a list of
            arrays, a `tf.data.Dataset` (batched or not; `(x, y)` elements
            give the labels), or a function returning an iterator of such
            elements (see `tfopt.data.input_batches`).
        y: Optional integer labels (or one-hot rows) for accuracies; taken
            from `x` when it yields `(x, y)` and `y` is None.
        batch_size: Examples per interpreter call.

    Returns:
        A dict: `n`, `max_abs_diff`, `cosine_similarity` (mean over
        examples of the cosine between the flattened outputs),
        `top1_agreement` (fraction of examples whose argmax agrees), and,
        when labels are known, `keras_accuracy` and `tflite_accuracy`
        (argmax).

    Raises:
        ValueError: If the file is missing or invalid, the model has more
            than one input or output, `x` does not fit the file's input,
            or the reference outputs do not match the file's in shape.
        TypeError: If `x` is none of the accepted forms.

    Example:

    ```python
    exported = tfopt.export.to_tflite(model, quantization="int8",
                                      representative_data=x[:200])
    report = tfopt.export.verify(exported, model, x_test, y_test)
    assert report["tflite_accuracy"] > report["keras_accuracy"] - 0.02
    ```
    """
    reference = keras_model if isinstance(keras_model, np.ndarray) else None
    if reference is None and not callable(getattr(keras_model, "predict", None)):
        raise TypeError(
            "verify's keras_model must be a Keras model or a numpy array of its "
            f"outputs, got {type(keras_model).__name__}.")
    tflite_parts, keras_parts, label_parts = [], [], []
    offset = 0
    for x_batch, y_batch, out in _stream(export_or_path, x, batch_size):
        if reference is not None:
            keras_parts.append(reference[offset:offset + len(x_batch)])
        else:
            keras_parts.append(np.asarray(
                keras_model.predict(x_batch, batch_size=batch_size, verbose=0)))
        tflite_parts.append(out)
        label_parts.append(y_batch)
        offset += len(x_batch)
    tflite_out = np.concatenate(tflite_parts)
    keras_out = np.concatenate(keras_parts)
    if reference is not None and len(reference) != offset:
        raise ValueError(
            f"keras_model holds outputs for {len(reference)} examples; x has {offset}.")
    if keras_out.shape != tflite_out.shape:
        raise ValueError(
            f"Keras outputs have shape {keras_out.shape}, TFLite outputs "
            f"{tflite_out.shape}: not the same model or not the same x."
        )
    if y is None and label_parts and all(part is not None for part in label_parts):
        y = np.concatenate(label_parts)
    n = len(tflite_out)
    keras_flat = keras_out.reshape(n, -1).astype("float64")
    tflite_flat = tflite_out.reshape(n, -1).astype("float64")
    norms = np.linalg.norm(keras_flat, axis=1) * np.linalg.norm(tflite_flat, axis=1)
    dots = np.sum(keras_flat * tflite_flat, axis=1)
    # Two all-zero outputs agree perfectly; one zero output does not at all.
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0),
                      np.all(keras_flat == tflite_flat, axis=1).astype(float))
    keras_top = keras_flat.argmax(axis=1)
    tflite_top = tflite_flat.argmax(axis=1)
    report = {
        "n": int(n),
        "max_abs_diff": float(np.max(np.abs(keras_flat - tflite_flat))) if n else 0.0,
        "cosine_similarity": float(np.mean(cosine)) if n else 0.0,
        "top1_agreement": float(np.mean(keras_top == tflite_top)) if n else 0.0,
    }
    if y is not None:
        labels = _labels(y, n)
        report["keras_accuracy"] = float(np.mean(keras_top == labels))
        report["tflite_accuracy"] = float(np.mean(tflite_top == labels))
    return report


def evaluate_tflite(export_or_path, x, y=None, batch_size=256):
    """Top-1 accuracy of a TFLite classifier on `(x, y)`.

    Args:
        export_or_path: A `TFLiteExport`, a path to a `.tflite` file, or
            its bytes.
        x: Inputs, in any form `verify` takes (a `tf.data.Dataset` of
            `(x, y)` carries its own labels).
        y: Integer labels (or one-hot rows); None when `x` yields them.
        batch_size: Examples per interpreter call.

    Returns:
        The fraction of examples whose output argmax equals the label.

    Raises:
        ValueError: As `verify`, if `y` does not have one label per
            example, or if there are no labels at all.

    Example:

    ```python
    accuracy = tfopt.export.evaluate_tflite("model.tflite", x_test, y_test)
    ds = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(64)
    accuracy = tfopt.export.evaluate_tflite("model.tflite", ds)
    ```
    """
    hits, n = 0, 0
    outputs = []
    for _, y_batch, out in _stream(export_or_path, x, batch_size):
        top = out.reshape(len(out), -1).argmax(axis=1)
        if y is None:
            if y_batch is None:
                raise ValueError(
                    "evaluate_tflite needs labels: pass y, or x as a dataset of (x, y).")
            hits += int(np.sum(top == _labels(y_batch, len(out))))
        else:
            outputs.append(top)
        n += len(out)
    if y is None:
        return hits / n if n else 0.0
    top = np.concatenate(outputs) if outputs else np.zeros(0, int)
    return float(np.mean(top == _labels(y, n))) if n else 0.0


def run_tflite(export_or_path, x, batch_size=256):
    """Float outputs of a single-input, single-output TFLite file on `x`.

    Args:
        export_or_path: A `TFLiteExport`, a path, or the file's bytes.
        x: Inputs, in any form `verify` takes.
        batch_size: Examples per interpreter call.

    Returns:
        A float32 numpy array of shape `(n, *output_shape)`, dequantized
        if the file's output is an integer type.

    Raises:
        ValueError: See `verify`.
    """
    parts = [out for _, _, out in _stream(export_or_path, x, batch_size)]
    if not parts:
        raise ValueError("x holds no example.")
    return np.concatenate(parts)


def _stream(export_or_path, x, batch_size):
    """Yields `(x_batch, y_batch, tflite_outputs)` over the batches of `x`."""
    from ai_edge_litert.interpreter import Interpreter

    from tfopt.data import input_batches

    name, content = _content(export_or_path)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int.")
    try:
        interpreter = Interpreter(model_content=content)
    except Exception as error:
        raise ValueError(f"{name} is not a valid TFLite model: {error}") from None
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"{name} has {len(inputs)} inputs and {len(outputs)} outputs; "
            "verify handles single-input, single-output models."
        )
    source, target = inputs[0], outputs[0]
    signature = [int(d) for d in source["shape_signature"]]
    example = tuple(None if d == -1 else d for d in signature[1:])
    fixed = signature[0] != -1
    allocated = None
    try:
        batches = input_batches(x, example, name="x")
    except ValueError as error:
        raise ValueError(f"{error} ({name})") from None
    for x_batch, y_batch in batches:
        n = len(x_batch)
        # A fixed batch is folded into the graph (e.g. Flatten's reshape), so
        # such a file only runs at its own batch size.
        chunk = signature[0] if fixed else min(batch_size, max(n, 1))
        results = []
        for start in range(0, n, chunk):
            batch = x_batch[start:start + chunk]
            count = len(batch)
            if fixed and count < chunk:
                pad = np.zeros((chunk - count, *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, pad])
            if batch.shape[0] != allocated:
                if not fixed:
                    interpreter.resize_tensor_input(source["index"], batch.shape)
                interpreter.allocate_tensors()
                allocated = batch.shape[0]
            interpreter.set_tensor(source["index"], _quantize(batch, source))
            interpreter.invoke()
            result = interpreter.get_tensor(target["index"])
            results.append(_dequantize(result, target)[:count])
        yield x_batch, y_batch, np.concatenate(results)


def _content(export_or_path):
    from tfopt.export.tflite import TFLiteExport

    if isinstance(export_or_path, TFLiteExport):
        return export_or_path.path or "<in-memory TFLite export>", export_or_path.content
    if isinstance(export_or_path, (bytes, bytearray)):
        return "<in-memory TFLite bytes>", bytes(export_or_path)
    if isinstance(export_or_path, (str, os.PathLike)):
        path = os.fspath(export_or_path)
        from tfopt.export.inspect import check_tflite_file

        check_tflite_file(path)
        with open(path, "rb") as handle:
            return path, handle.read()
    raise TypeError(
        "Expected a TFLiteExport, a path or bytes, got "
        f"{type(export_or_path).__name__}."
    )


def _quantize(batch, detail):
    dtype = detail["dtype"]
    if dtype in _INTEGER_IO:
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        values = np.round(batch / scale) + zero_point
        return np.clip(values, info.min, info.max).astype(dtype)
    return batch.astype(dtype)


def _dequantize(result, detail):
    if detail["dtype"] in _INTEGER_IO:
        scale, zero_point = detail["quantization"]
        return ((result.astype("float32") - zero_point) * scale).astype("float32")
    return result.astype("float32")


def _labels(y, n):
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if len(labels) != n:
        raise ValueError(f"y has {len(labels)} labels for {n} examples.")
    return labels
