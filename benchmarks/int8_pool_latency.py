"""Which int8 ops make a LiteRT int8 file slower than its float file on CPU?

NASNetMobile's PTQ and QAT int8 files ran 5.8x slower than its float file in
the zoo suite. This builds five small nets (20 blocks of 1x1 Conv2D on a
16x16x32 map, each followed by nothing, AveragePooling2D(3, 1, "same"),
MaxPooling2D(3, 1, "same"), a residual Add, or a Concatenate), exports each
float and PTQ int8 at batch 1, and times every file single-threaded with the
default XNNPACK delegate and without any delegate (LiteRT's own kernels),
interleaved rounds, median of the rounds' medians.

Usage:
    python benchmarks/int8_pool_latency.py [--rounds 5] [--out FILE.md]
"""

import argparse
import os
import platform
import time

import numpy as np

KINDS = ("plain", "avgpool", "maxpool", "add", "concat")


def _net(kind):
    import keras

    layers = keras.layers
    inputs = keras.Input((16, 16, 32))
    x = inputs
    for _ in range(20):
        y = layers.Conv2D(32, 1)(x)
        if kind == "avgpool":
            y = layers.AveragePooling2D(3, 1, padding="same")(y)
        elif kind == "maxpool":
            y = layers.MaxPooling2D(3, 1, padding="same")(y)
        elif kind == "add":
            y = layers.Add()([y, x])
        elif kind == "concat":
            y = layers.Conv2D(32, 1)(layers.Concatenate()([y[..., :16], x[..., :16]]))
        x = y
    return keras.Model(inputs, layers.GlobalAveragePooling2D()(x))


def _median_ms(content, delegate, runs=50):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    kwargs = {} if delegate else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = Interpreter(model_content=content, num_threads=1, **kwargs)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.rand(*detail["shape"]).astype(detail["dtype"]))
    for _ in range(5):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from tfopt import export

    representative = np.random.default_rng(0).random((64, 16, 16, 32)).astype("float32")
    files = {}
    for kind in KINDS:
        model = _net(kind)
        files[kind] = {"float": export.to_tflite(model, batch_size=1).content,
                       "int8": export.to_tflite(model, batch_size=1, quantization="int8",
                                                representative_data=representative).content}
    cells = [(kind, precision, delegate) for kind in KINDS for precision in ("float", "int8")
             for delegate in (True, False)]
    samples = {cell: [] for cell in cells}
    for _ in range(args.rounds):  # interleaved: every file once per round
        for kind, precision, delegate in cells:
            samples[(kind, precision, delegate)].append(
                _median_ms(files[kind][precision], delegate))
    load = os.getloadavg()
    lines = ["# int8 vs float per op kind, LiteRT CPU, batch 1, 1 thread", "",
             f"Command: `python benchmarks/int8_pool_latency.py --rounds {args.rounds}`; "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
             f"{load[0]:.1f}; median over rounds of each round's median of 50 runs, ms "
             "[min-max over rounds].", "",
             "| 20 blocks of | float, XNNPACK | float, no delegate | int8, XNNPACK | int8, no delegate "
             "| int8 / float (XNNPACK) |", "|---|---|---|---|---|---|"]

    def cell(kind, precision, delegate):
        values = samples[(kind, precision, delegate)]
        return f"{np.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"

    for kind in KINDS:
        ratio = (np.median(samples[(kind, "int8", True)]) / np.median(samples[(kind, "float", True)]))
        lines.append(f"| {kind} | {cell(kind, 'float', True)} | {cell(kind, 'float', False)} | "
                     f"{cell(kind, 'int8', True)} | {cell(kind, 'int8', False)} | {ratio:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
