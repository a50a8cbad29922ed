"""Per-layer mixed precision under a byte budget, on litert-quantizer.

`mixed_precision` measures, for every weight op of the float TFLite file
and every precision it can take, the output error on calibration data when
only that op is lowered (the file is built and run in the LiteRT
interpreter), then picks one precision per op by a greedy knapsack on
error-increase per byte saved, as HAWQ / MCT's resource-utilisation search
do with their sensitivities. The chosen file is built, run, and its size
checked against the budget: the budget holds for the file's real bytes.
"""

import dataclasses
import warnings

import numpy as np

from tfopt.defaults import WARN_AGREEMENT
from tfopt.export import lowbit

DEFAULT_CANDIDATES = ("float16", "int8", "int16x8", "int4")
# Above this normalised output error (or under WARN_AGREEMENT top-1
# agreement with the float file on the calibration data) the chosen file is
# flagged: int2 on the digits CNN measured 0.19 (agreement 0.78), int4 0.002
# (agreement 1.0).
WARN_ERROR = 0.05


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """What lowering one op alone costs and saves.

    Attributes:
        name: The op's output tensor name (names the Keras layer).
        op: TFLite op (`"CONV_2D"`, ...).
        precision: One of `tfopt.export.lowbit.PRECISIONS`.
        error: Normalised output error on the calibration data,
            `mean((y - y_float)^2) / mean(y_float^2)`.
        delta_bytes: File bytes relative to the float file (negative: saves).
    """

    name: str
    op: str
    precision: str
    error: float
    delta_bytes: int


def measure_sensitivity(float_content, x, candidates=DEFAULT_CANDIDATES,
                        block_size=None, ops=None):
    """Measures every (op, precision) pair by building and running its file.

    Args:
        float_content: Bytes of the float `.tflite` file.
        x: Calibration inputs (a numpy array), also used to calibrate the
            `"int16x8"` op files.
        candidates: Precisions to try (each op gets those it supports).
        block_size: Blockwise int4 on FULLY_CONNECTED (32/64/128) or None.
        ops: From `lowbit.quantizable_ops` (computed if None).

    Returns:
        A list of `Sensitivity`, one per (op, supported candidate), with a
        zero-cost `"float32"` row per op.
    """
    from tfopt.export.verify import run_tflite

    ops = ops if ops is not None else lowbit.quantizable_ops(float_content)
    reference = run_tflite(float_content, x).astype("float64")
    scale = float(np.mean(reference ** 2)) or 1.0
    rows = []
    for op in ops:
        rows.append(Sensitivity(op["name"], op["op"], "float32", 0.0, 0))
        for precision in candidates:
            if precision == "float32" or precision not in op["supports"]:
                continue
            recipe = lowbit.op_recipe(op, precision, _block(op, precision, block_size))
            content = lowbit.apply_recipe(float_content, recipe, x,
                                          label=f"{precision} on {op['name']}")
            output = run_tflite(content, x).astype("float64")
            error = float(np.mean((output - reference) ** 2)) / scale
            rows.append(Sensitivity(op["name"], op["op"], precision, error,
                                    len(content) - len(float_content)))
    return rows


def _block(op, precision, block_size):
    if (precision == "int4" and block_size and op["op"] in ("FULLY_CONNECTED",)
            and op["weight_shape"][-1] % block_size == 0):
        return block_size
    return None


