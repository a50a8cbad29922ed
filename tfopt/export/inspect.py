"""Facts read back out of a TFLite flatbuffer with the LiteRT interpreter."""

import os

import numpy as np

from tfopt.export.tflite import gzip_size


def inspect_tflite(path_or_bytes):
    """Reads ops, io and weights out of a `.tflite` file.

    The file is read with the LiteRT `Interpreter`, which is constructed but
    never allocated: before allocation only constant tensors (those backed
    by the flatbuffer's buffers) have data, so "`get_tensor` succeeds" is
    exactly "is a constant". This also works for files with Flex ops, which
    construct but cannot allocate without the Flex delegate.

    Args:
        path_or_bytes: A path to a `.tflite` file, or its bytes.

    Returns:
        A dict with `path` (None for bytes), `size_bytes`, `gzip_bytes`,
        `ops` (sorted op names), `flex_ops` (the `Flex...` ones), `inputs`
        and `outputs` (dicts: `name`, `shape` with -1 for dynamic
        dimensions, `dtype`, `quantization` as `(scale, zero_point)`), and
        `weights` (dicts for constant tensors: `name`, `dtype`, `shape`,
        `size`, `zero_fraction`, `sparse`).

    Raises:
        ValueError: If the file does not exist or is not a valid TFLite
            model (the message names the file).
        TypeError: If `path_or_bytes` is neither a path nor bytes.

    Example:

    ```python
    facts = tfopt.export.inspect_tflite("model.tflite")
    print(facts["ops"], [w["dtype"] for w in facts["weights"]])
    ```
    """
    from ai_edge_litert.interpreter import Interpreter

    path, content = _read(path_or_bytes)
    name = path if path is not None else "<in-memory TFLite bytes>"
    try:
        interpreter = Interpreter(model_content=content)
        op_names = {op["op_name"] for op in interpreter._get_ops_details()}
        tensors = interpreter.get_tensor_details()
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
    except Exception as error:  # ValueError/RuntimeError from the runtime
        raise ValueError(
            f"{name} is not a valid TFLite model: {str(error).strip()}"
        ) from None
    io_indices = {d["index"] for d in inputs} | {d["index"] for d in outputs}
    weights = []
    for detail in tensors:
        if detail["index"] in io_indices:
            continue
        try:
            data = interpreter.get_tensor(detail["index"])
        except ValueError:  # no data before allocation: not a constant
            continue
        weights.append(_weight(detail, data))
    ops = sorted(op_names)
    return {
        "path": path,
        "size_bytes": len(content),
        "gzip_bytes": gzip_size(content),
        "ops": ops,
        "flex_ops": [op for op in ops if op.startswith("Flex")],
        "inputs": [_io(d) for d in inputs],
        "outputs": [_io(d) for d in outputs],
        "weights": weights,
    }


def _read(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return None, bytes(path_or_bytes)
    if not isinstance(path_or_bytes, (str, os.PathLike)):
        raise TypeError(
            "inspect_tflite takes a path or bytes, got "
            f"{type(path_or_bytes).__name__}."
        )
    path = os.fspath(path_or_bytes)
    check_tflite_file(path)
    with open(path, "rb") as handle:
        return path, handle.read()


def check_tflite_file(path):
    """Raises a one-line ValueError unless `path` is an existing `.tflite` file."""
    from tfopt.compress import describe
    from tfopt.compress import file_kind

    kind = file_kind(path)
    if kind == "missing":
        raise ValueError(f"No such TFLite file: {path}")
    if kind != "tflite":
        hint = " (export it first with tfopt.export.to_tflite)" if kind == "keras" else ""
        raise ValueError(f"{path} is not a TFLite file: it is {describe(path)}{hint}.")


def _io(detail):
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(d) for d in detail["shape_signature"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": (float(scale), int(zero_point)),
    }


def _weight(detail, data):
    shape = [int(d) for d in detail["shape"]]
    size = int(np.prod(shape)) if shape else 1
    sparse = bool(detail.get("sparsity_parameters"))
    # A sparse tensor stores only its kept values: count the zeros of the
    # dense tensor it stands for.
    nonzero = int(np.count_nonzero(data))
    return {
        "name": detail["name"],
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": shape,
        "size": size,
        "zero_fraction": (size - nonzero) / size if size else 0.0,
        "sparse": sparse,
    }


# The ops that hold a model's multiply-accumulates; "share of int8 compute
# ops" counts these.
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
               "TRANSPOSE_CONV", "CONV_3D", "CONV_3D_TRANSPOSE")
