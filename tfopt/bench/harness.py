"""Runs benchmark rows: export, verify, time; a failed row never stops a run.

A suite is a list of `Case`s (a model and its data) and each case a list of
`Recipe`s (how to get from the case's model to a TFLite file). The harness
treats every recipe alike: produce the file, check it against the Keras model
it came from, time it on the CPU (and on the GPU where there is one), and
compare it with the case's float row.

CPU latency of a case's rows is measured in one fresh child process, in
interleaved rounds; each row's ratio to the float row carries a bootstrap
interval over the per-round ratios, and "slower"/"faster" is only said when
that interval excludes 1.0 (`latency.compare_rounds`). GPU columns come from
LiteRT's GPU accelerator (each file checked against the CPU interpreter
first; a software Vulkan device is labelled as a functional check) and,
separately, from TensorFlow on a CUDA GPU.
"""

import dataclasses
import os
import sys
import time
import traceback
from typing import Callable

from tfopt.bench import latency as latency_lib
from tfopt.defaults import NO_GPU  # noqa: F401  (re-exported)

NO_TF_GPU = "no CUDA GPU (TF)"
NOT_ASKED = "not measured (--device cpu)"
DEVICES = ("auto", "cpu", "gpu")
# A row whose TFLite accuracy is this far under the float row's has collapsed.
COLLAPSE_POINTS = 0.05
GPU_CHECK_EXAMPLES = 4


class Skipped(Exception):
    """Raised by a recipe that cannot run here (e.g. no baselines directory):
    its row is reported `skipped: <message>`, not failed."""


@dataclasses.dataclass
class Case:
    """A model under test and its data.

    Attributes:
        name: Row label, e.g. `"digits-cnn-16"`.
        build: `() -> (keras_model, data)` where data is
            `(x_train, y_train, x_test, y_test)`; labels may be None for
            size/latency-only models (no accuracy is reported then).
            The training and test data may each be a `tf.data.Dataset` of
            `(x, y)` (batched or not) with its label slot None, or data
            may be `(train_dataset, test_dataset)`; datasets are streamed
            (calibration and verification read only what they use).
        recipes: The `Recipe`s to run on it; the first should be `"float"`.
        description: One line for the report.
        random_weights: True for an untrained model (e.g. `weights=None`):
            its top-1 agreement says nothing and is reported as n/a.
    """

    name: str
    build: Callable
    recipes: list
    description: str = ""
    random_weights: bool = False


@dataclasses.dataclass
class Recipe:
    """One way to compress and export a case's model.

    Attributes:
        name: Row label, e.g. `"ptq-int8"` or `"prune-80 +sparsity"`.
        make: `(model, data, workdir) -> Artifact`.
        group: Legend group in plots ("float", "ptq", "pruning",
            "baseline", ...).
    """

    name: str
    make: Callable
    group: str = "tfopt"


@dataclasses.dataclass
class Artifact:
    """What a recipe produced: a TFLite file and what to compare it with.

    Attributes:
        tflite: A `TFLiteExport` or a path to a `.tflite` file.
        keras_model: The Keras model the file was converted from (None for
            baselines produced elsewhere, whose Keras accuracy is given).
        keras_accuracy: Accuracy reported by the producer when there is no
            Keras model here.
        extra: More columns (e.g. measured sparsity, train time).
    """

    tflite: object
    keras_model: object = None
    keras_accuracy: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Settings:
    """How rows are measured.

    Attributes:
        num_threads: LiteRT CPU threads.
        warmup, runs, min_seconds: Per row: untimed invokes, then at least
            `runs` timed invokes and `min_seconds` (totals over the rounds).
        device: `"auto"` (GPU columns wherever a GPU or Vulkan adapter
            exists), `"cpu"` (none) or `"gpu"` (fail early without one).
        verify_examples: Test examples compared with Keras and scored.
        latency_rounds: Interleaved rounds; >= 3 are needed for a verdict.
    """

    num_threads: int = 1
    warmup: int = 20
    runs: int = 300
    min_seconds: float = 1.0
    device: str = "auto"
    verify_examples: int = 512
    latency_rounds: int = 8

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} must be one of {DEVICES}.")
        if not isinstance(self.num_threads, int) or self.num_threads < 1:
            raise ValueError(f"num_threads={self.num_threads!r} must be an int >= 1.")


