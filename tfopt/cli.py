"""The `tfopt` command line.

    tfopt bench --suite quick|standard|zoo --out DIR  benchmark suite: JSON, Markdown, PNGs
        [--device auto|cpu|gpu] [--threads N] [--baselines benchmarks/]
    tfopt bench MODEL.tflite [--threads N] [--runs N] [--json OUT.json]
                                                  latency p50/p90/p99, size, gzip, ops
    tfopt bench MODEL.keras --data DATA --out DIR [--recipes R,R,...] [--epochs N]
                                                  compression recipes on your model and
                                                  data: results.json/.md and plots
    tfopt compress MODEL.keras --data DATA --recipe R --out OUT.tflite [--epochs N]
                                                  train, strip, export and verify in one go
        DATA: a .npz with x and y (or x_train, y_train, x_test, y_test), or an
        image folder (one sub-folder per class). Recipes: float, ptq-dynamic,
        ptq-float16, ptq-int8, prune-50, prune-80, qat-int8, channels-50.

    tfopt export MODEL.keras --out MODEL.tflite   TFLite export (auto: int8 for a QAT
        model, float otherwise; --quantization float|dynamic|float16|int8|int16x8,
        --representative-data digits8|digits16|digits28|FILE.npy|FILE.npz
        for int8 and int16x8)
    tfopt inspect MODEL.tflite                    sizes, ops, io and weights of a file
    tfopt sparsity MODEL.keras                    per-layer sparsity table
    tfopt tune --example digits --max-trials N --out DIR
        [--tuner random|grid|bayesian|hyperband] [--max-seconds S]
        [--max-bytes B] [--max-latency-ms MS] [--max-accuracy-drop D]
        [--overwrite]                             compression search (resumes OUT/search
                                                  unless --overwrite): trials.csv/.md,
                                                  results.json, pareto.png

TensorFlow/LiteRT C++ logs and converter prints are silenced; `--verbose`
(before or after the command) shows them. Errors print one line and exit 2.
"""

import argparse
import contextlib
import os
import sys

from tfopt.compress import RECIPES
from tfopt.defaults import CALIBRATED_MODES

QUANTIZATION_CHOICES = ["auto", "float", "dynamic", "float16", "int8", "int16x8"]
DEFAULT_BENCH_RECIPES = ("float", "ptq-dynamic", "ptq-int8", "prune-50", "qat-int8")


class CommandError(SystemExit):
    """A user error: printed as one line, exit status 2 (as argparse's)."""

    def __init__(self, message):
        super().__init__(2)
        self.message = message if message.startswith("tfopt") else f"tfopt: {message}"

    def __str__(self):
        return self.message


# -- quiet native output ------------------------------------------------------


@contextlib.contextmanager
def quiet_native_stderr(enabled=True):
    """Sends what C/C++ code writes to file descriptor 2 to /dev/null.

    Python's `sys.stderr` (tqdm bars, warnings, tfopt's own messages) is
    re-pointed at a duplicate of the real stderr first, so only native
    writes (TensorFlow/absl logs, the TFLite converter's
    `fully_quantize: 0, inference_type: 6 ...`) disappear. Child processes
    inherit the silenced descriptor.
    """
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no real fd 2 (embedded runs)
        yield
        return
    python_stderr = sys.stderr
    try:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1,
                               encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                               errors="backslashreplace")
    except OSError:
        os.close(saved)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        try:
            # Flushed, not closed: a logging handler created meanwhile may
            # still hold it (it is closed when no longer referenced).
            sys.stderr.flush()
        finally:
            sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)


def _quiet_environment(verbose):
    if verbose:
        return
    # Must be set before TensorFlow is imported (tfopt imports it lazily).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


# -- files --------------------------------------------------------------------