def mixed_precision(
    model,
    budget_bytes,
    representative_data,
    path=None,
    candidates=DEFAULT_CANDIDATES,
    block_size=None,
    max_calibration=64,
    max_rounds=2,
    max_error=None,
):
    """Chooses a precision per layer so the TFLite file fits `budget_bytes`.

    Every weight op (Conv, DepthwiseConv, Dense) gets one of `candidates`
    ("float16" weights, "int8" weights with dynamic activations, "int16x8"
    static int16 activations with int8 weights, "int4" weights; "int2" on
    FULLY_CONNECTED if listed), whichever it supports; other ops stay
    float. The choice minimises the summed single-op output errors
    (`measure_sensitivity`) under the budget, greedily: start with each op
    at its most accurate precision, then repeatedly take the lowering with
    the least error increase per byte saved until the predicted size fits,
    then spend any slack on the most useful raises. Summed single-op errors
    only predict a whole file's, so the greedy choice and each uniform
    assignment that fits are then built, run and measured, and the best is
    improved by single-layer changes while the measured error drops. Only
    files whose real size is within the budget are accepted.

    Args:
        model: A float Keras model, float `TFLiteExport`, path or bytes
            (as `quantize_tflite`).
        budget_bytes: The largest acceptable file size in bytes (an int;
            e.g. `int(0.75 * int8_export.size_bytes)`).
        representative_data: Calibration inputs `(n, *input_shape)`; the
            first `max_calibration` are used.
        path: Where to write the chosen file; None keeps it in memory.
        candidates: The precisions to choose from.
        block_size: Blockwise scales (32/64/128) for int4 FULLY_CONNECTED.
        max_calibration: How many examples measure the sensitivities.
        max_rounds: Rounds of the measured local search (each tries every
            single-layer change that fits; 0 keeps the greedy choice).
        max_error: The largest acceptable normalised output error of the
            chosen file against the float file on the calibration data
            (`mean((y - y_float)^2) / mean(y_float^2)`). If the best file
            under the budget exceeds it, nothing is written and a
            `ValueError` says so. None (default): the file is written, with a
            `UserWarning` when its error exceeds `WARN_ERROR` or its top-1
            agreement with the float file falls under `WARN_AGREEMENT`.

    Returns:
        A `LowBitExport` whose `layers` rows also carry `error` (the
        single-op sensitivity of the chosen precision) and `delta_bytes`,
        whose `output_error` and `top1_agreement` are the whole file's,
        measured against the float file on the calibration data
        (`top1_agreement` is None unless the output is a vector of
        scores), and whose `recipe` reproduces the file with
        `quantize_tflite(..., recipe=...)`.

    Raises:
        ValueError: If `budget_bytes` is not a positive int, is below the
            smallest file the candidates allow (that size is named), a
            candidate is unknown, `max_error` is not a positive number,
            the best file exceeds `max_error`, or as `quantize_tflite`.
        TypeError: If `representative_data` is not an array.

    Example:

    ```python
    int8 = tfopt.export.quantize_tflite(model, mode="int8",
                                        representative_data=x[:200])
    chosen = tfopt.export.mixed_precision(
        model, int(0.75 * int8.size_bytes), representative_data=x[:200])
    for row in chosen.layers:
        print(row["name"], row["precision"], row["error"])
    ```
    """
    if (isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer))
            or budget_bytes <= 0):
        raise ValueError(f"budget_bytes={budget_bytes!r} must be a positive int (bytes).")
    if max_error is not None and (isinstance(max_error, bool) or not isinstance(
            max_error, (int, float, np.floating)) or not max_error > 0):
        raise ValueError(f"max_error={max_error!r} must be a positive number or None.")
    unknown = [c for c in candidates if c not in lowbit.PRECISIONS]
    if unknown or not candidates:
        raise ValueError(
            f"candidates={tuple(candidates)!r}: use some of {lowbit.PRECISIONS}.")
    if not hasattr(representative_data, "shape"):
        raise TypeError(
            "representative_data must be a numpy array of inputs, got "
            f"{type(representative_data).__name__}.")
    float_content, name = lowbit._float_content(model)
    ops = lowbit.quantizable_ops(float_content)
    if not ops:
        raise ValueError(f"{name} has no op litert-quantizer can quantize.")
    x = np.asarray(representative_data[:max_calibration], "float32")
    options = {op["name"]: [c for c in candidates if c in op["supports"]] or ["float32"]
               for op in ops}
    # The smallest file first: if it does not fit, nothing will.
    smallest = {op["name"]: _smallest(options[op["name"]]) for op in ops}
    small_content = _build(float_content, ops, smallest, block_size, x, name)
    if len(small_content) > budget_bytes:
        raise ValueError(
            f"budget_bytes={budget_bytes} is below the smallest file {name} can "
            f"take with candidates {tuple(candidates)}: {len(small_content)} bytes "
            f"(every layer at its lowest precision; the float file has "
            f"{len(float_content)}). Raise the budget, or prune/cluster first.")
    table = {(row.name, row.precision): row for row in measure_sensitivity(
        float_content, x, [c for c in candidates], block_size, ops)}
    choice = {op["name"]: min(options[op["name"]],
                              key=lambda p, n=op["name"]: (table[n, p].error,
                                                           table[n, p].delta_bytes))
              for op in ops}

    def predicted(assignment):
        return len(float_content) + sum(table[n, p].delta_bytes for n, p in assignment.items())

    # The summed single-op errors only predict; whole files are measured
    # next. Candidates: the greedy choice and every uniform assignment that
    # fits (so the result is never worse, measured, than uniform int4 at
    # the same bytes), then single-op changes while they help.
    search = _Search(float_content, ops, block_size, x, name, budget_bytes)
    starts = [_fit(choice, options, table, predicted, budget_bytes, search, smallest),
              smallest]
    for precision in candidates:
        uniform = {op["name"]: precision if precision in options[op["name"]]
                   else _nearest(precision, options[op["name"]]) for op in ops}
        if predicted(uniform) <= budget_bytes + search.slack:
            starts.append(uniform)
    scored = [(search.error(c), i, c) for i, c in enumerate(starts)]
    best_error, _, choice = min((s for s in scored if s[0] is not None),
                                key=lambda s: (s[0], s[1]))
    for _ in range(max_rounds):
        improved = False
        for op in ops:
            for option in options[op["name"]]:
                if option == choice[op["name"]]:
                    continue
                trial = dict(choice, **{op["name"]: option})
                if predicted(trial) > budget_bytes + search.slack:
                    continue
                error = search.error(trial)
                if error is not None and error < best_error:
                    best_error, choice, improved = error, trial, True
        if not improved:
            break
    content = search.content(choice)
    agreement = _top1_agreement(search.run(content, x), search.reference)
    quality = (f"normalised output error {best_error:.3g} against the float file on "
               f"{len(x)} calibration examples"
               + ("" if agreement is None else f", top-1 agreement {agreement:.3f}"))
    precisions = sorted(set(choice.values()))
    if max_error is not None and best_error > max_error:
        raise ValueError(
            f"The best file {name} can take under budget_bytes={budget_bytes} "
            f"({len(content)} bytes, precisions {precisions}) has {quality}, above "
            f"max_error={max_error}. Nothing was written. Raise the budget, leave "
            f"'int2' out of candidates, or prune/cluster the model first.")
    if best_error > WARN_ERROR or (agreement is not None and agreement < WARN_AGREEMENT):
        warnings.warn(
            f"mixed_precision: the file chosen for {name} under budget_bytes="
            f"{budget_bytes} (precisions {precisions}) has {quality}: expect an "
            f"accuracy loss. Check it with tfopt.export.verify, raise the budget, "
            f"or pass max_error= to refuse such a file.", UserWarning, stacklevel=2)
    recipe = _recipe(ops, choice, block_size)
    export = lowbit._export(
        content, path, "mixed", recipe, ops,
        [(op, choice[op["name"]], _block(op, choice[op["name"]], block_size)) for op in ops])
    for row in export.layers:
        sensitivity = table[row["name"], choice[row["name"]]]
        row["error"] = sensitivity.error
        row["delta_bytes"] = sensitivity.delta_bytes
    return dataclasses.replace(export, output_error=best_error, top1_agreement=agreement)


