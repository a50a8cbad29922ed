"""Checks an exported TFLite file against the Keras model it came from."""

import os

import keras
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
            its outputs on `x` already computed (a numpy array; a list of
            arrays for several outputs).
        x: Inputs: a numpy array of shape `(n, *input_shape)`, a list of
            arrays, a `tf.data.Dataset` (batched or not; `(x, y)` elements
            give the labels), or a function returning an iterator of such
            elements. For a model of several inputs, as Keras's `predict`
            takes them: a list of arrays in input order, a dict by input
            name, or a dataset of such (see `tfopt.data.model_batches`).
        y: Optional integer labels (or one-hot rows) for accuracies; taken
            from `x` when it yields `(x, y)` and `y` is None.
        batch_size: Examples per interpreter call.

    Returns:
        A dict: `n`, `max_abs_diff`, `cosine_similarity` (mean over
        examples of the cosine between the flattened outputs),
        `top1_agreement` (fraction of examples whose argmax agrees), and,
        when labels are known, `keras_accuracy` and `tflite_accuracy`
        (argmax). For a model of several outputs, `outputs` holds these
        for each output (in the Keras model's output order);
        `max_abs_diff` is then the largest and `cosine_similarity` the
        smallest over the outputs, while `top1_agreement` and the
        accuracies are the first output's (labels go with it).

    Raises:
        ValueError: If the file is missing or invalid, `x` does not fit
            the file's inputs, or the reference outputs do not match the
            file's in number or shape.
        TypeError: If `x` is none of the accepted forms.

    Example:

    ```python
    exported = tfopt.export.to_tflite(model, quantization="int8",
                                      representative_data=x[:200])
    report = tfopt.export.verify(exported, model, x_test, y_test)
    assert report["tflite_accuracy"] > report["keras_accuracy"] - 0.02
    ```
    """
    reference = keras_model if isinstance(keras_model, (np.ndarray, list, tuple, dict)) else None
    if reference is None and not callable(getattr(keras_model, "predict", None)):
        raise TypeError(
            "verify's keras_model must be a Keras model or a numpy array of its "
            f"outputs, got {type(keras_model).__name__}.")
    if reference is not None and not isinstance(reference, np.ndarray):
        # Several outputs in Keras's order (a dict's keys sorted, as the file's).
        reference = [np.asarray(part) for part in keras.tree.flatten(reference)]
    order = None if reference is not None else _keras_input_names(keras_model)
    tflite_parts, keras_parts, label_parts = [], [], []
    offset = 0
    first = None if reference is not None else _first_output_name(keras_model)
    for x_batch, y_batch, out in _stream(export_or_path, x, batch_size, order, first):
        count = len(x_batch[0]) if isinstance(x_batch, list) else len(x_batch)
        outs = out if isinstance(out, list) else [out]
        if reference is not None:
            refs = reference if isinstance(reference, list) else [reference]
            keras_parts.append([r[offset:offset + count] for r in refs])
        else:
            # Several inputs go in by name: a Functional model of list or
            # dict inputs takes them so.
            inputs = dict(zip(order, x_batch)) if isinstance(x_batch, list) and order else x_batch
            predicted = keras_model.predict(inputs, batch_size=batch_size, verbose=0)
            keras_parts.append([np.asarray(p) for p in keras.tree.flatten(predicted)])
        tflite_parts.append(outs)
        label_parts.append(y_batch)
        offset += count
    if not tflite_parts:
        raise ValueError("x holds no example.")
    tflite_outs = [np.concatenate([part[i] for part in tflite_parts])
                   for i in range(len(tflite_parts[0]))]
    if len(keras_parts[0]) != len(tflite_outs):
        raise ValueError(
            f"The Keras model has {len(keras_parts[0])} outputs, the file "
            f"{len(tflite_outs)}: not the same model.")
    keras_outs = [np.concatenate([part[i] for part in keras_parts])
                  for i in range(len(tflite_outs))]
    if reference is not None and len(keras_outs[0]) != offset:
        raise ValueError(
            f"keras_model holds outputs for {len(keras_outs[0])} examples; x has {offset}.")
    for keras_out, tflite_out in zip(keras_outs, tflite_outs):
        if keras_out.shape != tflite_out.shape:
            raise ValueError(
                f"Keras outputs have shape {keras_out.shape}, TFLite outputs "
                f"{tflite_out.shape}: not the same model or not the same x."
            )
    if y is None and label_parts and all(part is not None for part in label_parts):
        y = np.concatenate(label_parts)
    # Labels go with the first output (Keras's first head).
    reports = [_compare(k, t, y if i == 0 else None)
               for i, (k, t) in enumerate(zip(keras_outs, tflite_outs))]
    if len(reports) == 1:
        return reports[0]
    report = dict(reports[0])
    report["max_abs_diff"] = max(r["max_abs_diff"] for r in reports)
    report["cosine_similarity"] = min(r["cosine_similarity"] for r in reports)
    report["outputs"] = reports
    return report


def _keras_input_names(model):
    """The names of a Keras model's inputs, in its order (None if unknown)."""
    try:
        return [tensor.name for tensor in keras.tree.flatten(model.inputs)]
    except (AttributeError, TypeError, ValueError):
        return None


def _compare(keras_out, tflite_out, y):
    """`verify`'s measures for one output."""
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
        if isinstance(out, list):
            raise ValueError(
                f"evaluate_tflite scores a single-output classifier; this file has "
                f"{len(out)} outputs: use verify(file, model, x, y)['outputs'].")
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
    """Float outputs of a TFLite file on `x`.

    Args:
        export_or_path: A `TFLiteExport`, a path, or the file's bytes.
        x: Inputs, in any form `verify` takes.
        batch_size: Examples per interpreter call.

    Returns:
        A float32 numpy array of shape `(n, *output_shape)`, dequantized
        if the file's output is an integer type; for a file of several
        outputs, a list of them (in the Keras model's output order).

    Raises:
        ValueError: See `verify`.
    """
    parts = [out for _, _, out in _stream(export_or_path, x, batch_size)]
    if not parts:
        raise ValueError("x holds no example.")
    if isinstance(parts[0], list):
        return [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
    return np.concatenate(parts)


def _first_output_name(model):
    """The name of the output labels score (Keras's first head), or None."""
    output = getattr(model, "output", None) if hasattr(model, "outputs") else None
    if isinstance(output, dict):
        return sorted(output)[0]  # flattened as keras.tree sorts a dict
    names = getattr(model, "output_names", None)
    return names[0] if names else None


def _stream(export_or_path, x, batch_size, input_order=None, label_key=None):
    """Yields `(x_batch, y_batch, tflite_outputs)` over the batches of `x`.

    For a file of several inputs `x_batch` is a list of arrays (in
    `input_order`, the Keras model's input names, when given; else the
    file's order); for several outputs `tflite_outputs` is a list (in the
    Keras model's output order: the file's `output_0`, `output_1`, ...).
    """
    from ai_edge_litert.interpreter import Interpreter

    from tfopt.data import model_batches

    name, content = _content(export_or_path)
    if input_order is None and getattr(export_or_path, "input_names", None):
        input_order = list(export_or_path.input_names)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int.")
    try:
        interpreter = Interpreter(model_content=content)
    except Exception as error:
        raise ValueError(f"{name} is not a valid TFLite model: {error}") from None
    inputs = _ordered_inputs(interpreter.get_input_details(), input_order, name)
    outputs = _ordered_outputs(interpreter)
    signatures = [[int(d) for d in detail["shape_signature"]] for detail in inputs]
    examples = [tuple(None if d == -1 else d for d in signature[1:]) for signature in signatures]
    fixed = signatures[0][0] != -1
    allocated = None
    try:
        # Without the model's input order (a file read from disk, outputs
        # given as arrays) only inputs by name are unambiguous: the
        # converter does not keep the model's order.
        batches = model_batches(x, examples, [detail["tfopt_name"] for detail in inputs],
                                name="x", positional=input_order is not None,
                                outputs=len(outputs), label_key=label_key)
    except ValueError as error:
        raise ValueError(f"{error} ({name})") from None
    for arrays, y_batch in batches:
        x_batch = arrays if len(inputs) > 1 else arrays[0]
        n = len(arrays[0])
        # A fixed batch is folded into the graph (e.g. Flatten's reshape), so
        # such a file only runs at its own batch size.
        chunk = signatures[0][0] if fixed else min(batch_size, max(n, 1))
        results = [[] for _ in outputs]
        for start in range(0, n, chunk):
            batch = [array[start:start + chunk] for array in arrays]
            count = len(batch[0])
            if fixed and count < chunk:
                batch = [np.concatenate([b, np.zeros((chunk - count, *b.shape[1:]), b.dtype)])
                         for b in batch]
            if batch[0].shape[0] != allocated:
                if not fixed:
                    for detail, b in zip(inputs, batch):
                        interpreter.resize_tensor_input(detail["index"], b.shape)
                interpreter.allocate_tensors()
                allocated = batch[0].shape[0]
            for detail, b in zip(inputs, batch):
                interpreter.set_tensor(detail["index"], _quantize(b, detail))
            interpreter.invoke()
            for parts, target in zip(results, outputs):
                parts.append(_dequantize(interpreter.get_tensor(target["index"]), target)[:count])
        outs = [np.concatenate(parts) for parts in results]
        yield x_batch, y_batch, outs[0] if len(outs) == 1 else outs


def _input_name(detail):
    """The Keras input name of a file input (`serving_default_NAME:0`)."""
    tensor = detail["name"]
    if tensor.startswith("serving_default_"):
        tensor = tensor[len("serving_default_"):]
    return tensor.rsplit(":", 1)[0]


def _ordered_inputs(details, input_order, name):
    """The file's inputs, each with its Keras name, in `input_order` if given."""
    details = [dict(detail, tfopt_name=_input_name(detail)) for detail in details]
    if input_order is None or len(details) == 1:
        return details
    by_name = {detail["tfopt_name"]: detail for detail in details}
    if sorted(by_name) != sorted(input_order):
        raise ValueError(
            f"{name} has inputs {sorted(by_name)}; the Keras model's are "
            f"{sorted(input_order)}: not the same model.")
    return [by_name[n] for n in input_order]


def _ordered_outputs(interpreter):
    """The file's outputs in the Keras model's order (signature `output_K`)."""
    details = interpreter.get_output_details()
    if len(details) == 1:
        return details
    try:
        runner = interpreter.get_signature_runner()
        named = runner.get_output_details()
    except Exception:  # noqa: BLE001 - a file without a signature: its own order
        return details
    # Keras's output order: `output_K` by K for a list of outputs, the
    # keys sorted for a dict of outputs (as `keras.tree.flatten` orders them).
    numbered = all(k.startswith("output_") and k[len("output_"):].isdigit() for k in named)
    keys = sorted(named, key=lambda k: int(k[len("output_"):])) if numbered else sorted(named)
    by_index = {detail["index"]: detail for detail in details}
    if len(keys) != len(details) or any(named[k]["index"] not in by_index for k in keys):
        return details
    return [by_index[named[k]["index"]] for k in keys]


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