def _load(path):
    from tfopt import compress

    try:
        return compress.load_model(path)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _representative(spec):
    """Loads `--representative-data`: a digits size, a `.npy` or `.npz` file."""
    if spec is None:
        return None
    if spec.startswith("digits") and spec[len("digits"):].isdigit():
        from tfopt import data

        size = int(spec[len("digits"):])
        if size not in data.DIGITS_SIZES:
            raise CommandError(
                f"--representative-data {spec}: use digits8, digits16 "
                "or digits28, or a .npy/.npz file.")
        (x, _), _ = data.load_digits(size)
        return x[:200]  # a few hundred examples calibrate well enough
    from tfopt import compress

    try:
        arrays = compress.load_array_file(spec, "--representative-data")
    except ValueError as error:
        raise CommandError(str(error)) from None
    if isinstance(arrays, dict):
        for key in ("x", "x_train"):
            if key in arrays:
                return arrays[key]
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        raise CommandError(
            f"--representative-data {spec} has arrays {sorted(arrays)}; expected "
            "one named x or x_train.")
    return arrays


def _check_out_path(path, flag="--out"):
    from tfopt.compress import check_output_path

    try:
        check_output_path(path)
    except (ValueError, TypeError) as error:
        raise CommandError(f"{flag}: {error}") from None


# -- commands -----------------------------------------------------------------


def _export(args):
    from tfopt import compress

    if args.representative_data is not None and args.quantization not in CALIBRATED_MODES + ("auto",):
        raise CommandError(
            f"--representative-data is only used by --quantization int8 or int16x8 "
            f"(got {args.quantization}); drop it or choose one of those.")
    _check_out_path(args.out)
    kind = compress.file_kind(args.model)
    if kind == "tflite":
        raise CommandError(
            f"{args.model} is already a TFLite file; export takes a .keras model "
            "(use `tfopt inspect` or `tfopt bench` on a .tflite).")
    representative = _representative(args.representative_data)
    model = _load(args.model)
    from tfopt import export
    from tfopt import pruning
    from tfopt import quantization as quantization_lib

    if args.quantization == "auto" and representative is not None and \
            not quantization_lib.api.is_quantized(model):
        raise CommandError(
            "--representative-data needs --quantization int8 or int16x8 for a "
            f"non-QAT model ({args.model}); without it the export is float and "
            "the data would be ignored.")
    if pruning.api.pruning_wrappers(model):
        try:
            model = pruning.strip_pruning(model)
        except TypeError:
            pass  # subclassed: to_tflite exports the wrapped model as is
    quantization = None if args.quantization == "float" else args.quantization
    result = export.to_tflite(
        model, args.out,
        quantization=quantization,
        representative_data=representative,
        int8_io=args.int8_io,
        sparsity=args.sparsity,
        batch_size=args.batch_size,
        allow_select_tf_ops=args.allow_select_tf_ops,
    )
    print(f"wrote {args.out} ({result.quantization or 'float'}): {result.size_bytes} bytes, "
          f"{result.gzip_bytes} gzipped")


def _check_tflite_file(path):
    from tfopt import compress

    kind = compress.file_kind(path)
    if kind == "missing":
        raise CommandError(f"No such TFLite file: {path}")
    if kind != "tflite":
        hint = " (export it first: `tfopt export`)" if kind == "keras" else ""
        raise CommandError(f"{path} is not a TFLite file: it is {compress.describe(path)}{hint}.")


def _inspect(args):
    _check_tflite_file(args.model)
    from tfopt import export

    facts = export.inspect_tflite(args.model)
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
    # Largest first: kernels, then biases, then small shape/axis constants.
    weights = sorted(facts["weights"], key=lambda w: (-w["size"], w["name"]))
    print(f"{'weight':50} {'dtype':8} {'elements':>9} {'zeros':>7}")
    for row in weights:
        name = row["name"] if len(row["name"]) <= 50 else "..." + row["name"][-47:]
        sparse = " sparse" if row["sparse"] else ""
        print(f"{name:50} {row['dtype']:8} {row['size']:>9} {row['zero_fraction']:>7.4f}{sparse}")