# The operand a compute op computes on, where it is not the first data input
# (TRANSPOSE_CONV and CONV_3D_TRANSPOSE: output_shape, weights, data, bias).
_DATA_INPUT = {"TRANSPOSE_CONV": 2, "CONV_3D_TRANSPOSE": 2}
# Ops that only move data between precisions.
_CASTS = ("QUANTIZE", "DEQUANTIZE", "CAST")


def op_precision(path_or_bytes):
    """Which operators of a `.tflite` file run in int8, and which in float.

    An op's precision is the dtype of its first input (the activation it
    computes on): `int8` for an integer kernel, `float32` for an op the
    converter left float between DEQUANTIZE and QUANTIZE.

    Args:
        path_or_bytes: A path to a `.tflite` file, or its bytes (e.g.
            `TFLiteExport.content`).

    Returns:
        A dict with `ops` (one dict per operator in execution order:
        `index`, `op`, `input_dtype`, `output_dtype`, `compute`),
        `compute_ops` (the number of `COMPUTE_OPS`: CONV_2D,
        DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL, TRANSPOSE_CONV,
        CONV_3D and CONV_3D_TRANSPOSE ops; the TF converter leaves the last
        two float),
        `int8_compute_ops`, `int8_share` (their ratio; None without compute
        ops), `float_compute` and `float_other` (`{op name: count}` of the
        compute and other ops whose input is float; QUANTIZE, DEQUANTIZE and
        CAST are not counted).

    Raises:
        ValueError: If the file is missing or not a TFLite model.
        TypeError: If `path_or_bytes` is neither a path nor bytes.

    Example:

    ```python
    exported = tfopt.export.to_tflite(model, quantization="int8",
                                      representative_data=x[:200])
    precision = tfopt.export.op_precision(exported.content)
    print(precision["int8_share"], precision["float_compute"])
    ```
    """
    from ai_edge_litert.interpreter import Interpreter

    path, content = _read(path_or_bytes)
    name = path if path is not None else "<in-memory TFLite bytes>"
    try:
        interpreter = Interpreter(model_content=content)
        details = interpreter._get_ops_details()
        dtypes = {t["index"]: np.dtype(t["dtype"]).name
                  for t in interpreter.get_tensor_details()}
    except Exception as error:  # ValueError/RuntimeError from the runtime
        raise ValueError(
            f"{name} is not a valid TFLite model: {str(error).strip()}"
        ) from None
    ops, float_compute, float_other = [], {}, {}
    for op in details:
        position = _DATA_INPUT.get(op["op_name"])
        if position is not None and len(op["inputs"]) > position and op["inputs"][position] >= 0:
            # Its data, not its weights: int8 weights on float data is a
            # float (hybrid) kernel.
            inputs = [op["inputs"][position]]
        else:
            inputs = [i for i in op["inputs"] if i >= 0]
            # Skip index-like operands (SPLIT's axis, ...) to the data input.
            data_inputs = [i for i in inputs if dtypes.get(i) not in ("int32", "int64", "bool")]
            inputs = data_inputs or inputs
        outputs = [i for i in op["outputs"] if i >= 0]
        row = {
            "index": int(op["index"]),
            "op": op["op_name"],
            "input_dtype": dtypes.get(inputs[0]) if inputs else None,
            "output_dtype": dtypes.get(outputs[0]) if outputs else None,
            "compute": op["op_name"] in COMPUTE_OPS,
        }
        ops.append(row)
        if row["input_dtype"] in ("float32", "float16") and op["op_name"] not in _CASTS:
            bucket = float_compute if row["compute"] else float_other
            bucket[row["op"]] = bucket.get(row["op"], 0) + 1
    compute = [row for row in ops if row["compute"]]
    int8 = [row for row in compute if row["input_dtype"] == "int8"]
    return {
        "ops": ops,
        "compute_ops": len(compute),
        "int8_compute_ops": len(int8),
        "int8_share": len(int8) / len(compute) if compute else None,
        "float_compute": float_compute,
        "float_other": float_other,
    }
