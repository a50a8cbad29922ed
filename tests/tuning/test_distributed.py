"""KerasTuner's distributed mode (chief oracle + 2 workers over gRPC on
loopback) with tfopt's hypermodel: every trial runs exactly once."""

import os
import socket
import subprocess
import sys

import pytest

from tfopt import tuning


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_TRIALS = 4


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(tmp_path, tuner_id, port, log):
    env = {**os.environ, "PYTHONPATH": REPO, "KERASTUNER_TUNER_ID": tuner_id,
           "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tuning.search_script", str(tmp_path), "dist",
         str(MAX_TRIALS), str(log)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_chief_and_two_workers_run_every_trial_once(tmp_path):
    port = free_port()
    chief = launch(tmp_path, "chief", port, tmp_path / "chief.log")
    workers = [launch(tmp_path, f"tuner{i}", port, tmp_path / f"tuner{i}.log") for i in (0, 1)]
    try:
        for worker in workers:
            _, errors = worker.communicate(timeout=300)
            assert worker.returncode == 0, errors
        # The chief polls every 20 s for the workers to have left.
        _, errors = chief.communicate(timeout=120)
        assert chief.returncode == 0, errors
    finally:
        for process in [chief, *workers]:
            if process.poll() is None:
                process.kill()
    runs = {}
    for i in (0, 1):
        path = tmp_path / f"tuner{i}.log"
        runs[f"tuner{i}"] = [line.split()[1] for line in open(path)] if path.exists() else []
    ran = runs["tuner0"] + runs["tuner1"]
    records = tuning.load_trials(str(tmp_path / "dist"))
    ids = sorted(r.trial_id for r in records)
    assert ids == [str(i) for i in range(MAX_TRIALS)]
    assert sorted(ran) == ids, f"trials lost or duplicated: {runs}"
    assert not (tmp_path / "chief.log").exists()  # the chief serves, never trains
    for record in records:
        # Every metric crossed gRPC into the chief's trial.json.
        assert record.status == "COMPLETED" and record.measured
        assert record.score == pytest.approx(record.metrics["score"], rel=1e-5)
