"""KerasTuner's distributed mode (chief oracle + 2 workers over gRPC on
loopback) with tfopt's hypermodel: every trial runs exactly once.

One worker is a separate process; the other worker and the chief run in
this process (the chief in a thread), each built and run by the same script
under the same KerasTuner environment variables as in a process of its own.
Every request still crosses gRPC. That spares two TensorFlow start-ups on
a 2-core machine.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

from tfopt import tuning
from tests.tuning import search_script


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_TRIALS = 4
# KerasTuner's chief checks every 20 s whether the workers have left; a
# short interval here only ends the wait sooner (the same check runs).
CHIEF_POLL_SECONDS = 0.2


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def distributed_env(tuner_id, port):
    return {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(port)}


def launch(tmp_path, tuner_id, port, log):
    env = {**os.environ, "PYTHONPATH": REPO, **distributed_env(tuner_id, port)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tuning.search_script", str(tmp_path), "dist",
         str(MAX_TRIALS), str(log)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_server(port, thread, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def start_chief(tmp_path, port, monkeypatch):
    """Runs the chief's search (tfopt's tuner serving the oracle) in a thread."""
    from keras_tuner.src.distribute import oracle_chief

    monkeypatch.setattr(oracle_chief, "time", types.SimpleNamespace(
        sleep=lambda seconds: time.sleep(min(seconds, CHIEF_POLL_SECONDS))))
    errors = []

    def serve():
        try:
            search_script.run(str(tmp_path), "dist", MAX_TRIALS, str(tmp_path / "chief.log"))
        except BaseException as error:  # reported by the test
            errors.append(error)

    with monkeypatch.context() as env:
        # The tuner reads these when it is built and when the server starts.
        for name, value in distributed_env("chief", port).items():
            env.setenv(name, value)
        thread = threading.Thread(target=serve, name="kerastuner-chief", daemon=True)
        thread.start()
        listening = wait_for_server(port, thread, timeout=120)
    assert listening, f"the chief did not start serving: {errors}"
    return thread, errors


def wait_for_first_trial(process, log, timeout):
    """Waits until the worker process has started a trial (or has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_text().strip():
            return
        time.sleep(0.1)


def test_chief_and_two_workers_run_every_trial_once(tmp_path, monkeypatch):
    port = free_port()
    # The worker process starts first: its TensorFlow import is the long
    # part, and it waits for the chief's server (gRPC wait_for_ready).
    worker = launch(tmp_path, "tuner1", port, tmp_path / "tuner1.log")
    try:
        chief, chief_errors = start_chief(tmp_path, port, monkeypatch)
        # The second worker joins once the first is busy, so both take trials.
        wait_for_first_trial(worker, tmp_path / "tuner1.log", timeout=300)
        with monkeypatch.context() as env:
            for name, value in distributed_env("tuner0", port).items():
                env.setenv(name, value)
            search_script.run(str(tmp_path), "dist", MAX_TRIALS, str(tmp_path / "tuner0.log"))
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
        # The chief returns once no trial is ongoing and both workers left.
        chief.join(timeout=60)
        assert not chief.is_alive(), "the chief did not stop after the workers left"
        assert not chief_errors, chief_errors
    finally:
        if worker.poll() is None:
            worker.kill()
    runs = {}
    for i in (0, 1):
        path = tmp_path / f"tuner{i}.log"
        runs[f"tuner{i}"] = [line.split()[1] for line in open(path)] if path.exists() else []
    ran = runs["tuner0"] + runs["tuner1"]
    records = tuning.load_trials(str(tmp_path / "dist"))
    ids = sorted(r.trial_id for r in records)
    assert ids == [str(i) for i in range(MAX_TRIALS)]
    assert sorted(ran) == ids, f"trials lost or duplicated: {runs}"
    assert runs["tuner0"] and runs["tuner1"], f"a worker ran no trial: {runs}"
    assert not (tmp_path / "chief.log").exists()  # the chief serves, never trains
    for record in records:
        # Every metric crossed gRPC into the chief's trial.json.
        assert record.status == "COMPLETED" and record.measured
        assert record.score == pytest.approx(record.metrics["score"], rel=1e-5)