def _sparsity(args):
    model = _load(args.model)
    from tfopt import pruning

    report = pruning.sparsity_report(model)
    print(f"{'layer':30} {'weight':20} {'size':>10} {'sparsity':>9}")
    for row in report["layers"]:
        print(f"{row['layer']:30} {row['weight']:20} {row['size']:>10} {row['sparsity']:>9.4f}")
    total = report["total"]
    print(f"{'total':51} {total['size']:>10} {total['sparsity']:>9.4f}")


# Options that only one form of `tfopt bench` reads: given to another, an error.
_BENCH_ONLY = {
    "suite": ("--suite", ("suite",)), "device": ("--device", ("suite",)),
    "baselines": ("--baselines", ("suite",)),
    "json": ("--json", ("tflite",)), "data": ("--data", ("keras",)),
    "recipes": ("--recipes", ("keras",)), "epochs": ("--epochs", ("keras",)),
    "runs": ("--runs", ("tflite", "keras")), "min_seconds": ("--min-seconds", ("tflite", "keras")),
}
_BENCH_FORMS = {"suite": "tfopt bench --suite", "tflite": "tfopt bench MODEL.tflite",
                "keras": "tfopt bench MODEL.keras"}


def _check_bench_options(args, form):
    for key, (flag, owners) in _BENCH_ONLY.items():
        if getattr(args, key) is not None and form not in owners:
            readers = " and ".join(f"`{_BENCH_FORMS[o]}`" for o in owners)
            raise CommandError(
                f"{flag} is only read by {readers}; `{_BENCH_FORMS[form]}` would ignore it.")
    if form != "suite":
        args.runs = 300 if args.runs is None else args.runs
        args.min_seconds = 1.0 if args.min_seconds is None else args.min_seconds


def _bench(args):
    if args.file is not None:
        from tfopt import compress

        kind = compress.file_kind(args.file)
        if kind == "tflite":
            _check_bench_options(args, "tflite")
            return _bench_tflite(args)
        if kind in ("keras", "h5"):
            _check_bench_options(args, "keras")
            args.recipes = args.recipes or ",".join(DEFAULT_BENCH_RECIPES)
            args.epochs = args.epochs or 3
            return _bench_keras(args)
        if kind == "missing":
            raise CommandError(f"no such file: {args.file}")
        raise CommandError(
            f"bench takes a .tflite or .keras file; {args.file} is {compress.describe(args.file)}.")
    _check_bench_options(args, "suite")
    args.suite = args.suite or "quick"
    args.device = args.device or "auto"
    from tfopt import bench
    from tfopt.bench import suites

    try:
        suites.get_suite(args.suite, baselines=args.baselines)
        settings = bench.Settings(**suites.SETTINGS[args.suite], device=args.device,
                                  num_threads=args.threads)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if args.device != "cpu" and not bench.gpu_devices():
        if args.device == "gpu":
            raise CommandError(
                "--device gpu, but neither TensorFlow (a CUDA GPU) nor LiteRT's GPU accelerator "
                "(a Vulkan adapter) finds a GPU here; the README's 'GPU measurement' says how to "
                "get a software Vulkan adapter.")
        print("tfopt: no GPU and no Vulkan adapter found; GPU columns will say why.", file=sys.stderr)
    out = args.out or "results/bench"
    command = "tfopt " + " ".join(args.argv)
    results = bench.run_suite(args.suite, out, settings, command=command, baselines=args.baselines)
    _print_results(results, out)


def _print_results(results, out):
    failed = [r for r in results["rows"] if r["status"] not in ("ok", "skipped")]
    skipped = [r for r in results["rows"] if r["status"] == "skipped"]
    print(open(os.path.join(out, "results.md")).read())
    ok = len(results["rows"]) - len(failed) - len(skipped)
    print(f"wrote {out}/results.json, results.md and {len(results['plots'])} plot(s); "
          f"{ok} rows ok, {len(failed)} failed"
          + (f", {len(skipped)} skipped" if skipped else "") + " (reasons in the table)")