def _top1_agreement(output, reference):
    """Top-1 agreement of two score arrays `(n, classes)`; None otherwise."""
    if output.ndim != 2 or output.shape[-1] < 2:
        return None
    return float(np.mean(np.argmax(output, -1) == np.argmax(reference, -1)))


class _Search:
    """Builds, runs and scores assignments (cached); knows the budget."""

    def __init__(self, float_content, ops, block_size, x, name, budget):
        from tfopt.export.verify import run_tflite

        self.run = run_tflite
        self.args = (float_content, ops, block_size, x, name)
        self.budget = budget
        self.reference = run_tflite(float_content, x).astype("float64")
        self.scale = float(np.mean(self.reference ** 2)) or 1.0
        self.cache = {}
        # How far the predicted size may exceed the budget and still be
        # worth building (the per-op deltas are not exactly additive).
        self.slack = max(256, budget // 50)

    def content(self, choice):
        key = tuple(sorted(choice.items()))
        if key not in self.cache:
            content = _build(*self.args[:2], choice, *self.args[2:])
            self.cache[key] = (content, None)
        return self.cache[key][0]

    def error(self, choice):
        """Normalised output error of the whole file; None if too big."""
        content = self.content(choice)
        key = tuple(sorted(choice.items()))
        if len(content) > self.budget:
            return None
        if self.cache[key][1] is None:
            output = self.run(content, self.args[3]).astype("float64")
            error = float(np.mean((output - self.reference) ** 2)) / self.scale
            self.cache[key] = (content, error)
        return self.cache[key][1]


def _fit(choice, options, table, predicted, budget, search, smallest):
    """Lowers the greedy choice until its real file fits the budget."""
    target = budget
    choice = _raise_within(_lower_until(choice, options, table, predicted, target),
                           options, table, predicted, target)
    while len(search.content(choice)) > budget:
        target -= len(search.content(choice)) - budget
        lowered = _lower_until(choice, options, table, predicted, target)
        choice = smallest if lowered == choice else lowered
    return choice


def _nearest(precision, options):
    order = ("float32", "float16", "int16x8", "int8", "int4", "int2")
    rank = order.index(precision)
    return min(options, key=lambda p: (abs(order.index(p) - rank), -order.index(p)))


def _smallest(options):
    order = {p: i for i, p in enumerate(("float32", "float16", "int16x8", "int8", "int4", "int2"))}
    return max(options, key=lambda p: order[p])


def _lower_until(choice, options, table, predicted, target):
    choice = dict(choice)
    while predicted(choice) > target:
        best = None
        for name, current in choice.items():
            now = table[name, current]
            for option in options[name]:
                row = table[name, option]
                saved = now.delta_bytes - row.delta_bytes
                if saved <= 0:
                    continue
                cost = (row.error - now.error) / saved
                if best is None or cost < best[0]:
                    best = (cost, name, option)
        if best is None:
            break
        choice[best[1]] = best[2]
    return choice


def _raise_within(choice, options, table, predicted, target):
    choice = dict(choice)
    while True:
        best = None
        slack = target - predicted(choice)
        for name, current in choice.items():
            now = table[name, current]
            for option in options[name]:
                row = table[name, option]
                extra = row.delta_bytes - now.delta_bytes
                gain = now.error - row.error
                if gain <= 0 or extra > slack:
                    continue
                value = gain / max(extra, 1)
                if best is None or value > best[0]:
                    best = (value, name, option)
        if best is None:
            return choice
        choice[best[1]] = best[2]


def _recipe(ops, choice, block_size):
    recipe = []
    for op in ops:
        precision = choice[op["name"]]
        recipe += lowbit.op_recipe(op, precision, _block(op, precision, block_size))
    return recipe


def _build(float_content, ops, choice, block_size, x, name):
    recipe = _recipe(ops, choice, block_size)
    if not recipe:
        return bytes(float_content)
    return lowbit.apply_recipe(float_content, recipe, x, label="mixed", name=name)


def format_table(export):
    """A Markdown table of what each layer got in a mixed-precision file.

    Args:
        export: A `LowBitExport` (from `mixed_precision` or
            `quantize_tflite`).

    Returns:
        The table as a string.
    """
    lines = ["| layer (op output) | op | weights | precision | stored | error |",
             "|---|---|---:|---|---|---:|"]
    for row in export.layers:
        error = row.get("error")
        lines.append(
            f"| {row['name']} | {row['op']} | {row['weight_elements']} | "
            f"{row['precision']} | {row['weight_dtype']} | "
            f"{'' if error is None else f'{error:.2e}'} |")
    return "\n".join(lines)
