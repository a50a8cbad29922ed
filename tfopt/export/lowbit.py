"""Quantization below int8 of converted TFLite files, with `litert-quantizer`.

`quantize_tflite` takes a float Keras model or a float `.tflite` file and
applies one of LiteRT's quantizer recipes (int4 weights, blockwise int4,
int8 weights with int16 activations, ...) or a per-op recipe. Every file is
loaded and invoked once in the LiteRT interpreter before it is returned, so
a file the CPU runtime cannot run is refused here, not on the device.

The per-op building blocks (`quantizable_ops`, `op_recipe`) are shared with
`tfopt.export.mixed_precision`.
"""

import contextlib
import dataclasses
import io
import os
import re
import warnings

import numpy as np

from tfopt.export.tflite import TFLiteExport

# What one op (a layer's TFLite op) can get. Bytes of a weight element:
# float32 4, float16 2, int8 1, int4 0.5, int2 0.25.
PRECISIONS = ("float32", "float16", "int8", "int16x8", "int4", "int2")

LOWBIT_MODES = (
    "int4_weight_only",
    "int4_dynamic",
    "int4_blockwise",
    "int8_weight_only",
    "int8_dynamic",
    "int16x8",
    "int8",
)
BLOCK_SIZES = (32, 64, 128)

# The ops whose constant weights litert-quantizer quantizes.
WEIGHT_OPS = (
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL",
    "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP",
)
# Which ops each low-bit precision reaches, from litert-quantizer 0.11's
# default policy (`litert_quantizer/default_policy.py`): int4/int2 weights
# are not supported on depthwise convolutions, blockwise only on
# FULLY_CONNECTED and EMBEDDING_LOOKUP.
_INT4_OPS = ("FULLY_CONNECTED", "CONV_2D", "EMBEDDING_LOOKUP")
# litert-quantizer also makes int2 CONV_2D files, but LiteRT 2.3's CPU
# kernel returns NaN for them: int2 is offered on FULLY_CONNECTED only.
_INT2_OPS = ("FULLY_CONNECTED",)
_BLOCKWISE_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")
_DTYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8",
                4: "int64", 7: "int16", 9: "int8", 17: "int4", 19: "int2"}


@dataclasses.dataclass(frozen=True)
class LowBitExport(TFLiteExport):
    """A `TFLiteExport` quantized by litert-quantizer, with its recipe.

    Everything `TFLiteExport` has (so `tfopt.export.verify` takes it), and:

    Attributes:
        recipe: The litert-quantizer recipe applied (a list of dicts; save
            it with `json.dump` and reload it with `recipe=`).
        layers: One dict per weight op of the float file: `op` (TFLite op
            name, e.g. `"CONV_2D"`), `name` (its output tensor, which names
            the Keras layer), `weight_elements`, `precision` it got and
            `weight_dtype` as stored in the file (`"int4"`, `"int8"`, ...).
        output_error: For `mixed_precision` files, the whole file's
            normalised output error against the float file on the
            calibration data; None otherwise.
        top1_agreement: For `mixed_precision` files with a score-vector
            output, the top-1 agreement with the float file on the
            calibration data; None otherwise.
    """

    recipe: list = dataclasses.field(default_factory=list)
    layers: list = dataclasses.field(default_factory=list)
    output_error: float = None
    top1_agreement: float = None