def _bench_tflite(args):
    import json

    if args.json is not None:
        _check_out_path(args.json, "--json")
    if args.runs < 1 or args.threads < 1:
        raise CommandError("--runs and --threads must be >= 1.")
    from tfopt import bench
    from tfopt import export

    facts = export.inspect_tflite(args.file)
    result = bench.measure_latency(args.file, num_threads=args.threads, runs=args.runs,
                                   min_seconds=args.min_seconds)
    star = "" if result.p99_reliable else " (p99 from fewer than 1000 invokes)"
    print(f"file: {args.file}")
    print(f"size: {facts['size_bytes']} bytes, {facts['gzip_bytes']} gzipped")
    print("ops: " + ", ".join(facts["ops"]))
    for row in facts["inputs"]:
        print(f"input: {row['name']} {row['dtype']} {row['shape']}")
    print(f"latency ({result.device}, {result.num_threads} thread(s), {result.n} invokes, "
          f"random input): p50 {result.p50_ms:.4f} ms, p90 {result.p90_ms:.4f} ms, "
          f"p99 {result.p99_ms:.4f} ms{star}; min {result.min_ms:.4f} ms, "
          f"init {result.init_ms:.2f} ms")
    if args.json is not None:
        from tfopt.bench import report

        record = {
            "command": "tfopt " + " ".join(args.argv),
            "file": args.file,
            "environment": report.environment(),
            "size_bytes": facts["size_bytes"],
            "gzip_bytes": facts["gzip_bytes"],
            "ops": facts["ops"],
            "inputs": facts["inputs"],
            "outputs": facts["outputs"],
            "latency": result.to_dict(),
        }
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=2, default=str)
        print(f"wrote {args.json}")


def _recipe_list(text):
    names = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in names if r not in RECIPES]
    if unknown or not names:
        raise CommandError(
            f"--recipes {text!r}: unknown {', '.join(unknown) or '(empty)'}; use "
            f"{', '.join(RECIPES)}.")
    if "float" in names:
        names.remove("float")
    return ["float", *names]  # the float row first: the others compare with it


def _bench_keras(args):
    from tfopt import compress
    from tfopt.bench import harness
    from tfopt.bench import report

    if args.data is None:
        raise CommandError(
            f"tfopt bench {args.file} needs --data DATA (a .npz with x and y, or an "
            "image folder) to train, verify and score the recipes.")
    recipes = _recipe_list(args.recipes)
    out = args.out or "results/bench-model"
    if os.path.exists(out) and not os.path.isdir(out):
        raise CommandError(f"--out {out} is a file; give a directory.")
    model = _load(args.file)
    try:
        data = compress.load_data(args.data, image_size=compress._model_input_shape(model)[:2],
                                  stream=True)
        compress._check_data(model, data)
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    os.makedirs(out, exist_ok=True)
    workdir = os.path.join(out, "tflite")

    def recipe(name):
        def make(model, data, workdir):
            path = os.path.join(workdir, f"{model.name}-{name}.tflite")
            done = compress.compress(model, data, name, path, epochs=args.epochs)
            return harness.Artifact(done.export, done.keras_model,
                                    extra={"sparsity": done.report["sparsity"]})

        return harness.Recipe(name, make, group=name.split("-")[0])

    settings = harness.Settings(num_threads=args.threads, device="cpu",
                                min_seconds=args.min_seconds, runs=args.runs)
    case = harness.Case(model.name, lambda: (model, data), [recipe(r) for r in recipes],
                        description=f"{args.file} on {args.data}")
    from tqdm import tqdm

    with tqdm(total=len(recipes), desc=f"tfopt bench {os.path.basename(args.file)}",
              unit="row") as bar:
        def progress(row):
            bar.set_postfix_str(f"{row['recipe']}: {row['status']}")
            bar.update(1)

        rows = harness.run_case(case, settings, workdir, progress)
    import dataclasses

    results = {
        "suite": os.path.basename(args.file),
        "command": "tfopt " + " ".join(args.argv),
        "environment": report.environment(),
        "settings": dataclasses.asdict(settings),
        "descriptions": {case.name: case.description},
        "rows": rows,
    }
    results["plots"] = report.write(results, out)
    _print_results(results, out)


