"""Finished trials as plain records, read from a tuner or from disk, and the
Pareto front over them."""

import dataclasses
import glob
import json
import os

from keras_tuner.engine import trial as trial_module

from tfopt.bench.report import DEFAULT_PARETO_OBJECTIVES  # noqa: F401  (re-exported)
from tfopt.bench.report import pareto_front as _pareto_front

# Written by the worker that ran a trial, next to KerasTuner's trial.json:
# the failure or infeasibility reason (KerasTuner's gRPC protocol does not
# carry a trial's message, so in a distributed search only this file has it).
RECORD_FILE = "tfopt_trial.json"
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"


@dataclasses.dataclass
class TrialRecord:
    """One trial of a compression search.

    Attributes:
        trial_id: KerasTuner's trial id.
        status: `"COMPLETED"`, `"FAILED"`, `"INVALID"`, `"RUNNING"`, ...
        values: The hyperparameter values (active ones).
        metrics: The logged metrics (name -> float).
        score: The oracle's objective value, or None.
        reason: Why the trial failed or is infeasible, else None.
        directory: The trial's directory (`model.tflite`, `model.keras`).
        hyperparameters: The `keras_tuner.HyperParameters`.
    """

    trial_id: str
    status: str
    values: dict
    metrics: dict
    score: float | None = None
    reason: str | None = None
    directory: str | None = None
    hyperparameters: object = None

    @property
    def measured(self):
        """Whether the trial was trained, exported and measured."""
        return self.status == "COMPLETED" and "tflite_accuracy" in self.metrics

    @property
    def feasible(self):
        """Completed and within every constraint."""
        return self.status == "COMPLETED" and self.metrics.get("feasible", 1.0) == 1.0

    @property
    def rejected_before_training(self):
        return self.metrics.get("rejected_before_training", 0.0) == 1.0

    @property
    def tflite_path(self):
        path = os.path.join(self.directory, TFLITE_FILE) if self.directory else None
        return path if path and os.path.isfile(path) else None

    @classmethod
    def from_trial(cls, trial, directory=None):
        """A record from a `keras_tuner` Trial (and its directory's record file)."""
        metrics = {}
        for name in trial.metrics.metrics:
            value = trial.metrics.get_last_value(name)
            if value is not None:
                metrics[name] = float(value)
        extra = _read_record(directory)
        reason = extra.get("reason")
        if reason is None and trial.message:
            # KerasTuner keeps the traceback; its last line is the error.
            reason = trial.message.strip().splitlines()[-1]
        return cls(
            trial_id=trial.trial_id,
            status=str(trial.status),
            values=dict(trial.hyperparameters.values),
            metrics=metrics,
            score=None if trial.score is None else float(trial.score),
            reason=reason,
            directory=directory,
            hyperparameters=trial.hyperparameters,
        )


def _read_record(directory):
    path = os.path.join(directory, RECORD_FILE) if directory else None
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_record(directory, record):
    """Writes a trial's record file atomically (a killed search leaves no
    half-written JSON behind)."""
    path = os.path.join(directory, RECORD_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.replace(tmp, path)


def load_trials(project_dir):
    """Reads every trial of a KerasTuner project directory.

    Args:
        project_dir: `directory/project_name` of a search.

    Returns:
        A list of `TrialRecord`s sorted by trial id.

    Raises:
        ValueError: If the directory holds no trials.

    Example:

    ```python
    records = tfopt.tuning.load_trials("search/digits")
    front = tfopt.tuning.pareto_front(records)
    ```
    """
    paths = sorted(glob.glob(os.path.join(project_dir, "trial_*", "trial.json")))
    if not paths:
        raise ValueError(f"No trials in {project_dir!r} (no trial_*/trial.json).")
    records = []
    for path in paths:
        trial = trial_module.Trial.load(path)
        records.append(TrialRecord.from_trial(trial, os.path.dirname(path)))
    return sorted(records, key=lambda r: r.trial_id)


# The one Pareto front of tfopt (points, trials or bench rows): see
# `tfopt.bench.report.pareto_front`. Trials: `pareto_front(records,
# objectives=DEFAULT_PARETO_OBJECTIVES, include_infeasible=False)`.
pareto_front = _pareto_front
