"""Latency of TFLite files in LiteRT (CPU and GPU), and of Keras models on a GPU.

Every CPU measurement uses a fresh interpreter, reports the first invoke
(which includes lazy initialisation such as XNNPACK packing weights) apart
from the steady state, warms up, then times single invokes until both `runs`
invokes and `min_seconds` have passed. The harness times the rows of one
model in a fresh child process (`measure_files`), in interleaved rounds, and
compares rows with paired per-round ratios (`compare_rounds`).

The GPU path uses LiteRT's GPU accelerator (WebGPU/Dawn over Vulkan). It
runs in a child process too, reads the adapter Dawn selected from its log
(`litert_gpu_adapter`), and checks every file against the CPU interpreter
before timing it (`check_litert_gpu`).
"""

import dataclasses
import os
import time

import numpy as np

# Percentile 99 of fewer samples than this rests on a handful of values.
P99_MIN_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """Timing statistics of one model on one device (milliseconds).

    Attributes:
        device: What ran it, e.g. `"cpu (LiteRT, XNNPACK)"`.
        num_threads: Threads given to the runtime (None for TF on GPU).
        n: Number of timed invokes.
        mean_ms, std_ms, min_ms, p50_ms, p90_ms, p99_ms: Statistics of them.
        p99_reliable: False when `n` < 1000, so p99 is a few samples' value.
        first_invoke_ms: The first invoke, not part of the statistics.
        init_ms: Creating the interpreter and allocating tensors.
        rss_growth_bytes: Resident memory added by loading and running the
            model (None where the platform does not tell).
    """

    device: str
    num_threads: int | None
    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_reliable: bool
    first_invoke_ms: float
    init_ms: float
    rss_growth_bytes: int | None

    def to_dict(self):
        return dataclasses.asdict(self)