def _compress(args):
    from tfopt import compress

    _check_out_path(args.out)
    kind = compress.file_kind(args.model)
    if kind not in ("keras", "h5"):
        _load(args.model)  # raises the one-line error naming what the file is
    model = _load(args.model)
    try:
        data = compress.load_data(args.data, image_size=compress._model_input_shape(model)[:2],
                                  stream=True)
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    result = compress.compress(model, data, args.recipe, args.out, epochs=args.epochs)
    r = result.report
    lines = [
        f"recipe: {args.recipe} on {args.model} ({r['params']} parameters after compression)",
        f"file: {result.path}: {r['size_bytes']} bytes, {r['gzip_bytes']} gzipped, "
        f"{result.export.quantization or 'float'}, sparsity {r['sparsity']:.3f}",
        f"verified on {r['n']} held-out examples: keras accuracy {r['keras_accuracy']:.4f}, "
        f"tflite accuracy {r['tflite_accuracy']:.4f}, top-1 agreement "
        f"{r['top1_agreement']:.4f}, max |diff| {r['max_abs_diff']:.4g}",
    ]
    print("\n".join(lines))
    if args.report:
        _check_out_path(args.report, "--report")
        import json

        with open(args.report, "w") as handle:
            json.dump({"command": "tfopt " + " ".join(args.argv), "recipe": args.recipe,
                       "tflite": result.path, **r}, handle, indent=2)
        print(f"wrote {args.report}")


def _tune(args):
    from tfopt.tuning import examples

    command = "tfopt " + " ".join(args.argv)
    try:
        result = examples.run_digits(
            args.out, max_trials=args.max_trials, tuner=args.tuner,
            max_search_seconds=args.max_seconds, max_bytes=args.max_bytes,
            max_latency_ms=args.max_latency_ms, max_accuracy_drop=args.max_accuracy_drop,
            epochs=args.epochs, train_examples=args.train_examples, seed=args.seed,
            overwrite=args.overwrite, command=command, verbose=args.verbose)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(open(result["paths"]["markdown"]).read())
    print("wrote " + ", ".join(p for p in result["paths"].values() if p))