def run_case(case, settings, workdir, progress=None):
    """Runs every recipe of `case`; returns one row dict per recipe."""
    os.makedirs(workdir, exist_ok=True)
    try:
        model, data = case.build()
        data = case_data(data)
    except Exception as error:  # a broken case must not end the suite
        rows = [_failed_row(case, recipe, error) for recipe in case.recipes]
        for row in rows:
            if progress is not None:
                progress(row)
        return rows
    gpu = gpu_context(settings)
    rows, float_row = [], None
    for recipe in case.recipes:
        row = _run_recipe(case, recipe, model, data, settings, workdir, gpu)
        if recipe.name == "float" and row["status"] == "ok":
            float_row = row
        rows.append(row)
        if progress is not None:
            progress(row)
    _sample_latency(rows, settings)
    _litert_gpu_columns(case, rows, data, gpu)
    for row in rows:
        row.pop("_path", None)
        _compare_with_float(row, float_row)
    return rows


def case_data(data):
    """A case's data as `(x_train, y_train, x_test, y_test)`.

    Args:
        data: That 4-tuple (arrays, or datasets of `(x, y)` with None
            labels), or `(train_dataset, test_dataset)`.

    Returns:
        The 4-tuple.

    Raises:
        TypeError: For anything else.
    """
    from tfopt import pipeline

    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            pipeline.is_dataset(d) for d in data):
        return (data[0], None, data[1], None)
    if isinstance(data, (tuple, list)) and len(data) == 4:
        # A tuple subclass (the zoo's task data, with its name and labels) is kept.
        return data if isinstance(data, tuple) else tuple(data)
    raise TypeError(
        "A case's build() must return (model, data) with data (x_train, y_train, x_test, "
        f"y_test) or (train_dataset, test_dataset); got {type(data).__name__}"
        + (f" of {len(data)} items." if isinstance(data, (tuple, list)) else "."))


def _first(x, n):
    """The first `n` test inputs as a numpy array (a dataset is streamed)."""
    from tfopt import pipeline

    return pipeline.take(x, n=n, name="the test data")[0]


def _sample_latency(rows, settings):
    """Times every row's file in interleaved rounds, in one fresh child process."""
    timed = [row for row in rows if row["status"] == "ok" and row.get("_path")]
    if not timed:
        return
    rounds = max(1, settings.latency_rounds)
    try:
        results = latency_lib.measure_files(
            [row["_path"] for row in timed], num_threads=settings.num_threads,
            warmup=settings.warmup, runs=settings.runs, min_seconds=settings.min_seconds,
            rounds=rounds)
    except Exception as error:  # recorded; the suite goes on
        for row in timed:
            row.update(status="failed", reason=_reason(error))
        return
    for row, entry in zip(timed, results):
        if "error" in entry:
            row.update(status="failed", reason=f"LiteRT cannot load this model: {entry['error']}"[:500])
            continue
        row.update({f"cpu_{k}": v for k, v in entry["result"].to_dict().items() if k != "device"})
        # The shared vocabulary (tfopt.pipeline.METRICS): p50_ms is LiteRT CPU.
        row.update(p50_ms=row["cpu_p50_ms"], p90_ms=row["cpu_p90_ms"])
        row["cpu_round_p50_ms"] = entry["round_p50_ms"]


def gpu_context(settings):
    """What GPUs this run uses: `{"litert": adapter dict, "tf": [names]}` or None.

    Args:
        settings: A `Settings`; `device="cpu"` uses none.

    Returns:
        None for `device="cpu"`, else the LiteRT adapter
        (`latency.litert_gpu_adapter()`) and TensorFlow's CUDA GPUs.

    Raises:
        RuntimeError: For `device="gpu"` when there is neither, with how
            to get a (software) Vulkan adapter.
    """
    if settings.device == "cpu":
        return None
    adapter = latency_lib.litert_gpu_adapter()
    tf_gpus = latency_lib.tf_gpu_devices()
    if settings.device == "gpu" and not adapter["available"] and not tf_gpus:
        raise RuntimeError(
            "--device gpu was asked for, but this machine sees no GPU: TensorFlow sees no CUDA "
            f"GPU, and {adapter['reason']}")
    return {"litert": adapter, "tf": tf_gpus}


def _run_recipe(case, recipe, model, data, settings, workdir, gpu):
    from tfopt import export

    row = {"model": case.name, "recipe": recipe.name, "group": recipe.group}
    start = time.perf_counter()
    try:
        artifact = recipe.make(model, data, workdir)
        tflite = artifact.tflite
        path = getattr(tflite, "path", None) or (
            os.fspath(tflite) if isinstance(tflite, (str, os.PathLike)) else None)
        facts = export.inspect_tflite(getattr(tflite, "content", None) or path)
        row.update(
            size_bytes=facts["size_bytes"],
            gzip_bytes=facts["gzip_bytes"],
            flex_ops=facts["flex_ops"],
            weight_dtypes=sorted({w["dtype"] for w in facts["weights"] if w["size"] > 16}),
        )
        row.update(_accuracy_columns(artifact, data, settings, case.random_weights))
        if path is None:  # bytes only: the latency child reads files
            path = os.path.join(workdir, _file_name(case.name, recipe.name))
            with open(path, "wb") as handle:
                handle.write(tflite.content)
        # CPU latency is sampled later, interleaved with the case's other rows.
        row["_path"] = path
        row.update(_tf_gpu_columns(artifact, data, settings, gpu))
        row.update(artifact.extra)
        row["status"] = "ok"
    except Skipped as skipped:
        row.update(status="skipped", reason=str(skipped))
    except Exception as error:  # recorded with its reason; the suite goes on
        row.update(status="failed", reason=_reason(error))
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _file_name(model_name, recipe_name):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in recipe_name)
    return f"{model_name}-{safe}.tflite"