def quantizable_ops(float_content):
    """The weight-carrying ops of a float TFLite file, in graph order.

    Args:
        float_content: The bytes of a float `.tflite` file.

    Returns:
        A list of dicts: `index` (operator index in the main subgraph),
        `op` (e.g. `"FULLY_CONNECTED"`), `name` (first output tensor name),
        `scope` (the regex litert-quantizer matches to this op alone),
        `weight_shape`, `weight_elements`, and `supports`, the tuple of
        `PRECISIONS` the op can take.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(float_content))
    graph = model.subgraphs[0]
    result = []
    for index, operator in enumerate(graph.operators):
        code = model.operatorCodes[operator.opcodeIndex]
        op = _op_name(code)
        if op not in WEIGHT_OPS:
            continue
        # The weight is the op's second input (the table for
        # EMBEDDING_LOOKUP), a constant: a tensor whose buffer holds data.
        if len(operator.inputs) < 2 or operator.inputs[1] < 0:
            continue
        weight = graph.tensors[operator.inputs[1]]
        buffer = model.buffers[weight.buffer]
        if not ((buffer.data is not None and len(buffer.data))
                or (buffer.offset or 0) > 1):
            continue
        if weight.type != 0:
            raise ValueError(
                f"Op {index} ({op}) already has {_DTYPE_NAMES.get(weight.type, weight.type)} "
                "weights; quantize_tflite takes a float file (to_tflite with "
                "quantization=None)."
            )
        name = _tensor_name(graph.tensors[operator.outputs[0]])
        shape = tuple(int(d) for d in weight.shape)
        supports = ["float32", "float16", "int8", "int16x8"]
        if op in _INT4_OPS:
            supports.append("int4")
        if op in _INT2_OPS:
            supports.append("int2")
        result.append({
            "index": index,
            "op": op,
            "name": name,
            "scope": "(^|;)" + re.escape(name) + ";",
            "weight_shape": shape,
            "weight_elements": int(np.prod(shape)),
            "supports": tuple(supports),
        })
    return result


def _op_name(code):
    from ai_edge_litert.tools import flatbuffer_utils

    builtin = flatbuffer_utils.get_builtin_code_from_operator_code(code)
    names = {v: k for k, v in vars(flatbuffer_utils.schema_fb.BuiltinOperator).items()
             if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def _tensor_name(tensor):
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def op_recipe(op, precision, block_size=None):
    """The litert-quantizer recipe entries giving one op one precision.

    Args:
        op: A dict from `quantizable_ops`.
        precision: One of `PRECISIONS`.
        block_size: For `"int4"` on FULLY_CONNECTED: 32, 64 or 128 for
            blockwise scales (None for one scale per output channel).

    Returns:
        A list of recipe dicts (empty for `"float32"`).

    Raises:
        ValueError: If the op cannot take `precision` (naming the op), or
            the block size does not divide the op's input dimension.
    """
    from litert_quantizer import recipe_manager

    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {PRECISIONS}.")
    if precision not in op["supports"]:
        raise ValueError(
            f"litert-quantizer cannot quantize op {op['op']} {op['name']!r} "
            f"to {precision!r}: it supports {', '.join(op['supports'])} there "
            "(int4/int2 weights are not available on DEPTHWISE_CONV_2D)."
        )
    if precision == "float32":
        return []
    manager = recipe_manager.RecipeManager()
    scope, name = op["scope"], op["op"]
    if precision == "float16":
        manager.add_weight_only_config(scope, name, 16,
                                       algorithm_key="float_casting")
    elif precision == "int8":
        manager.add_dynamic_config(scope, name, 8)
    elif precision == "int16x8":
        manager.add_static_config(scope, name, 16, 8)
    elif precision in ("int4", "int2"):
        bits = 4 if precision == "int4" else 2
        granularity = "CHANNELWISE"
        if block_size is not None and name in _BLOCKWISE_OPS:
            if op["weight_shape"][-1] % block_size:
                raise ValueError(
                    f"Op {name} {op['name']!r} has input dimension "
                    f"{op['weight_shape'][-1]}, not divisible by "
                    f"block_size={block_size}."
                )
            granularity = f"BLOCKWISE_{block_size}"
        manager.add_dynamic_config(scope, name, bits, granularity)
    return manager.get_quantization_recipe()


def mode_recipe(ops, mode, block_size=32):
    """The per-op assignment and recipe of one `LOWBIT_MODES` mode.

    Ops a mode's precision cannot reach keep the nearest one they support
    (a depthwise convolution under an int4 mode gets int8 weights; a
    FULLY_CONNECTED whose input dimension the block size does not divide
    gets per-channel int4): the returned assignment says what each got.

    Args:
        ops: From `quantizable_ops`.
        mode: One of `LOWBIT_MODES`.
        block_size: For `"int4_blockwise"`: 32, 64 or 128.

    Returns:
        `(assignment, recipe)`: a list of `(op, precision, block_size)` and
        the litert-quantizer recipe.
    """
    from litert_quantizer import recipe_manager

    assignment = []
    recipe = []
    for op in ops:
        block = None
        if mode in ("int4_weight_only", "int4_dynamic", "int4_blockwise"):
            precision = "int4" if "int4" in op["supports"] else "int8"
            if (mode == "int4_blockwise" and op["op"] in _BLOCKWISE_OPS
                    and op["weight_shape"][-1] % block_size == 0):
                block = block_size
        elif mode in ("int8_weight_only", "int8_dynamic"):
            precision = "int8"
        elif mode == "int16x8":
            precision = "int16x8"
        else:  # "int8"
            precision = "int8_static"
        assignment.append((op, precision, block))
        if mode.endswith("weight_only"):
            manager = recipe_manager.RecipeManager()
            manager.add_weight_only_config(
                op["scope"], op["op"], 4 if precision == "int4" else 8)
            recipe += manager.get_quantization_recipe()
        elif precision == "int8_static":
            manager = recipe_manager.RecipeManager()
            manager.add_static_config(op["scope"], op["op"], 8, 8)
            recipe += manager.get_quantization_recipe()
        else:
            recipe += op_recipe(op, precision, block)
    if mode in ("int16x8", "int8"):
        # Static modes: every supported op (not only weight ops) runs in
        # integers, so the whole graph is one recipe; the model keeps float
        # inputs and outputs (a QUANTIZE/DEQUANTIZE at each end).
        manager = recipe_manager.RecipeManager()
        bits = 16 if mode == "int16x8" else 8
        manager.add_static_config(".*", "*", bits, 8)
        manager.add_quantization_config(".*", "INPUT", None, "no_quantize")
        manager.add_quantization_config(".*", "OUTPUT", None, "no_quantize")
        recipe = manager.get_quantization_recipe()
    return assignment, recipe


def quantize_tflite(
    model,
    path=None,
    mode="int4_blockwise",
    block_size=32,
    recipe=None,
    representative_data=None,
):
    """Quantizes a float model or file below int8 with litert-quantizer.

    Modes (ops a mode cannot reach keep the nearest precision they support;
    `layers` of the result says what each op got):

    - `"int4_weight_only"`: int4 per-channel weights dequantized to float
      before the op (DEQUANTIZE ops); float compute.
    - `"int4_dynamic"`: int4 per-channel weights, activations quantized on
      the fly by the kernel (FULLY_CONNECTED, CONV_2D).
    - `"int4_blockwise"`: as `"int4_dynamic"`, with one scale per
      `block_size` input elements on FULLY_CONNECTED (32, 64 or 128).
    - `"int8_weight_only"`, `"int8_dynamic"`: int8 per-channel weights.
    - `"int16x8"`: static int8 weights with int16 activations, calibrated
      on `representative_data`; float inputs and outputs.
    - `"int8"`: static int8 weights and activations, likewise.
    Depthwise convolutions take no int4 in litert-quantizer 0.11: under the
    int4 modes they get int8 weights.

    Args:
        model: A float Keras model (converted with
            `tfopt.export.to_tflite`), a float `TFLiteExport`, a path to a
            float `.tflite` file, or its bytes.
        path: Where to write the quantized file; None keeps it in memory.
        mode: One of `LOWBIT_MODES` (ignored when `recipe` is given).
        block_size: Block size for `"int4_blockwise"`: 32, 64 or 128.
        recipe: A litert-quantizer recipe (list of dicts, e.g. from a
            previous `LowBitExport.recipe` or `litert_quantizer.recipe`) to
            apply instead of `mode`.
        representative_data: Inputs for calibration (a numpy array
            `(n, *input_shape)`; for a model of several inputs a dict of
            arrays by input name, or a list in the model's input order
            when `model` is a Keras model or the `TFLiteExport` of one),
            needed by the static modes and by any recipe with activation
            quantization.

    Returns:
        A `LowBitExport` (a `TFLiteExport` with `recipe` and `layers`).

    Raises:
        TypeError: If `model` is none of the accepted kinds.
        ValueError: If `mode` or `block_size` is unknown; if the file is
            not float; if the model has no op the mode can quantize; if a
            static mode lacks `representative_data`; if litert-quantizer
            fails (its reason given); or if the LiteRT interpreter cannot
            run the quantized file on CPU.

    Example:

    ```python
    exported = tfopt.export.quantize_tflite(
        model, "model_int4.tflite", mode="int4_blockwise", block_size=32)
    print(exported.size_bytes, exported.layers)
    tfopt.export.verify(exported, model, x_test, y_test)
    ```
    """
    float_content, name = _float_content(model)
    input_order = _input_order(model)
    if recipe is None:
        if mode not in LOWBIT_MODES:
            raise ValueError(
                f"Unknown mode={mode!r}; use one of {', '.join(LOWBIT_MODES)}, "
                "or pass recipe=."
            )
        if mode == "int4_blockwise" and block_size not in BLOCK_SIZES:
            raise ValueError(
                f"block_size={block_size!r} is not supported; use one of {BLOCK_SIZES}."
            )
        ops = quantizable_ops(float_content)
        if not ops:
            raise ValueError(
                f"{name} has no op litert-quantizer can quantize with "
                f"mode={mode!r} (weight ops it knows: {', '.join(WEIGHT_OPS)})."
            )
        assignment, recipe = mode_recipe(ops, mode, block_size)
        label = mode
    else:
        if not isinstance(recipe, (list, tuple)) or not all(
                isinstance(entry, dict) for entry in recipe):
            raise TypeError(
                "recipe must be a litert-quantizer recipe: a list of dicts "
                f"with 'regex', 'operation', 'algorithm_key', 'op_config'; got "
                f"{type(recipe).__name__}."
            )
        ops = quantizable_ops(float_content)
        assignment = None
        label = "recipe"
    content = apply_recipe(float_content, list(recipe), representative_data,
                           label=label, name=name, input_order=input_order)
    return _export(content, path, label, list(recipe), ops, assignment)


def apply_recipe(float_content, recipe, representative_data=None,
                 label="recipe", name="<model>", input_order=None):
    """Runs litert-quantizer with `recipe` on a float file; checks it runs.

    Args:
        float_content: Bytes of the float `.tflite` file.
        recipe: A litert-quantizer recipe (list of dicts).
        representative_data: Calibration inputs, if the recipe needs them:
            an array (one input), a dict by input name (several inputs),
            or a list / `tf.data.Dataset` of the inputs in `input_order`.
        label: What to call the recipe in errors (the mode).
        name: What to call the model in errors.
        input_order: The Keras model's input names in its order (None:
            unknown; several inputs then go by name only, in a dict).

    Returns:
        The quantized file's bytes.

    Raises:
        ValueError: As `quantize_tflite`.
    """
    from litert_quantizer import quantizer

    try:
        engine = quantizer.Quantizer(bytearray(float_content), recipe)
    except Exception as error:  # the recipe manager raises ValueError/KeyError
        raise ValueError(
            f"litert-quantizer refuses the {label} recipe for {name}: {error}"
        ) from None
    calibration = None
    if engine.need_calibration:
        if representative_data is None:
            raise ValueError(
                f"mode={label!r} quantizes activations and needs "
                "representative_data: a numpy array of inputs (e.g. x_train[:200])."
            )
        calibration = _calibrate(engine, float_content, representative_data, name,
                                 input_order)
    try:
        with warnings.catch_warnings():
            # The quantizer's interpreter keeps every tensor and warns so.
            warnings.simplefilter("ignore")
            result = engine.quantize(calibration_result=calibration,
                                     enable_progress_report=False)
    except Exception as error:
        raise ValueError(
            f"litert-quantizer could not apply {label} to {name}: "
            f"{str(error).strip()}"
        ) from None
    content = bytes(result.quantized_model)
    _check_runs(content, label, name)
    return content


def _calibrate(engine, float_content, data, name, input_order=None):
    """Runs litert-quantizer's calibration on `data`, fed by signature input name.

    `data` is read by `tfopt.data.model_batches`: an array for one input;
    for several, a dict by input name, or a list / dataset in the Keras
    model's input order when `input_order` (its input names) is known.
    """
    from ai_edge_litert.interpreter import Interpreter

    from tfopt.data import collect_model_inputs

    interpreter = Interpreter(model_content=bytes(float_content))
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"{name} has {len(signatures)} signatures; one expected.")
    key = next(iter(signatures))
    details = interpreter.get_signature_runner(key).get_input_details()
    names = list(signatures[key]["inputs"])  # the converter sorts them by name
    if input_order is not None and sorted(input_order) == sorted(names):
        names = list(input_order)
    shapes = [tuple(None if int(d) == -1 else int(d) for d in details[n]["shape_signature"][1:])
              for n in names]
    several = len(names) > 1
    try:
        xs, _ = collect_model_inputs(
            data, shapes, names if several else None, name="representative_data",
            positional=not several or input_order is not None)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{error} ({name})") from None
    xs = [np.asarray(x, "float32") for x in xs]
    samples = [{n: x[i:i + 1] for n, x in zip(names, xs)} for i in range(len(xs[0]))]
    # The calibrator keeps every intermediate tensor (and warns so), and
    # draws a progress bar on stderr.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return engine.calibrate({key: samples}, num_threads=1)


def _check_runs(content, label, name):
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            value = rng.uniform(0, 1, detail["shape"])
            interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
        interpreter.invoke()
        for detail in interpreter.get_output_details():
            output = interpreter.get_tensor(detail["index"])
            if np.issubdtype(output.dtype, np.floating) and not np.all(np.isfinite(output)):
                raise RuntimeError("its outputs are not finite (NaN/inf)")
    except Exception as error:
        raise ValueError(
            f"The {label} file litert-quantizer made for {name} does not run in "
            f"the LiteRT CPU interpreter ({str(error).strip()}); LiteRT has no "
            "CPU kernel for that combination. Use a different mode."
        ) from None


def _input_order(model):
    """The Keras input names in input order (None: unknown, e.g. a file)."""
    import keras

    if isinstance(model, keras.Model):
        return [tensor.name for tensor in keras.tree.flatten(model.inputs)]
    return list(getattr(model, "input_names", None) or []) or None


def _float_content(model):
    import keras

    if isinstance(model, keras.Model):
        from tfopt.export.tflite import to_tflite

        return to_tflite(model).content, f"model {model.name!r}"
    if isinstance(model, TFLiteExport):
        if model.quantization is not None:
            raise ValueError(
                f"quantize_tflite takes a float file; this export has "
                f"quantization={model.quantization!r}."
            )
        return model.content, model.path or "<in-memory TFLite export>"
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "<in-memory TFLite bytes>"
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ValueError(f"No such TFLite file: {path}")
        with open(path, "rb") as handle:
            return handle.read(), path
    raise TypeError(
        "quantize_tflite takes a keras.Model, a float TFLiteExport, a path or "
        f"bytes; got {type(model).__name__}."
    )


def weight_dtypes(content):
    """Stored dtype of each weight op's weight tensor, by op output name.

    The interpreter reports int4 tensors as int8; the flatbuffer's own
    tensor type tells int4 (and int2) apart.

    Args:
        content: Bytes of a `.tflite` file.

    Returns:
        A dict `{output tensor name: dtype name}` for the weight ops.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    producers = {}
    for operator in graph.operators:
        for out in operator.outputs:
            producers[out] = operator
    result = {}
    for operator in graph.operators:
        op = _op_name(model.operatorCodes[operator.opcodeIndex])
        if op not in WEIGHT_OPS or len(operator.inputs) < 2:
            continue
        index = operator.inputs[1]
        source = producers.get(index)
        # Weight-only files dequantize the weight with a DEQUANTIZE op.
        if source is not None and _op_name(
                model.operatorCodes[source.opcodeIndex]) == "DEQUANTIZE":
            index = source.inputs[0]
        tensor = graph.tensors[index]
        result[_tensor_name(graph.tensors[operator.outputs[0]])] = \
            _DTYPE_NAMES.get(tensor.type, str(tensor.type))
    return result