# -- parser -------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(prog="tfopt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", dest="show_logs", action="store_true",
                        help="show TensorFlow/LiteRT logs and full tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", dest="show_logs", action="store_true",
                        default=argparse.SUPPRESS,
                        help="show TensorFlow/LiteRT logs and full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench", parents=[common],
        help="run a benchmark suite, time a .tflite file, or run recipes on a .keras model")
    bench.add_argument("file", nargs="?", default=None,
                       help="a .tflite file to time, or a .keras model to compress (with --data)")
    bench.add_argument("--suite", default=None, help="quick (default), standard or zoo")
    bench.add_argument("--out", default=None,
                       help="output directory (default results/bench, or results/bench-model)")
    bench.add_argument("--baselines", default=None, metavar="DIR",
                       help="suites: directory of the tfmot baseline scripts (the source "
                            "checkout's benchmarks/; default $TFOPT_BASELINES, else those "
                            "rows are skipped)")
    bench.add_argument("--device", default=None, choices=["auto", "cpu", "gpu"],
                       help="suites (default auto): GPU columns where a GPU exists, "
                            "'no GPU' otherwise")
    bench.add_argument("--threads", type=int, default=1, help="LiteRT CPU threads")
    bench.add_argument("--runs", type=int, default=None,
                       help="FILE: minimum timed invokes (default 300)")
    bench.add_argument("--min-seconds", type=float, default=None,
                       help="FILE: keep timing at least this long (default 1 s)")
    bench.add_argument("--json", default=None, help="FILE.tflite: also write the facts as JSON")
    bench.add_argument("--data", default=None,
                       help="FILE.keras: a .npz with x/y (or x_train/y_train/x_test/y_test) "
                            "or an image folder")
    bench.add_argument("--recipes", default=None,
                       help=f"FILE.keras: comma-separated, of {', '.join(RECIPES)} "
                            f"(default {','.join(DEFAULT_BENCH_RECIPES)})")
    bench.add_argument("--epochs", type=int, default=None,
                       help="FILE.keras: epochs of the recipes that train (default 3)")
    bench.set_defaults(run=_bench)
    compress = commands.add_parser(
        "compress", parents=[common],
        help="apply one recipe to a .keras model: train, strip, export, verify")
    compress.add_argument("model")
    compress.add_argument("--data", required=True,
                          help="a .npz with x/y (or x_train/y_train/x_test/y_test), "
                               "or an image folder")
    compress.add_argument("--recipe", required=True, choices=RECIPES)
    compress.add_argument("--out", required=True, help="the .tflite file to write")
    compress.add_argument("--epochs", type=int, default=3,
                          help="epochs of the recipes that train (default 3)")
    compress.add_argument("--report", default=None, help="also write the report as JSON")
    compress.set_defaults(run=_compress)
    export = commands.add_parser("export", parents=[common],
                                 help="export a .keras model to TFLite")
    export.add_argument("model")
    export.add_argument("--out", required=True)
    export.add_argument("--quantization", choices=QUANTIZATION_CHOICES, default="auto",
                        help="auto (default): int8 for a QAT model, float otherwise")
    export.add_argument("--representative-data",
                        metavar="digits8|digits16|digits28|FILE.npy|FILE.npz",
                        help="calibration inputs, needed by int8 and int16x8 (only)")
    export.add_argument("--int8-io", action="store_true",
                        help="int8 input and output (with --quantization int8)")
    export.add_argument("--sparsity", action="store_true",
                        help="store sparse weights in TFLite's sparse format")
    export.add_argument("--batch-size", type=int, default=None,
                        help="fix the input batch dimension (default: dynamic)")
    export.add_argument("--allow-select-tf-ops", action="store_true",
                        help="allow select TensorFlow (Flex) ops")
    export.set_defaults(run=_export)
    inspect = commands.add_parser("inspect", parents=[common],
                                  help="print what a .tflite file contains")
    inspect.add_argument("model")
    inspect.set_defaults(run=_inspect)
    sparsity = commands.add_parser("sparsity", parents=[common],
                                   help="print a model's sparsity")
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
    resume = tune.add_mutually_exclusive_group()
    resume.add_argument("--overwrite", action="store_true",
                        help="start afresh, deleting the search in OUT/search (default: resume it)")
    resume.add_argument("--resume", action="store_true",
                        help="continue the search in OUT/search (the default; kept for scripts)")
    tune.add_argument("--verbose", type=int, default=0,
                      help="KerasTuner verbosity (> 0 also shows TensorFlow logs)")
    tune.set_defaults(run=_tune)
    return parser


def main(argv=None):
    """Entry point of the `tfopt` console script.

    Args:
        argv: The arguments (default `sys.argv[1:]`).

    Returns:
        0 on success.

    Raises:
        SystemExit: With status 2 and a one-line message on stderr for a
            user error (bad arguments, missing, corrupt or wrong-kind files,
            unwritable output paths).
    """
    args = _parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    verbose = bool(getattr(args, "show_logs", False)) or (
        args.command == "tune" and args.verbose > 0)
    _quiet_environment(verbose)
    try:
        with quiet_native_stderr(enabled=not verbose):
            if not verbose:
                _quiet_python_logs()
            try:
                args.run(args)
            except CommandError:
                raise
            except (ValueError, TypeError) as error:
                # The library's argument and file errors are the user's to
                # fix: one line, no traceback (--verbose shows it).
                if verbose:
                    raise
                raise CommandError(_first_line(error)) from None
    except CommandError as error:
        print(error.message, file=sys.stderr)
        raise
    return 0


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _quiet_python_logs():
    import logging
    import warnings

    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # Keras's note on a compiled model's optimizer variables is noise here.
    warnings.filterwarnings("ignore", message=".*optimizer.*variables.*")


if __name__ == "__main__":
    sys.exit(main())