def _rss_bytes():
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _random_input(detail, rng):
    shape = tuple(int(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if dtype in (np.int32, np.int64):
        # Token ids (Embedding/GATHER inputs): any out-of-vocabulary id makes
        # the runtime fail, and 0 and 1 are valid in every vocabulary.
        return rng.integers(0, 2, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


def _statistics(times_s, device, num_threads, first_s, init_s, rss):
    ms = np.asarray(times_s) * 1e3
    return LatencyResult(
        device=device,
        num_threads=num_threads,
        n=int(ms.size),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        min_ms=float(ms.min()),
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        p99_reliable=bool(ms.size >= P99_MIN_SAMPLES),
        first_invoke_ms=first_s * 1e3,
        init_ms=init_s * 1e3,
        rss_growth_bytes=rss,
    )


# Enough samples for stable percentiles; a 2 us model would otherwise
# collect millions in `min_seconds`.
MAX_RUNS = 20_000


def _timed_loop(invoke, warmup, runs, min_seconds):
    for _ in range(warmup):
        invoke()
    times = []
    deadline = time.perf_counter() + min_seconds
    while len(times) < runs or (time.perf_counter() < deadline and len(times) < MAX_RUNS):
        start = time.perf_counter()
        invoke()
        times.append(time.perf_counter() - start)
    return times


def _validate_counts(num_threads, warmup, runs, min_seconds):
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads={num_threads!r} must be an int >= 1.")
    if warmup < 0 or runs < 1 or min_seconds < 0:
        raise ValueError(
            f"warmup={warmup}, runs={runs}, min_seconds={min_seconds}: need "
            "warmup >= 0, runs >= 1 and min_seconds >= 0."
        )


def _model_content(tflite):
    content = getattr(tflite, "content", None)
    if content is not None:
        return content
    if isinstance(tflite, (bytes, bytearray)):
        return bytes(tflite)
    if isinstance(tflite, (str, os.PathLike)):
        if not os.path.isfile(tflite):
            raise ValueError(f"No such .tflite file: {os.fspath(tflite)!r}.")
        with open(tflite, "rb") as handle:
            return handle.read()
    raise TypeError(
        "Expected a TFLiteExport, a path to a .tflite file or its bytes, got "
        f"{type(tflite).__name__}."
    )


class LatencySession:
    """One fresh LiteRT interpreter whose invokes are timed in chunks.

    `measure_latency` times a model in one go; the benchmark harness opens a
    session per row and samples them in interleaved rounds, so that machine
    drift (other load, frequency changes) spreads over all rows instead of
    landing on whichever was timed at a bad moment.

    Args:
        tflite: A `TFLiteExport`, a path to a `.tflite` file, or its bytes.
        num_threads: CPU threads given to the interpreter.
        seed: Seed of the random input.

    Raises:
        ValueError: If the file is missing, corrupt or cannot be loaded.
        TypeError: If `tflite` is of an unsupported type.
    """

    def __init__(self, tflite, num_threads=1, seed=0):
        from ai_edge_litert.interpreter import Interpreter

        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads={num_threads!r} must be an int >= 1.")
        content = _model_content(tflite)
        self.num_threads = num_threads
        rss_before = _rss_bytes()
        start = time.perf_counter()
        try:
            self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"LiteRT cannot load this model: {error}") from error
        self.init_s = time.perf_counter() - start
        rng = np.random.default_rng(seed)
        for detail in self._interpreter.get_input_details():
            self._interpreter.set_tensor(detail["index"], _random_input(detail, rng))
        start = time.perf_counter()
        self._interpreter.invoke()
        self.first_s = time.perf_counter() - start
        rss_after = _rss_bytes()
        self.rss = None if rss_before is None or rss_after is None else rss_after - rss_before
        self.times = []
        self.round_p50_ms = []

    def sample(self, warmup, runs, min_seconds):
        """Times `runs` invokes (at least `min_seconds`) after `warmup`.

        Each call is one round; its p50 is kept in `round_p50_ms` for paired
        comparisons between rows sampled in the same rounds.
        """
        times = _timed_loop(self._interpreter.invoke, warmup, runs, min_seconds)
        self.round_p50_ms.append(float(np.percentile(np.asarray(times) * 1e3, 50)))
        self.times += times

    def result(self):
        """The `LatencyResult` of every sample taken so far."""
        return _statistics(self.times, "cpu (LiteRT, XNNPACK)", self.num_threads,
                           self.first_s, self.init_s, self.rss)


def measure_latency(tflite, num_threads=1, warmup=20, runs=300, min_seconds=1.0, seed=0):
    """Times single-example invokes of a TFLite model in LiteRT on the CPU.

    Args:
        tflite: A `TFLiteExport`, a path to a `.tflite` file, or its bytes.
        num_threads: CPU threads given to the interpreter.
        warmup: Untimed invokes after the first one.
        runs: Minimum number of timed invokes.
        min_seconds: Keep timing until at least this long has passed.
        seed: Seed of the random input.

    Returns:
        A `LatencyResult`.

    Raises:
        ValueError: If the file is missing or corrupt, or a count is invalid.
        TypeError: If `tflite` is of an unsupported type.

    Example:

    >>> result = measure_latency("model.tflite", num_threads=1)  # doctest: +SKIP
    >>> result.p50_ms  # doctest: +SKIP
    0.21
    """
    _validate_counts(num_threads, warmup, runs, min_seconds)
    session = LatencySession(tflite, num_threads=num_threads, seed=seed)
    session.sample(warmup, runs, min_seconds)
    return session.result()


# -- rows of one model, timed in a fresh child process ------------------------


def _run_child(mode, payload, timeout):
    """Runs `_child_main` of this file in a fresh Python; returns (json, stderr).

    The child loads this file by path, so it imports numpy and LiteRT but
    neither TensorFlow nor the rest of tfopt: start-up stays under a second
    and nothing the parent allocated is shared with the measured rows.
    """
    import json
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('tfopt_bench_child', {os.path.abspath(__file__)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"module._child_main({mode!r})\n"
    )
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # the GPU path reads the adapter from the (captured) log
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=timeout, env=env)
    marker = "@@tfopt-result "
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    if not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
        raise RuntimeError(
            f"latency child process exited with code {done.returncode} and no result: "
            + (" / ".join(tail) or "no output"))
    return json.loads(lines[-1][len(marker):]), done.stderr


def _child_main(mode):
    import json
    import sys

    payload = json.loads(sys.stdin.read())
    result = _child_cpu(payload) if mode == "cpu" else _child_gpu(payload)
    sys.stdout.write("@@tfopt-result " + json.dumps(result) + "\n")
    sys.stdout.flush()


def _child_cpu(payload):
    sessions, out = [], []
    for path in payload["files"]:
        try:
            sessions.append(LatencySession(path, payload["num_threads"], payload["seed"]))
            out.append(None)
        except Exception as error:  # reported per file; the others go on
            sessions.append(None)
            out.append({"error": f"{type(error).__name__}: {error}"})
    rounds = payload["rounds"]
    live = [i for i, s in enumerate(sessions) if s is not None]
    for index in range(rounds):
        # Alternate the order each round so no row always runs first.
        for i in (live if index % 2 == 0 else live[::-1]):
            sessions[i].sample(payload["warmup"] if index == 0 else 0,
                               -(-payload["runs"] // rounds), payload["min_seconds"] / rounds)
    for i in live:
        out[i] = {"result": sessions[i].result().to_dict(),
                  "round_p50_ms": sessions[i].round_p50_ms, "pid": os.getpid()}
    return out


def measure_files(files, num_threads=1, warmup=20, runs=300, min_seconds=1.0, rounds=5,
                  seed=0, timeout=1800):
    """Times several TFLite files in one fresh child process, interleaved.

    Every file gets its own interpreter; they are sampled in `rounds`
    rounds (the order reversed every other round), so drift of the machine
    spreads over all files, and each round's p50 is kept for paired
    comparisons (`compare_rounds`).

    Args:
        files: Paths of `.tflite` files.
        num_threads, warmup, runs, min_seconds, seed: As in
            `measure_latency` (`runs` and `min_seconds` are totals over
            the rounds).
        rounds: Number of interleaved rounds.
        timeout: Seconds before the child is given up.

    Returns:
        One dict per file: `{"result": LatencyResult, "round_p50_ms": [...],
        "pid": child process id}` or `{"error": reason}` when LiteRT could
        not load that file.

    Raises:
        ValueError: For an invalid count or a missing file.
        RuntimeError: If the child process died without a result.

    Example:

    >>> rows = measure_files(["a.tflite", "b.tflite"], rounds=6)  # doctest: +SKIP
    >>> compare_rounds(rows[1]["round_p50_ms"], rows[0]["round_p50_ms"])  # doctest: +SKIP
    """
    _validate_counts(num_threads, warmup, runs, min_seconds)
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an int >= 1.")
    paths = [os.fspath(f) for f in files]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"No such .tflite file: {path!r}.")
    payload = dict(files=paths, num_threads=num_threads, warmup=warmup, runs=runs,
                   min_seconds=min_seconds, rounds=rounds, seed=seed)
    out, _ = _run_child("cpu", payload, timeout)
    return [entry if "error" in entry else
            {"result": LatencyResult(**entry["result"]), "round_p50_ms": entry["round_p50_ms"],
             "pid": entry["pid"]}
            for entry in out]


# A verdict needs the paired interval to exclude 1.0 *and* a difference a
# user would care about; below this the rows are reported as equal.
MIN_EFFECT = 0.05
MIN_ROUNDS_FOR_VERDICT = 3


def compare_rounds(row_round_p50_ms, reference_round_p50_ms, confidence=0.95,
                   resamples=2000, seed=0):
    """Paired latency ratio of a row to a reference, with its noise.

    The two were sampled in the same interleaved rounds, so each round gives
    one ratio of p50s in which the machine's state of that moment cancels.
    The interval is a percentile bootstrap of the geometric mean of those
    per-round ratios.

    Args:
        row_round_p50_ms: The row's p50 of each round.
        reference_round_p50_ms: The reference's (float row's) p50 of each
            round, same length.
        confidence: Width of the interval.
        resamples: Bootstrap resamples.
        seed: Seed of the bootstrap (results are reproducible).

    Returns:
        A dict: `ratio` (geometric mean of the per-round ratios),
        `ci_low`, `ci_high`, `rounds`, and `verdict`: `"slower"` when the
        whole interval is above 1.0 and the ratio above 1 + `MIN_EFFECT`,
        `"faster"` symmetrically, `"within noise"` otherwise, or
        `"too few rounds"` below `MIN_ROUNDS_FOR_VERDICT`.

    Raises:
        ValueError: If the lists differ in length, are empty or hold a
            non-positive time.

    Example:

    >>> compare_rounds([2.0, 2.1, 2.0, 2.1], [1.0, 1.0, 1.1, 1.0])["verdict"]
    'slower'
    """
    row = np.asarray(row_round_p50_ms, dtype="float64")
    ref = np.asarray(reference_round_p50_ms, dtype="float64")
    if row.shape != ref.shape or row.ndim != 1 or row.size == 0:
        raise ValueError(
            f"compare_rounds: need two equal, non-empty lists of round p50s, got "
            f"{row.size} and {ref.size}.")
    if (row <= 0).any() or (ref <= 0).any():
        raise ValueError("compare_rounds: round p50s must be positive times.")
    logs = np.log(row / ref)
    ratio = float(np.exp(logs.mean()))
    if logs.size < MIN_ROUNDS_FOR_VERDICT:
        return dict(ratio=ratio, ci_low=None, ci_high=None, rounds=int(logs.size),
                    verdict="too few rounds")
    rng = np.random.default_rng(seed)
    means = logs[rng.integers(0, logs.size, size=(resamples, logs.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = (float(np.exp(v)) for v in np.percentile(means, [tail, 100 - tail]))
    verdict = "within noise"
    if low > 1.0 and ratio > 1.0 + MIN_EFFECT:
        verdict = "slower"
    elif high < 1.0 and ratio < 1.0 - MIN_EFFECT:
        verdict = "faster"
    return dict(ratio=ratio, ci_low=low, ci_high=high, rounds=int(logs.size), verdict=verdict)


# -- GPUs: TensorFlow (CUDA) and LiteRT's GPU accelerator (WebGPU/Vulkan) -----

SOFTWARE_LABEL = "software Vulkan: functional check, not a GPU speed"
NO_ADAPTER_HINT = (
    "no GPU adapter: LiteRT's GPU accelerator found no Vulkan/WebGPU device. On Debian 12, "
    "Mesa's software Vulkan (lavapipe) from bookworm-backports provides one: add "
    "'bookworm-backports' to apt's sources, then `apt-get install -t bookworm-backports "
    "mesa-vulkan-drivers` (.ci/run does this); on a GPU machine install its Vulkan driver.")


def tf_gpu_devices():
    """Names of the (CUDA) GPUs TensorFlow sees (empty list when there is none)."""
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def gpu_devices():
    """Every GPU a benchmark can use: TensorFlow's and LiteRT's adapter.

    Returns:
        A list of names: TensorFlow GPU devices (`"/physical_device:GPU:0"`)
        and, where LiteRT's GPU accelerator finds a Vulkan/WebGPU adapter,
        `"LiteRT: <adapter> (software)"` or `"LiteRT: <adapter> (hardware)"`.
        Empty when there is none.
    """
    names = tf_gpu_devices()
    adapter = litert_gpu_adapter()
    if adapter["available"]:
        names.append(f"LiteRT: {adapter['name']} ({'software' if adapter['software'] else 'hardware'})")
    return names


_ADAPTER = {}


def _probe_model(path):
    """Writes a 1x4 float model (`y = 2x + 1`) for probing the GPU accelerator."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def probe(x):
        return x * 2.0 + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [probe.get_concrete_function()], probe)
    with open(path, "wb") as handle:
        handle.write(converter.convert())


def _parse_adapter(stderr):
    for line in stderr.splitlines():
        if "Selected adapter:" in line:
            text = line.split("Selected adapter:", 1)[1].strip()
            name = text.split(", arch=")[0].strip()
            software = "Software" in text or "adapterType=CPU" in text or "arch=software" in text
            backend = text.split("backend=", 1)[1].split(",")[0].strip() if "backend=" in text else None
            return dict(name=name, software=software, backend=backend, description=text)
    return None


def litert_gpu_adapter(refresh=False):
    """The adapter LiteRT's GPU accelerator would run on here, if any.

    Loads a tiny probe model with the GPU accelerator only (in a child
    process, once per process) and reads the adapter Dawn selected.

    Args:
        refresh: Probe again instead of returning the cached answer.

    Returns:
        A dict: `available` (bool), `name` (e.g. `"llvmpipe (LLVM 15.0.6,
        256 bits)"`), `software` (True for a CPU/software device such as
        Mesa's lavapipe), `backend` (`"Vulkan"`...), `label` (what result
        tables print) and `reason` (why there is none, with how to get one).

    Example:

    >>> litert_gpu_adapter()["label"]  # doctest: +SKIP
    'llvmpipe (LLVM 15.0.6, 256 bits) [software Vulkan: functional check, not a GPU speed]'
    """
    import tempfile

    if _ADAPTER and not refresh:
        return dict(_ADAPTER)
    info = dict(available=False, name=None, software=None, backend=None, label=None,
                reason=NO_ADAPTER_HINT)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "probe.tflite")
            _probe_model(path)
            x = np.arange(4, dtype="float32").reshape(1, 4)
            out, stderr = _run_child("gpu", dict(files=[path], inputs=[x.tolist()], warmup=0,
                                                 runs=0, enforce_f32=True), timeout=300)
        adapter = _parse_adapter(stderr)
        entry = out["files"][0]
        if entry.get("status") == "ok" and adapter is not None:
            info.update(adapter, available=True, reason=None)
            kind = SOFTWARE_LABEL if adapter["software"] else "hardware GPU"
            info["label"] = f"{adapter['name']} [{kind}]"
        elif entry.get("status") == "ok":
            info.update(available=True, name="unknown adapter", software=None, reason=None,
                        label="unknown adapter (LiteRT did not log which; timings treated "
                              "as a functional check, not a GPU speed)")
        else:
            info["reason"] = f"{NO_ADAPTER_HINT} (LiteRT said: {entry.get('reason')})"
    except Exception as error:  # no LiteRT GPU API, no child: no adapter
        info["reason"] = f"{NO_ADAPTER_HINT} (probe failed: {type(error).__name__}: {error})"
    _ADAPTER.clear()
    _ADAPTER.update(info)
    return dict(info)


def _io_array(detail, x):
    """`x` (float) as the tensor `detail` expects (quantized for integer inputs)."""
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    x = np.asarray(x, dtype="float32")
    if len(shape) > 1 and shape[0] > 1 and x.size * shape[0] == int(np.prod(shape)):
        # One example into a file of a fixed batch N (a "batch N" export):
        # the example in every row, so the file runs at its own shape.
        x = np.repeat(x.reshape((1,) + shape[1:]), shape[0], axis=0)
    x = x.reshape(shape)
    if np.issubdtype(dtype, np.integer):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / (scale or 1.0) + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _as_float(detail, y):
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        scale, zero = detail["quantization"]
        return (y.astype("float32") - zero) * (scale or 1.0)
    return y.astype("float32")


def _gpu_reason(error, log):
    text = f"{error}".strip().replace("\n", " ")
    hints = [line.strip() for line in log.splitlines()
             if ("ERROR" in line or "WARNING: Attempting" in line or "not supported" in line
                 or "Unsupported" in line or "unsupported" in line) and "compiler_plugin" not in line
             and "npu_registry" not in line]
    if any("static-sized" in line for line in hints):
        return ("dynamic shape: the GPU accelerator only supports static-sized tensors; export "
                "with a fixed batch (tfopt.export.to_tflite(..., batch_size=1))")
    return "; ".join(hints[-2:] + [text])[:400]


def _child_gpu(payload):
    import sys
    import time as _time

    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import GpuOptions
    from ai_edge_litert.options import Options

    results = []
    for path in payload["files"]:
        sys.stderr.write(f"\n@@tfopt-file {path}\n")
        sys.stderr.flush()
        entry = {"path": path}
        results.append(entry)
        cpu = Interpreter(model_path=path)
        cpu.allocate_tensors()
        in_details, out_details = cpu.get_input_details(), cpu.get_output_details()
        dynamic = [d["name"] for d in in_details if any(int(v) < 0 for v in d["shape_signature"])]
        if dynamic:
            entry.update(status="refused", reason=(
                f"dynamic shape of input(s) {dynamic}: the GPU accelerator only supports "
                "static-sized tensors; export with a fixed batch "
                "(tfopt.export.to_tflite(..., batch_size=1))"))
            continue
        try:
            options = Options(hardware_accelerators=HardwareAccelerator.GPU,
                              gpu_options=GpuOptions(enforce_f32=payload["enforce_f32"]))
            start = _time.perf_counter()
            model = CompiledModel.from_file(path, options=options)
            entry["init_ms"] = (_time.perf_counter() - start) * 1e3
            if not model.is_fully_accelerated():
                entry.update(status="refused", reason=(
                    "the GPU accelerator cannot run every op of this file (no CPU fallback "
                    "asked for, so it is not a GPU figure)"))
                continue
            signature = list(model.get_signature_list())[0]
            gpu_in = model.get_input_tensor_details(signature)
            gpu_out = model.get_output_tensor_details(signature)
            inputs = {n: model.create_input_buffer_by_name(signature, n) for n in gpu_in}
            outputs = {n: model.create_output_buffer_by_name(signature, n) for n in gpu_out}
            # Match GPU signature tensors with the interpreter's by tensor name.
            cpu_in = {d["name"]: d for d in in_details}
            cpu_out = {d["name"]: d for d in out_details}

            def run(example):
                for name, buffer in inputs.items():
                    buffer.write(_io_array(cpu_in[gpu_in[name]["name"]], example))
                model.run_by_name(signature, inputs, outputs)
                got = {}
                for name, buffer in outputs.items():
                    detail = cpu_out[gpu_out[name]["name"]]
                    size = int(np.prod(detail["shape"]))
                    got[detail["name"]] = _as_float(detail, buffer.read(size, np.dtype(detail["dtype"])).reshape(detail["shape"]))
                return got

            max_abs, scale, agree = 0.0, 0.0, []
            for example in payload["inputs"]:
                got = run(example)
                for detail in in_details:
                    cpu.set_tensor(detail["index"], _io_array(detail, example))
                cpu.invoke()
                for detail in out_details:
                    want = _as_float(detail, cpu.get_tensor(detail["index"]))
                    have = got[detail["name"]]
                    if not (np.isfinite(have).all() and np.isfinite(want).all()):
                        entry["nonfinite_outputs"] = True  # a NaN must not read as agreement
                        max_abs = float("inf")
                        continue
                    max_abs = max(max_abs, float(np.abs(have - want).max()))
                    scale = max(scale, float(np.abs(want).max()))
                    agree.append(bool(np.argmax(have.reshape(-1)) == np.argmax(want.reshape(-1))))
            entry.update(status="ok", max_abs_diff=max_abs,
                         rel_diff=max_abs / scale if scale > 0 else max_abs,
                         top1_agreement=float(np.mean(agree)) if agree else None,
                         examples=len(payload["inputs"]))
            example = payload["inputs"][0]
            for _ in range(payload["warmup"]):
                run(example)
            times = []
            for _ in range(payload["runs"]):
                begin = _time.perf_counter()
                run(example)
                times.append(_time.perf_counter() - begin)
            entry["times_s"] = times
        except Exception as error:  # the pybind layer raises plain RuntimeErrors
            entry.update(status="refused", reason=f"@@log {type(error).__name__}: {error}")
    return {"files": results}


def _split_log(stderr):
    """The child's log cut at the per-file markers: {path: text}."""
    logs, current = {}, None
    for line in stderr.splitlines():
        if line.startswith("@@tfopt-file "):
            current = line[len("@@tfopt-file "):]
            logs[current] = []
        elif current is not None:
            logs[current].append(line)
    return {path: "\n".join(lines) for path, lines in logs.items()}


def check_litert_gpu(files, inputs, warmup=None, runs=None, enforce_f32=True, timeout=1800):
    """Runs TFLite files on LiteRT's GPU accelerator, checked against the CPU.

    For each file, in one child process: a dynamic input shape is refused
    (the accelerator needs static shapes); otherwise the file is compiled
    for the GPU only (no CPU fallback), every example of `inputs` is run on
    the GPU and in the CPU interpreter and compared; only then are the
    runs timed (write input, run, read outputs back).

    Args:
        files: A path or a list of paths of `.tflite` files.
        inputs: Float examples, one per batch-1 run, each shaped like the
            file's input (an integer input is quantized with its scale).
        warmup, runs: Untimed and timed runs after the check. Default
            1 and 3 on a software adapter (a functional check), 10 and 100
            on a hardware one.
        enforce_f32: Compute in float32 on the GPU (default; the CPU
            comparison then holds to ~1e-6; False lets a GPU use float16).
        timeout: Seconds before the child is given up.

    Returns:
        One dict per file (a single dict for a single path): `status`
        (`"ok"`, `"refused"` or `"no GPU adapter"`), `reason` (why not),
        `adapter` (the `litert_gpu_adapter()` label), `software`,
        `max_abs_diff`, `rel_diff` (max abs diff over max |CPU output|),
        `top1_agreement`, and `latency` (a `LatencyResult`, None when
        `runs` is 0 or the file did not run).

    Raises:
        ValueError: For a missing file or no input examples.

    Example:

    >>> check = check_litert_gpu("model.tflite", x_test[:4])  # doctest: +SKIP
    >>> check["status"], check["rel_diff"] < 1e-4  # doctest: +SKIP
    ('ok', True)
    """
    single = isinstance(files, (str, os.PathLike))
    paths = [os.fspath(f) for f in ([files] if single else files)]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"No such .tflite file: {path!r}.")
    examples = [np.asarray(x, dtype="float32") for x in inputs]
    if not examples:
        raise ValueError("check_litert_gpu: give at least one input example.")
    adapter = litert_gpu_adapter()
    base = dict(adapter=adapter["label"], software=adapter["software"], max_abs_diff=None,
                rel_diff=None, top1_agreement=None, latency=None)
    if not adapter["available"]:
        out = [dict(base, path=p, status="no GPU adapter", reason=adapter["reason"]) for p in paths]
        return out[0] if single else out
    hardware = adapter["software"] is False
    if warmup is None:
        warmup = 10 if hardware else 1
    if runs is None:
        runs = 100 if hardware else 3
    payload = dict(files=paths, inputs=[e.tolist() for e in examples], warmup=warmup,
                   runs=runs, enforce_f32=enforce_f32)
    try:
        out, stderr = _run_child("gpu", payload, timeout)
        entries, logs = out["files"], _split_log(stderr)
    except Exception as error:  # a crash of the accelerator: every file says so
        entries = [dict(path=p, status="refused", reason=f"GPU child process failed: {error}")
                   for p in paths]
        logs = {}
    results = []
    for path, entry in zip(paths, entries):
        row = dict(base, **{k: v for k, v in entry.items() if k not in ("times_s", "init_ms")})
        if row.get("reason", "").startswith("@@log "):
            row["reason"] = _gpu_reason(row["reason"][len("@@log "):], logs.get(path, ""))
        if entry.get("times_s"):
            device = f"gpu (LiteRT: {adapter['label']})"
            row["latency"] = _statistics(entry["times_s"], device, None, entry["times_s"][0],
                                         entry.get("init_ms", 0.0) / 1e3, None)
        results.append(row)
    return results[0] if single else results


def measure_keras_gpu(model, x, xla=False, warmup=10, runs=100, min_seconds=1.0):
    """Times a Keras model's forward pass on TensorFlow's first (CUDA) GPU.

    Args:
        model: A Keras model (TF backend).
        x: One input batch (a numpy array).
        xla: Compile the forward pass with XLA (`jit_compile=True`).
        warmup, runs, min_seconds: As in `measure_latency`.

    Returns:
        A `LatencyResult` whose device says "gpu (TF)" or "gpu (TF, XLA)".

    Raises:
        RuntimeError: If TensorFlow sees no GPU ("no GPU").
    """
    import tensorflow as tf

    if not tf_gpu_devices():
        raise RuntimeError("no GPU (TensorFlow sees no CUDA GPU)")
    forward = tf.function(lambda batch: model(batch, training=False), jit_compile=xla)
    with tf.device("/GPU:0"):
        batch = tf.constant(x)
        start = time.perf_counter()
        forward(batch).numpy()
        first_s = time.perf_counter() - start
        # .numpy() waits for the GPU, so each sample is a full round trip.
        times = _timed_loop(lambda: forward(batch).numpy(), warmup, runs, min_seconds)
    device = "gpu (TF, XLA)" if xla else "gpu (TF)"
    return _statistics(times, device, None, first_s, 0.0, None)


def measure_litert_gpu(tflite_path, warmup=10, runs=100, min_seconds=1.0, inputs=None):
    """Times a TFLite file on LiteRT's GPU accelerator (no CPU fallback).

    The file is first checked against the CPU interpreter (see
    `check_litert_gpu`); on a software adapter the figure is a functional
    check, not a GPU speed (its `device` says so).

    Args:
        tflite_path: Path of a `.tflite` file with static shapes.
        warmup, runs: Untimed and timed runs.
        min_seconds: Kept for compatibility; the run count decides.
        inputs: Float examples to check with (default: one random example).

    Returns:
        A `LatencyResult`.

    Raises:
        RuntimeError: With the reason, when there is no adapter or the
            accelerator does not run this file.
    """
    del min_seconds
    if inputs is None:
        from ai_edge_litert.interpreter import Interpreter

        detail = Interpreter(model_path=os.fspath(tflite_path)).get_input_details()[0]
        shape = [max(1, int(d)) for d in detail["shape"]]
        inputs = [np.random.default_rng(0).random(shape).astype("float32")]
    check = check_litert_gpu(os.fspath(tflite_path), inputs, warmup=warmup, runs=max(1, runs))
    if check["status"] != "ok":
        raise RuntimeError(f"LiteRT GPU: {check['status']}: {check['reason']}")
    return check["latency"]
