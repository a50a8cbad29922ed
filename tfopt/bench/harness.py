"""Runs benchmark rows: export, verify, time; a failed row never stops a run.

A suite is a list of `Case`s (a model and its data) and each case a list of
`Recipe`s (how to get from the case's model to a TFLite file). The harness
treats every recipe alike: produce the file, check it against the Keras model
it came from, time it on the CPU (and on the GPU where there is one), and
compare it with the case's float row.
"""

import dataclasses
import os
import time
import traceback
from typing import Callable

from tfopt.bench import latency as latency_lib

NO_GPU = "no GPU"
DEVICES = ("auto", "cpu", "gpu")


@dataclasses.dataclass
class Case:
    """A model under test and its data.

    Attributes:
        name: Row label, e.g. `"digits-cnn-16"`.
        build: `() -> (keras_model, data)` where data is
            `(x_train, y_train, x_test, y_test)`; labels may be None for
            size/latency-only models (no accuracy is reported then).
        recipes: The `Recipe`s to run on it; the first should be `"float"`.
        description: One line for the report.
    """

    name: str
    build: Callable
    recipes: list
    description: str = ""


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
    """How rows are measured."""

    num_threads: int = 1
    warmup: int = 20
    runs: int = 300
    min_seconds: float = 1.0
    device: str = "auto"
    verify_examples: int = 512
    latency_rounds: int = 5

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
    except Exception as error:  # a broken case must not end the suite
        rows = [_failed_row(case, recipe, error) for recipe in case.recipes]
        for row in rows:
            if progress is not None:
                progress(row)
        return rows
    use_gpu = _use_gpu(settings)
    rows, float_row = [], None
    for recipe in case.recipes:
        row = _run_recipe(case, recipe, model, data, settings, workdir, use_gpu)
        if recipe.name == "float" and row["status"] == "ok":
            float_row = row
        rows.append(row)
        if progress is not None:
            progress(row)
    _sample_latency(rows, settings)
    for row in rows:
        _compare_with_float(row, float_row)
    return rows


def _sample_latency(rows, settings):
    """Times every row's interpreter in interleaved rounds."""
    sessions = [(row, row.pop("_session")) for row in rows if "_session" in row]
    rounds = max(1, settings.latency_rounds)
    for index in range(rounds):
        for row, session in sessions:
            try:
                session.sample(settings.warmup if index == 0 else 0,
                               -(-settings.runs // rounds), settings.min_seconds / rounds)
            except Exception as error:  # recorded; the other rows go on
                row.update(status="failed", reason=_reason(error))
    for row, session in sessions:
        if row["status"] == "ok":
            result = session.result()
            row.update({f"cpu_{k}": v for k, v in result.to_dict().items() if k != "device"})


def _use_gpu(settings):
    if settings.device == "cpu":
        return False
    has_gpu = bool(latency_lib.gpu_devices())
    if settings.device == "gpu" and not has_gpu:
        raise RuntimeError("--device gpu was asked for, but TensorFlow sees no GPU.")
    return has_gpu


def _run_recipe(case, recipe, model, data, settings, workdir, use_gpu):
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
        row.update(_accuracy_columns(artifact, data, settings))
        # CPU latency is sampled later, interleaved with the case's other rows.
        row["_session"] = latency_lib.LatencySession(
            getattr(tflite, "content", None) or path, num_threads=settings.num_threads)
        row.update(_gpu_columns(artifact, path, data, settings, use_gpu))
        row.update(artifact.extra)
        row["status"] = "ok"
    except Exception as error:  # recorded with its reason; the suite goes on
        row.update(status="failed", reason=_reason(error))
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _accuracy_columns(artifact, data, settings):
    from tfopt import export

    x_test, y_test = data[2], data[3]
    x = x_test[: settings.verify_examples]
    y = None if y_test is None else y_test[: settings.verify_examples]
    tflite = artifact.tflite
    if artifact.keras_model is not None:
        report = export.verify(tflite, artifact.keras_model, x, y)
        return {
            "keras_accuracy": report.get("keras_accuracy"),
            "tflite_accuracy": report.get("tflite_accuracy"),
            "top1_agreement": report["top1_agreement"],
            "max_abs_diff": report["max_abs_diff"],
        }
    columns = {"keras_accuracy": artifact.keras_accuracy}
    if y is not None:
        columns["tflite_accuracy"] = export.evaluate_tflite(tflite, x, y)
    return columns


def _gpu_columns(artifact, path, data, settings, use_gpu):
    names = ("gpu_tf_p50_ms", "gpu_tf_xla_p50_ms", "gpu_litert_p50_ms")
    if not use_gpu:
        return dict.fromkeys(names, NO_GPU)
    columns = {}
    batch = data[2][:1]
    for name, xla in (("gpu_tf_p50_ms", False), ("gpu_tf_xla_p50_ms", True)):
        if artifact.keras_model is None:
            columns[name] = "n/a (no Keras model)"
            continue
        try:
            columns[name] = latency_lib.measure_keras_gpu(
                artifact.keras_model, batch, xla=xla, min_seconds=settings.min_seconds
            ).p50_ms
        except Exception as error:
            columns[name] = f"failed: {_reason(error)}"
    try:
        columns["gpu_litert_p50_ms"] = latency_lib.measure_litert_gpu(
            path, min_seconds=settings.min_seconds
        ).p50_ms
    except Exception as error:
        columns["gpu_litert_p50_ms"] = f"failed: {_reason(error)}"
    return columns


def _compare_with_float(row, float_row):
    if row["status"] != "ok" or float_row is None or float_row["status"] != "ok":
        return
    row["bytes_vs_float"] = row["size_bytes"] / float_row["size_bytes"]
    row["gzip_vs_float"] = row["gzip_bytes"] / float_row["gzip_bytes"]
    row["p50_vs_float"] = row["cpu_p50_ms"] / float_row["cpu_p50_ms"]
    # Compression that makes inference slower is a finding, not a footnote.
    row["slower_than_float"] = bool(row["p50_vs_float"] > 1.05)


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



def run_suite(name, out_dir, settings=None, command=None):
    """Runs suite `name` and writes results.json, results.md and PNGs.

    Args:
        name: `"quick"` or `"standard"`.
        out_dir: Output directory (created).
        settings: A `Settings`; default the suite's own.
        command: The command line to record (default: this call).

    Returns:
        The results dict that was written.

    Raises:
        ValueError: For an unknown suite or device.

    Example:

    ```python
    results = tfopt.bench.run_suite("quick", "results/quick")
    ```
    """
    from tqdm import tqdm

    from tfopt.bench import report
    from tfopt.bench import suites

    cases = suites.get_suite(name)
    if settings is None:
        settings = Settings(**suites.SETTINGS[name])
    total = sum(len(case.recipes) for case in cases)
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
        "descriptions": {case.name: case.description for case in cases},
        "rows": rows,
    }
    results["plots"] = report.write(results, out_dir)
    return results
