"""Latency of TFLite files in LiteRT (CPU), and of Keras models on a GPU.

Every measurement uses a fresh interpreter, reports the first invoke (which
includes lazy initialisation such as XNNPACK packing weights) apart from
the steady state, warms up, then times single invokes until both `runs`
invokes and `min_seconds` have passed.
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

    def sample(self, warmup, runs, min_seconds):
        """Times `runs` invokes (at least `min_seconds`) after `warmup`."""
        self.times += _timed_loop(self._interpreter.invoke, warmup, runs, min_seconds)

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


def gpu_devices():
    """Names of the GPUs TensorFlow sees (empty list when there is none)."""
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def measure_keras_gpu(model, x, xla=False, warmup=10, runs=100, min_seconds=1.0):
    """Times a Keras model's forward pass on TensorFlow's first GPU.

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

    if not gpu_devices():
        raise RuntimeError("no GPU")
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


def measure_litert_gpu(tflite_path, warmup=10, runs=100, min_seconds=1.0):
    """Times a TFLite file on LiteRT's GPU accelerator (no CPU fallback).

    Returns:
        A `LatencyResult`.

    Raises:
        RuntimeError: With the reason, when the GPU accelerator does not load
            this model here (no GPU, or ops it cannot run).
    """
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.environment import Environment
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import Options
    except ImportError as error:
        raise RuntimeError(f"LiteRT GPU API unavailable: {error}") from error
    if not gpu_devices():
        raise RuntimeError("no GPU")
    start = time.perf_counter()
    try:
        model = CompiledModel.from_file(
            tflite_path,
            environment=Environment.create(),
            options=Options(hardware_accelerators=HardwareAccelerator.GPU),
        )
    except Exception as error:  # the pybind layer raises plain RuntimeErrors
        raise RuntimeError(f"LiteRT GPU accelerator did not load: {error}") from error
    if not model.is_fully_accelerated():
        raise RuntimeError("LiteRT GPU accelerator cannot run every op of this model")
    init_s = time.perf_counter() - start
    signature = list(model.get_signature_list())[0]
    inputs = {
        name: model.create_input_buffer_by_name(signature, name)
        for name in model.get_input_tensor_details(signature)
    }
    outputs = {
        name: model.create_output_buffer_by_name(signature, name)
        for name in model.get_output_tensor_details(signature)
    }

    def invoke():
        model.run_by_name(signature, inputs, outputs)

    start = time.perf_counter()
    invoke()
    first_s = time.perf_counter() - start
    times = _timed_loop(invoke, warmup, runs, min_seconds)
    return _statistics(times, "gpu (LiteRT)", None, first_s, init_s, None)