def _accuracy_columns(artifact, data, settings, random_weights=False):
    from tfopt import export
    from tfopt import pipeline

    x_test, y_test = data[2], data[3]
    model = artifact.keras_model
    example = None if model is None else pipeline.model_example_shape(model)
    x = pipeline.limit(x_test, settings.verify_examples, example)
    y = None if y_test is None else y_test[: settings.verify_examples]
    labelled = pipeline.has_labels(x_test, y_test)
    tflite = artifact.tflite
    if artifact.keras_model is not None:
        report = export.verify(tflite, artifact.keras_model, x, y)
        columns = {
            "keras_accuracy": report.get("keras_accuracy"),
            "tflite_accuracy": report.get("tflite_accuracy"),
            "top1_agreement": report["top1_agreement"],
            "max_abs_diff": report["max_abs_diff"],
        }
        if random_weights:
            # Random logits of an untrained net: agreement says nothing.
            columns["top1_agreement_untrained"] = columns.pop("top1_agreement")
            columns["top1_agreement"] = "n/a (random weights)"
        return columns
    columns = {"keras_accuracy": artifact.keras_accuracy}
    if labelled:
        columns["tflite_accuracy"] = export.evaluate_tflite(tflite, x, y)
    return columns


def _tf_gpu_columns(artifact, data, settings, gpu):
    names = ("gpu_tf_p50_ms", "gpu_tf_xla_p50_ms")
    if gpu is None:
        return dict.fromkeys(names + ("gpu_litert_status",), NOT_ASKED)
    if not gpu["tf"]:
        return dict.fromkeys(names, NO_TF_GPU)
    columns = {}
    batch = _first(data[2], 1)
    for name, xla in zip(names, (False, True)):
        if artifact.keras_model is None:
            columns[name] = "n/a (no Keras model)"
            continue
        try:
            columns[name] = latency_lib.measure_keras_gpu(
                artifact.keras_model, batch, xla=xla, min_seconds=settings.min_seconds
            ).p50_ms
        except Exception as error:
            columns[name] = f"failed: {_reason(error)}"
    return columns


def _litert_gpu_columns(case, rows, data, gpu):
    """LiteRT GPU accelerator: check vs the CPU interpreter, then time (one child)."""
    if gpu is None:
        return
    ok = [row for row in rows if row["status"] == "ok" and row.get("_path")]
    adapter = gpu["litert"]
    if not adapter["available"]:
        for row in ok:
            row.update(gpu_litert_status="no GPU adapter", gpu_litert_reason=adapter["reason"])
        return
    x = _first(data[2], GPU_CHECK_EXAMPLES)
    try:
        checks = latency_lib.check_litert_gpu([row["_path"] for row in ok],
                                              [x[i:i + 1] for i in range(len(x))])
    except Exception as error:  # recorded per row; CPU columns stand
        checks = [dict(status="failed", reason=_reason(error), latency=None)] * len(ok)
    for row, check in zip(ok, checks):
        row["gpu_litert_adapter"] = adapter["label"]
        row["gpu_litert_status"] = check["status"]
        if check["status"] != "ok":
            row["gpu_litert_reason"] = check.get("reason")
            continue
        row["gpu_litert_max_abs_diff"] = check["max_abs_diff"]
        row["gpu_litert_rel_diff"] = check["rel_diff"]
        row["gpu_litert_top1_agreement"] = (
            "n/a (random weights)" if case.random_weights else check["top1_agreement"])
        p50 = check["latency"].p50_ms if check["latency"] is not None else None
        if adapter["software"] is not False:  # software, or unknown: not a GPU speed
            # Kept for the record, out of every comparison and front.
            row["gpu_litert_software_p50_ms"] = p50
            row["gpu_litert_p50_ms"] = latency_lib.SOFTWARE_LABEL
        else:
            row["gpu_litert_p50_ms"] = p50


