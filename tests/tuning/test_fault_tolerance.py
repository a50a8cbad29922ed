"""Failed trials are recorded with their reason; a killed search resumes
without losing or redoing trials."""

import json
import os
import signal
import subprocess
import sys
import time

import keras

from tfopt import tuning
from tests.tuning import search_script
from tests.tuning.conftest import QUICK_LATENCY

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Erfinv(keras.layers.Layer):
    """An op with no TFLite builtin nor select-TF kernel: conversion fails."""

    def call(self, x):
        return keras.ops.erfinv(keras.ops.tanh(x) * 0.5)


def sometimes_unconvertible(width):
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(int(16 * width))]
    if width == 0.5:
        layers.append(Erfinv())
    return keras.Sequential(layers + [keras.layers.Dense(10)])


def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, digits_small):
    (x, y), validation = digits_small
    hypermodel = tuning.CompressionHyperModel(
        sometimes_unconvertible, space={"width": [0.5, 1.0], "epochs": 1, "pruning": "none",
                                        "quantization": "none"}, latency=QUICK_LATENCY)
    # (GridSearch would propose the failed combination again: KerasTuner's
    # grid only advances past trials that completed.)
    tuner = tuning.RandomSearch(hypermodel, max_trials=2, baseline=False, seed=0,
                                directory=str(tmp_path), project_name="f")
    tuner.search(x, y, validation_data=validation, verbose=0)
    failed, done = sorted(tuner.trials(), key=lambda r: r.values["width"])
    assert failed.values["width"] == 0.5 and failed.status == "FAILED"
    assert "Erfinv" in failed.reason and "compress, export and measure" in failed.reason
    assert json.load(open(os.path.join(failed.directory, "tfopt_trial.json")))["status"] == "FAILED"
    assert done.values["width"] == 1.0 and done.status == "COMPLETED" and done.measured
    # Reloaded from disk, the reason is still there.
    again = tuning.load_trials(tuner.project_dir)
    (reloaded,) = [r for r in again if r.status == "FAILED"]
    assert "Erfinv" in reloaded.reason


def trial_statuses(project_dir):
    statuses = {}
    if not os.path.isdir(project_dir):
        return statuses
    for name in os.listdir(project_dir):
        path = os.path.join(project_dir, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            try:
                with open(path) as handle:
                    trial = json.load(handle)
            except ValueError:  # being written
                continue
            statuses[trial["trial_id"]] = trial["status"]
    return statuses


def run_script(tmp_path, max_trials, log, env=None, overwrite=False):
    args = [sys.executable, "-m", "tests.tuning.search_script", str(tmp_path), "resume",
            str(max_trials), str(log)] + (["--overwrite"] if overwrite else [])
    return subprocess.Popen(args, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def started(log):
    return [line.split()[1] for line in open(log)] if os.path.exists(log) else []


MAX_TRIALS = 3  # killed after one finished: one interrupted, one never started


def test_killed_search_resumes_without_losing_or_redoing_trials(tmp_path):
    project = tmp_path / "resume"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    process = run_script(tmp_path, MAX_TRIALS, first_log, overwrite=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        # Kill once a trial has finished and the next one is running.
        done = {t for t, s in trial_statuses(project).items() if s == "COMPLETED"}
        if done and set(started(first_log)) - done:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {t for t, s in trial_statuses(project).items() if s == "COMPLETED"}
    assert 1 <= len(finished) < MAX_TRIALS
    # The trial that was running when the process died.
    interrupted = set(started(first_log)) - finished
    assert interrupted, started(first_log)
    # The resumed search starts from what the killed process left on disk;
    # it runs here (this process never saw the first search's state), which
    # spares a second TensorFlow import.
    search_script.run(str(tmp_path), "resume", MAX_TRIALS, str(second_log))
    records = tuning.load_trials(str(project))
    assert sorted(r.trial_id for r in records) == [str(i) for i in range(MAX_TRIALS)]
    assert all(r.status == "COMPLETED" and r.measured for r in records)
    redone = started(second_log)
    assert not finished & set(redone), "a finished trial was run again"
    assert len(redone) == len(set(redone)) and finished | set(redone) == {r.trial_id for r in records}
    # The interrupted trial ran again, once; the one never started (when
    # the kill came after one trial, the usual case) ran.
    assert interrupted <= set(redone)
    if len(finished) == 1:
        assert set(redone) - interrupted


def test_a_trial_ended_just_before_a_kill_is_not_run_again(tmp_path):
    """KerasTuner's end_trial writes trial.json (COMPLETED) and oracle.json
    while the trial is still listed as ongoing; a search killed right then
    must not run that trial again when it resumes."""
    from tests.tuning.conftest import tiny_hypermodel

    options = dict(max_trials=3, baseline=False, seed=0, directory=str(tmp_path),
                   project_name="p")
    first = tuning.RandomSearch(tiny_hypermodel({"width": [1.0, 0.5]}), overwrite=True,
                                **options)
    first.save()  # tuner0.json: what a search has written by then
    oracle = first.oracle
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"score": 1.0})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)  # the state on disk now: as if killed here
    state = json.loads((tmp_path / "p" / "oracle.json").read_text())
    assert state["ongoing_trials"] == {"tuner0": trial.trial_id}
    resumed = tuning.RandomSearch(tiny_hypermodel({"width": [1.0, 0.5]}), **options).oracle
    assert resumed.trials[trial.trial_id].status == "COMPLETED"
    following = resumed.create_trial("tuner0")
    assert following.trial_id != trial.trial_id and following.status == "RUNNING"


def test_search_state_writes_are_atomic_and_a_cut_state_is_named(tmp_path):
    """KerasTuner's JSON state is written through a temporary file and a
    rename (a kill mid-write cannot leave an empty oracle.json), and an
    unreadable oracle.json left by an older run is a clear error."""
    from keras_tuner.src import utils

    from tests.tuning.conftest import tiny_hypermodel

    tuner = tuning.RandomSearch(tiny_hypermodel(), max_trials=1, baseline=False,
                                directory=str(tmp_path), project_name="p", overwrite=True)
    assert getattr(utils.save_json, "_tfopt_atomic", False)
    tuner.oracle.save()
    oracle = tmp_path / "p" / "oracle.json"
    assert json.loads(oracle.read_text())["ongoing_trials"] == {}
    assert not [f for f in os.listdir(tmp_path / "p") if f.startswith(".tmp-")]
    oracle.write_text("")  # what an in-place write killed at the wrong moment leaves
    try:
        tuning.RandomSearch(tiny_hypermodel(), max_trials=1, baseline=False,
                            directory=str(tmp_path), project_name="p")
    except ValueError as error:
        assert "oracle.json" in str(error) and "overwrite=True" in str(error)
    else:
        raise AssertionError("an empty oracle.json was accepted")
    # overwrite=True starts afresh.
    tuning.RandomSearch(tiny_hypermodel(), max_trials=1, baseline=False,
                        directory=str(tmp_path), project_name="p", overwrite=True)
