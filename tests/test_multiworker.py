"""Pruning, QAT and distillation under MultiWorkerMirroredStrategy.

Two real worker processes on loopback (TF_CONFIG with two localhost ports)
train with `model.fit` (tests/multiworker_worker.py); their state must be
identical across workers and equal to one process training on the same
global batches.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "multiworker_worker.py")
TIMEOUT = 240  # seconds per worker; a loaded 2-core machine imports TF slowly


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(**extra):
    repo = os.path.dirname(HERE)
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
        "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def _start(tmp_path, count=2):
    """Starts `count` workers on loopback ports and the one-process reference."""
    try:
        ports = _free_ports(count)
    except OSError as error:
        pytest.skip(f"cannot open loopback sockets on this platform: {error}")
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    commands = []
    for index in range(count):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        commands.append(([WORKER, str(tmp_path / f"worker{index}.npz"),
                          str(tmp_path / f"worker{index}.tflite")],
                         _env(TF_CONFIG=config), f"worker {index}"))
    env = _env()
    env.pop("TF_CONFIG", None)
    commands.append(([WORKER, "--reference", str(tmp_path / "reference.npz")], env, "reference"))
    procs, logs, names = [], [], []
    for args, env, name in commands:
        log = open(tmp_path / (name.replace(" ", "") + ".log"), "w+")
        procs.append(subprocess.Popen([sys.executable, *args], env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
        logs.append(log)
        names.append(name)
    return procs, logs, names


def _wait(procs, logs, names):
    """Waits for all processes; returns None, or the failure with their output."""
    deadline = time.monotonic() + TIMEOUT
    failed = []
    # Poll: a worker that fails leaves the other waiting in a collective,
    # so stop all as soon as one fails.
    while not failed and any(proc.poll() is None for proc in procs):
        if time.monotonic() > deadline:
            failed = [f"{name} timed out after {TIMEOUT} s"
                      for name, proc in zip(names, procs) if proc.poll() is None]
            break
        time.sleep(0.2)
        failed = [f"{name} exited with {proc.returncode}"
                  for name, proc in zip(names, procs) if proc.poll() not in (None, 0)]
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = []
    for name, log in zip(names, logs):
        log.seek(0)
        lines = [line for line in log.read().splitlines()
                 if not line.startswith(("I0000", "W0000", "E0000"))]
        report.append(f"--- {name} output (last lines) ---\n" + "\n".join(lines[-40:]))
        log.close()
    return "; ".join(failed) + "\n" + "\n".join(report) if failed else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    for attempt in range(2):
        tmp_path = tmp_path_factory.mktemp("multiworker")
        procs, logs, names = _start(tmp_path)
        failure = _wait(procs, logs, names)
        # A free port picked here can be taken by another process before a
        # worker binds it: then start again on new ports, once.
        if failure is None or attempt == 1 or "Could not start gRPC server" not in failure:
            break
    if failure is not None:
        pytest.fail(failure)
    workers = [dict(np.load(tmp_path / f"worker{i}.npz")) for i in range(2)]
    return workers, dict(np.load(tmp_path / "reference.npz")), tmp_path


def test_two_workers_train_like_one_process(runs):
    (w0, w1), single, tmp_path = runs
    assert int(w0["replicas"]) == int(w1["replicas"]) == 2
    assert bool(w0["chief"]) and not bool(w1["chief"])
    single, mirrored = ({k: v for k, v in single.items() if not k.startswith("mirrored_")},
                        {k[9:]: v for k, v in single.items() if k.startswith("mirrored_")})
    # A multi-step loop, which Keras cannot run under this strategy, is refused.
    assert bool(w0.pop("refuses_steps_per_execution")) and bool(w1.pop("refuses_steps_per_execution"))
    assert set(w0) == set(w1) == set(single)
    assert int(single["replicas"]) == 1 and bool(single["chief"])

    # (a) pruning: masks and steps identical across workers, exact sparsity,
    # and equal to the one-process run; kernels equal within float tolerance.
    masks = sorted(k for k in w0 if k.startswith("prune_mask_"))
    assert len(masks) == 2
    for key in masks:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        np.testing.assert_array_equal(w0[key], single[key], err_msg=key)
        n = w0[key].size
        assert int(n - w0[key].sum()) == n - round(n * (1 - 0.75)), key
    for key in sorted(k for k in w0 if k.startswith("prune_step_")):
        assert int(w0[key]) == int(w1[key]) == int(single[key]) == 8
    for key in sorted(k for k in w0 if k.startswith("prune_kernel_")):
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        np.testing.assert_allclose(w0[key], single[key], atol=1e-5, err_msg=key)

    # (b) QAT ranges identical across workers, and (c) equal to the global
    # batch's moving min/max of one process.
    assert w0["qat_ranges"].shape == single["qat_ranges"].shape and w0["qat_ranges"].size >= 4
    np.testing.assert_array_equal(w0["qat_ranges"], w1["qat_ranges"])
    np.testing.assert_allclose(w0["qat_ranges"], single["qat_ranges"], atol=1e-5)
    # The same under a one-process MirroredStrategy over two devices.
    assert int(mirrored["replicas"]) == 2
    np.testing.assert_allclose(mirrored["qat_ranges"], single["qat_ranges"], atol=1e-5)
    for key in sorted(k for k in w0 if k.startswith("qat_weight_")):
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        np.testing.assert_allclose(w0[key], single[key], atol=1e-5, err_msg=key)

    # (d) the distilled student trains, identically on both workers and as
    # in one process.
    assert np.abs(w0["student_0"] - w0["student_before"]).max() > 1e-3
    for key in sorted(k for k in w0 if k.startswith("student_")):
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        np.testing.assert_allclose(w0[key], single[key], atol=1e-5, err_msg=key)

    # Logged losses are the global-batch losses of one process.
    for key in ("prune_loss", "qat_loss", "distill_loss"):
        np.testing.assert_allclose(w0[key], w1[key], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(w0[key], single[key], rtol=1e-4, err_msg=key)

    # Only the chief wrote its export, and it runs in LiteRT.
    assert (tmp_path / "worker0.tflite").exists()
    assert not (tmp_path / "worker1.tflite").exists()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "worker0.tflite"))
    interpreter.allocate_tensors()
    assert interpreter.get_output_details()[0]["shape"].tolist() == [1, 3]


def test_enable_multi_worker_fit_refuses_what_would_train_silently_apart(monkeypatch):
    import keras

    from tfopt import distribute

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="takes a keras.Model"):
        distribute.enable_multi_worker_fit(keras.layers.Dense(2))
    # One process: nothing to change, the same object comes back.
    monkeypatch.delenv("TF_CONFIG", raising=False)
    step = model.train_step
    assert distribute.enable_multi_worker_fit(model) is model
    assert model.train_step == step and distribute.is_chief()
    # A cluster of two, but the model was built outside the strategy's scope.
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}))
    assert distribute.num_workers_from_tf_config() == 2
    with pytest.raises(ValueError, match=r"names 2 workers.*strategy\.scope\(\)"):
        distribute.enable_multi_worker_fit(model)
    with pytest.raises(ValueError, match="TF_CONFIG=.*is not valid"):
        distribute.num_workers_from_tf_config("{not json")


def test_cross_replica_min_max_is_plain_min_max_in_one_replica():
    from tfopt import distribute

    x = np.array([[-2.5, 1.0], [0.5, 3.25]], "float32")
    low, high = distribute.cross_replica_min_max(x)
    assert (float(low), float(high)) == (-2.5, 3.25)