def _compare_with_float(row, float_row):
    if row["status"] != "ok" or float_row is None or float_row["status"] != "ok":
        return
    row["bytes_vs_float"] = row["size_bytes"] / float_row["size_bytes"]
    row["gzip_vs_float"] = row["gzip_bytes"] / float_row["gzip_bytes"]
    if "cpu_p50_ms" in row and "cpu_p50_ms" in float_row:
        row["p50_vs_float"] = row["cpu_p50_ms"] / float_row["cpu_p50_ms"]
        if row is float_row:
            row.update(p50_ratio_ci=[1.0, 1.0], latency_verdict="reference",
                       slower_than_float=False)
        else:
            paired = latency_lib.compare_rounds(row["cpu_round_p50_ms"],
                                                float_row["cpu_round_p50_ms"])
            ci = None if paired["ci_low"] is None else [paired["ci_low"], paired["ci_high"]]
            row.update(p50_ratio_paired=paired["ratio"], p50_ratio_ci=ci,
                       latency_verdict=paired["verdict"])
            # Compression that makes inference slower is a finding, not a
            # footnote -- but only when it is larger than the noise.
            row["slower_than_float"] = paired["verdict"] == "slower"
    accuracy, reference = row.get("tflite_accuracy"), float_row.get("tflite_accuracy")
    if accuracy is not None and reference is not None:
        row["accuracy_drop"] = reference - accuracy
        row["accuracy_collapse"] = bool(reference - accuracy > COLLAPSE_POINTS)


def _failed_row(case, recipe, error):
    return {
        "model": case.name,
        "recipe": recipe.name,
        "group": recipe.group,
        "status": "failed",
        "reason": _reason(error),
    }


def _reason(error):
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0] if text else repr(error)
    if os.environ.get("TFOPT_BENCH_TRACEBACKS"):
        first += "\n" + traceback.format_exc()
    return first[:500]


def _gpu_summary(gpu):
    if gpu is None:
        return {"litert": "not asked (--device cpu)", "tf": "not asked (--device cpu)"}
    adapter = gpu["litert"]
    return {
        "litert": adapter["label"] if adapter["available"] else adapter["reason"],
        "litert_available": adapter["available"],
        "litert_software": adapter["software"],
        "tf": gpu["tf"] or NO_TF_GPU,
    }


def run_suite(name, out_dir, settings=None, command=None, baselines=None):
    """Runs suite `name` and writes results.json, results.md and PNGs.

    Args:
        name: `"quick"` or `"standard"`, or a list of `Case`s (a custom
            suite, recorded as `"custom"`).
        out_dir: Output directory (created).
        settings: A `Settings`; default the suite's own.
        command: The command line to record (default: this call).
        baselines: Directory of the tfmot baseline scripts (the source
            checkout's `benchmarks/`); None: the `TFOPT_BASELINES`
            environment variable, else the tfmot rows are skipped.

    Returns:
        The results dict that was written.

    Raises:
        ValueError: For an unknown suite or device.
        TypeError: For a custom suite that is not a list of `Case`s.
        RuntimeError: For `device="gpu"` on a machine with no GPU at all.

    Example:

    ```python
    results = tfopt.bench.run_suite("quick", "results/quick")
    ```
    """
    from tqdm import tqdm

    from tfopt.bench import report
    from tfopt.bench import suites

    if isinstance(name, str):
        cases = suites.get_suite(name, baselines=baselines)
        if settings is None:
            settings = Settings(**suites.SETTINGS[name])
    else:
        cases = list(name)
        if not cases or not all(isinstance(case, Case) for case in cases):
            raise TypeError("run_suite: give a suite name or a non-empty list of harness.Case.")
        name = "custom"
        settings = settings or Settings()
    total = sum(len(case.recipes) for case in cases)
    gpu = gpu_context(settings)  # a --device gpu without any GPU fails here, before work
    if gpu is not None:
        summary = _gpu_summary(gpu)
        print(f"tfopt bench: GPU via LiteRT: {summary['litert']}; GPU via TensorFlow: "
              f"{summary['tf']}", file=sys.stderr)
    rows = []
    with tqdm(total=total, desc=f"tfopt bench {name}", unit="row") as bar:
        def progress(row):
            bar.set_postfix_str(f"{row['model']} {row['recipe']}: {row['status']}")
            bar.update(1)

        for case in cases:
            bar.set_postfix_str(f"{case.name}: building")
            rows += run_case(case, settings, os.path.join(out_dir, "tflite"), progress)
    results = {
        "suite": name,
        "command": command or f"tfopt bench --suite {name} --out {out_dir}",
        "environment": report.environment(),
        "settings": dataclasses.asdict(settings),
        "gpu": _gpu_summary(gpu),
        "descriptions": {case.name: case.description for case in cases},
        "rows": rows,
    }
    results["plots"] = report.write(results, out_dir)
    return results