def _export(content, path, label, recipe, ops, assignment):
    if path is not None:
        with open(path, "wb") as handle:
            handle.write(content)
    stored = weight_dtypes(content)
    layers = []
    for position, op in enumerate(ops):
        row = {"op": op["op"], "name": op["name"],
               "weight_elements": op["weight_elements"],
               "weight_dtype": stored.get(op["name"], "?")}
        if assignment is not None:
            _, precision, block = assignment[position]
            row["precision"] = precision if block is None else f"{precision}_b{block}"
        else:
            row["precision"] = row["weight_dtype"]
        layers.append(row)
    return LowBitExport.from_content(content, path, label, recipe=recipe, layers=layers)


def weight_values(content):
    """The stored weights of each weight op, read from the flatbuffer.

    Args:
        content: Bytes of a `.tflite` file.

    Returns:
        A dict `{op output tensor name: (dtype name, numpy array)}`: the
        weight as stored (`int8`/`int16` integers, `int4` unpacked to int8
        values -8..7, `float16`/`float32` values), in the file's shape
        (output channel first for Conv and FullyConnected).
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    producers = {out: op for op in graph.operators for out in op.outputs}
    numpy_types = {0: "float32", 1: "float16", 7: "int16", 9: "int8"}
    result = {}
    for operator in graph.operators:
        if _op_name(model.operatorCodes[operator.opcodeIndex]) not in WEIGHT_OPS:
            continue
        if len(operator.inputs) < 2:
            continue
        index = operator.inputs[1]
        source = producers.get(index)
        if source is not None and _op_name(
                model.operatorCodes[source.opcodeIndex]) == "DEQUANTIZE":
            index = source.inputs[0]
        tensor = graph.tensors[index]
        data = model.buffers[tensor.buffer].data
        if data is None or not len(data):
            continue
        raw = np.asarray(data, dtype=np.uint8).tobytes()
        shape = tuple(int(d) for d in tensor.shape)
        if tensor.type == 17:  # int4: two values per byte, low nibble first
            packed = np.frombuffer(raw, np.uint8)
            nibbles = np.stack([packed & 0x0F, packed >> 4], axis=-1).ravel()
            values = np.where(nibbles > 7, nibbles.astype(np.int16) - 16, nibbles)
            array = values.astype(np.int8)[:int(np.prod(shape))].reshape(shape)
            dtype = "int4"
        elif tensor.type in numpy_types:
            dtype = numpy_types[tensor.type]
            array = np.frombuffer(raw, dtype).reshape(shape)
        else:
            continue
        result[_tensor_name(graph.tensors[operator.outputs[0]])] = (dtype, array)
    return result
