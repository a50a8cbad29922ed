"""The `tfopt` command line.

    tfopt bench --suite quick|standard --out DIR  benchmark suite: JSON, Markdown, PNGs
        [--device auto|cpu|gpu] [--threads N]

    tfopt export MODEL.keras --out MODEL.tflite   TFLite export (float by default;
        --quantization dynamic|float16|int8|int16x8,
        --representative-data digits8|digits16|digits28|FILE.npy)
    tfopt inspect MODEL.tflite                    sizes, ops, io and weights of a file
    tfopt sparsity MODEL.keras                    per-layer sparsity table
    tfopt tune --example digits --max-trials N --out DIR
        [--tuner random|grid|bayesian|hyperband] [--max-seconds S]
        [--max-bytes B] [--max-latency-ms MS] [--max-accuracy-drop D]
                                                  compression search: trials.csv/.md,
                                                  results.json, pareto.png
"""

import argparse
import os
import sys

# TensorFlow's C++ logging would bury the command's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _load(path):
    import keras

    import tfopt  # noqa: F401  (registers tfopt's layers for loading)

    if not os.path.isfile(path):
        raise SystemExit(f"tfopt: no such model file: {path}")
    return keras.models.load_model(path)


def _representative(spec):
    """Loads `--representative-data`: a digits size or a `.npy` file."""
    import numpy as np

    if spec is None:
        return None
    if spec.startswith("digits") and spec[len("digits"):].isdigit():
        from tfopt import data

        size = int(spec[len("digits"):])
        if size not in data.DIGITS_SIZES:
            raise SystemExit(
                f"tfopt: --representative-data {spec}: use digits8, digits16 "
                "or digits28, or a .npy file."
            )
        (x, _), _ = data.load_digits(size)
        return x[:200]  # a few hundred examples calibrate well enough
    if not os.path.isfile(spec):
        raise SystemExit(f"tfopt: no such representative data file: {spec}")
    try:
        return np.load(spec, allow_pickle=False)
    except ValueError as error:
        raise SystemExit(f"tfopt: cannot read {spec} as a .npy array: {error}")


def _export(args):
    from tfopt import export
    from tfopt import pruning

    model = _load(args.model)
    if pruning.api.pruning_wrappers(model):
        model = pruning.strip_pruning(model)
    try:
        result = export.to_tflite(
            model, args.out,
            quantization=args.quantization,
            representative_data=_representative(args.representative_data),
            int8_io=args.int8_io,
            sparsity=args.sparsity,
            batch_size=args.batch_size,
            allow_select_tf_ops=args.allow_select_tf_ops,
        )
    except (ValueError, TypeError) as error:
        # Argument and conversion errors are the user's to fix: show the
        # message, not a traceback.
        raise SystemExit(f"tfopt: {error}")
    mode = args.quantization or "float"
    print(f"wrote {args.out} ({mode}): {result.size_bytes} bytes, "
          f"{result.gzip_bytes} gzipped")


def _inspect(args):
    from tfopt import export

    try:
        facts = export.inspect_tflite(args.model)
    except ValueError as error:
        raise SystemExit(f"tfopt: {error}")
    print(f"file: {args.model}")
    print(f"size: {facts['size_bytes']} bytes, {facts['gzip_bytes']} gzipped")
    flex = set(facts["flex_ops"])
    ops = [f"{op} (Flex: needs the select TF ops delegate)" if op in flex else op
           for op in facts["ops"]]
    print("ops: " + ", ".join(ops))
    for kind in ("inputs", "outputs"):
        for row in facts[kind]:
            scale, zero_point = row["quantization"]
            quant = f"scale={scale:.6g} zero_point={zero_point}" if scale else "not quantized"
            print(f"{kind[:-1]}: {row['name']} {row['dtype']} {row['shape']} {quant}")
    print(f"{'weight':50} {'dtype':8} {'elements':>9} {'zeros':>7}")
    for row in facts["weights"]:
        name = row["name"] if len(row["name"]) <= 50 else "..." + row["name"][-47:]
        sparse = " sparse" if row["sparse"] else ""
        print(f"{name:50} {row['dtype']:8} {row['size']:>9} {row['zero_fraction']:>7.4f}{sparse}")


def _sparsity(args):
    from tfopt import pruning

    report = pruning.sparsity_report(_load(args.model))
    print(f"{'layer':30} {'weight':20} {'size':>10} {'sparsity':>9}")
    for row in report["layers"]:
        print(f"{row['layer']:30} {row['weight']:20} {row['size']:>10} {row['sparsity']:>9.4f}")
    total = report["total"]
    print(f"{'total':51} {total['size']:>10} {total['sparsity']:>9.4f}")


def _bench(args):
    from tfopt import bench
    from tfopt.bench import suites

    try:
        suites.get_suite(args.suite)
        settings = bench.Settings(**suites.SETTINGS[args.suite], device=args.device,
                                  num_threads=args.threads)
    except ValueError as error:
        raise SystemExit(f"tfopt: {error}") from None
    if args.device != "cpu" and not bench.gpu_devices():
        if args.device == "gpu":
            raise SystemExit("tfopt: --device gpu, but TensorFlow sees no GPU on this machine.")
        print("tfopt: no GPU found; GPU columns will say 'no GPU'.", file=sys.stderr)
    command = "tfopt " + " ".join(args.argv)
    results = bench.run_suite(args.suite, args.out, settings, command=command)
    failed = [r for r in results["rows"] if r["status"] != "ok"]
    print(open(os.path.join(args.out, "results.md")).read())
    print(f"wrote {args.out}/results.json, results.md and {len(results['plots'])} plot(s); "
          f"{len(results['rows']) - len(failed)} rows ok, {len(failed)} failed (reasons in the table)")


def _tune(args):
    from tfopt.tuning import examples

    command = "tfopt " + " ".join(args.argv)
    try:
        result = examples.run_digits(
            args.out, max_trials=args.max_trials, tuner=args.tuner,
            max_search_seconds=args.max_seconds, max_bytes=args.max_bytes,
            max_latency_ms=args.max_latency_ms, max_accuracy_drop=args.max_accuracy_drop,
            epochs=args.epochs, train_examples=args.train_examples, seed=args.seed,
            overwrite=not args.resume, command=command, verbose=args.verbose)
    except ValueError as error:
        raise SystemExit(f"tfopt: {error}") from None
    print(open(result["paths"]["markdown"]).read())
    print("wrote " + ", ".join(p for p in result["paths"].values() if p))


def main(argv=None):
    """Entry point of the `tfopt` console script."""
    parser = argparse.ArgumentParser(prog="tfopt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run a benchmark suite")
    bench.add_argument("--suite", default="quick", help="quick (default) or standard")
    bench.add_argument("--out", default="results/bench")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                       help="auto: GPU columns where a GPU exists, 'no GPU' otherwise")
    bench.add_argument("--threads", type=int, default=1, help="LiteRT CPU threads")
    bench.set_defaults(run=_bench)
    export = commands.add_parser("export", help="export a .keras model to TFLite")
    export.add_argument("model")
    export.add_argument("--out", required=True)
    export.add_argument("--quantization", choices=["dynamic", "float16", "int8", "int16x8"],
                        help="post-training quantization (default: float)")
    export.add_argument("--representative-data", metavar="digits8|digits16|digits28|FILE.npy",
                        help="calibration inputs, needed by int8 and int16x8")
    export.add_argument("--int8-io", action="store_true",
                        help="int8 input and output (with --quantization int8)")
    export.add_argument("--sparsity", action="store_true",
                        help="store sparse weights in TFLite's sparse format")
    export.add_argument("--batch-size", type=int, default=None,
                        help="fix the input batch dimension (default: dynamic)")
    export.add_argument("--allow-select-tf-ops", action="store_true",
                        help="allow select TensorFlow (Flex) ops")
    export.set_defaults(run=_export)
    inspect = commands.add_parser("inspect", help="print what a .tflite file contains")
    inspect.add_argument("model")
    inspect.set_defaults(run=_inspect)
    sparsity = commands.add_parser("sparsity", help="print a model's sparsity")
    sparsity.add_argument("model")
    sparsity.set_defaults(run=_sparsity)
    tune = commands.add_parser("tune", help="compression search with KerasTuner")
    tune.add_argument("--example", required=True, choices=["digits"],
                      help="the embedded search to run")
    tune.add_argument("--out", required=True, help="output directory (search project + report)")
    tune.add_argument("--max-trials", type=int, default=10)
    tune.add_argument("--tuner", default="random", choices=["random", "grid", "bayesian", "hyperband"])
    tune.add_argument("--max-seconds", type=float, default=None,
                      help="start no trial after this many seconds")
    tune.add_argument("--max-bytes", type=int, default=None, help="constraint: .tflite bytes")
    tune.add_argument("--max-latency-ms", type=float, default=None, help="constraint: p50 ms")
    tune.add_argument("--max-accuracy-drop", type=float, default=None,
                      help="constraint: drop below the dense baseline (0.01 = 1 point)")
    tune.add_argument("--epochs", type=int, default=None, help="fix the epochs (default: searched)")
    tune.add_argument("--train-examples", type=int, default=None,
                      help="use only this many training examples (quick runs)")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--resume", action="store_true",
                      help="continue the search in OUT/search instead of starting afresh")
    tune.add_argument("--verbose", type=int, default=0, help="KerasTuner verbosity")
    tune.set_defaults(run=_tune)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
