"""KerasTuner tuners whose trials are measured on the exported artifact.

`CompressionTuner` is a mixin over any `keras_tuner.Tuner` subclass: it
replaces `run_trial` (build -> compress -> export -> measure, through the
`CompressionHyperModel`), logs every metric to the trial, applies the
constraints, and answers best-trial and Pareto queries from feasible trials
only. `RandomSearch`, `GridSearch`, `BayesianOptimization` and `Hyperband`
here are KerasTuner's, with the mixin in front.
"""

import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import time
import traceback

import keras
import keras_tuner
import numpy as np

from tfopt import _compat
from tfopt import pipeline
from tfopt.tuning import objectives as objectives_lib
from tfopt.tuning import trials as trials_lib
from tfopt.tuning.constraints import Constraints
from tfopt.tuning.hypermodel import BATCH_SIZE
from tfopt.tuning.hypermodel import CompressionHyperModel
from tfopt.tuning.objectives import Scalarization

BASELINE_FILE = "tfopt_baseline.json"
BASELINE_TFLITE = "baseline.tflite"


def _distributed():
    return "KERASTUNER_ORACLE_IP" in os.environ


def _is_chief():
    return _distributed() and "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


class CompressionTuner:
    """Mixin turning a KerasTuner tuner into a compression search.

    Put it first in the bases: `class MyTuner(CompressionTuner,
    keras_tuner.RandomSearch)`. tfopt ships the four KerasTuner tuners mixed
    this way (`tfopt.tuning.RandomSearch`, ...).

    Every trial logs (see `tfopt.tuning.objectives.METRICS`): Keras and
    TFLite validation accuracy, `size_bytes`, `gzip_bytes`, `p50_ms`,
    `p90_ms`, `params`, `sparsity`, `feasible`, `score`, and with a baseline
    `accuracy_drop`, `bytes_vs_baseline`, `gzip_vs_baseline`,
    `p50_vs_baseline`.

    Objective: by default the oracle minimises `score`, the weighted
    scalarisation of `Scalarization` (accuracy error + weighted log10 of
    bytes and latency, + a penalty when a constraint is broken). Any logged
    metric or list of them can be the objective instead; then the penalty
    does not reach the oracle, but infeasible trials are still never best.

    Constraints are checked on the measured file; `max_bytes` also before
    training, against a lower bound of the file size (see
    `CompressionHyperModel.size_lower_bound`; with `objective="score"`,
    the only objective an untrained configuration has a value for): such
    trials are recorded with `rejected_before_training = 1` and cost no
    training.

    Baseline: the dense model (`CompressionHyperModel.measure_baseline`) is
    measured once per project and cached in `tfopt_baseline.json` in the
    project directory (keyed by the data and settings, so a changed dataset
    re-measures it). Workers of a distributed search share it through a file
    lock when they share the directory.

    Args:
        hypermodel: A `CompressionHyperModel`.
        objective: `"score"` (default), a logged metric name, a
            `keras_tuner.Objective`, or a list of them.
        max_bytes, max_latency_ms, max_accuracy_drop: Constraints (see
            `tfopt.tuning.Constraints`).
        scalarization: A `Scalarization` or a dict of its arguments
            (`accuracy_weight`, `size_weight`, `latency_weight`,
            `size_metric`).
        baseline: True (measure and cache the dense baseline), False (no
            baseline metrics; `max_accuracy_drop` then impossible), or a
            dict of baseline metrics measured elsewhere (`tflite_accuracy`,
            `size_bytes`, `gzip_bytes`, `p50_ms`).
        max_search_seconds: Start no trial after this long since `search`
            began (a running trial finishes). Single-process searches only.
        **kwargs: The KerasTuner tuner's arguments (`max_trials`,
            `directory`, `project_name`, `overwrite`, `seed`,
            `max_consecutive_failed_trials`, ...).

    Raises:
        TypeError: If `hypermodel` is not a `CompressionHyperModel`.
        ValueError: On an objective that is never logged, invalid or
            contradictory constraints (`max_accuracy_drop` without a
            baseline; `max_bytes` below what the smallest configuration of
            the space needs), or `max_search_seconds` in a distributed search.
    """

    def __init__(self, hypermodel, *args, objective="score", max_bytes=None, max_latency_ms=None,
                 max_accuracy_drop=None, scalarization=None, baseline=True,
                 max_search_seconds=None, **kwargs):
        if not isinstance(hypermodel, CompressionHyperModel):
            raise TypeError(
                f"{type(self).__name__} runs tfopt compression trials and needs a "
                f"tfopt.tuning.CompressionHyperModel, got {type(hypermodel).__name__}."
            )
        self.constraints = Constraints(max_bytes, max_latency_ms, max_accuracy_drop)
        if isinstance(scalarization, dict):
            scalarization = Scalarization(**scalarization)
        elif scalarization is None:
            scalarization = Scalarization()
        elif not isinstance(scalarization, Scalarization):
            raise TypeError(f"scalarization must be a Scalarization or a dict, got {scalarization!r}.")
        self.scalarization = scalarization
        if not (isinstance(baseline, bool) or isinstance(baseline, dict)):
            raise TypeError(f"baseline must be True, False or a dict of metrics, got {baseline!r}.")
        if isinstance(baseline, dict):
            missing = {"tflite_accuracy", "size_bytes", "gzip_bytes", "p50_ms"} - set(baseline)
            if missing:
                raise ValueError(f"baseline dict lacks {sorted(missing)}.")
        if self.constraints.needs_baseline and baseline is False:
            raise ValueError(
                "max_accuracy_drop is measured against the dense baseline, but "
                "baseline=False: pass baseline=True (measured once, cached) or a dict "
                "with the baseline's metrics."
            )
        if max_search_seconds is not None:
            if not isinstance(max_search_seconds, (int, float)) or max_search_seconds <= 0:
                raise ValueError(f"max_search_seconds={max_search_seconds!r} must be > 0.")
            if _distributed():
                raise ValueError(
                    "max_search_seconds bounds a single-process search; in a distributed "
                    "search bound it with max_trials (the chief's oracle decides)."
                )
        self._baseline_setting = baseline
        self.baseline = baseline if isinstance(baseline, dict) else None
        self.max_search_seconds = max_search_seconds
        self._search_start = None
        self._objective_spec = objectives_lib.resolve_objective(objective, baseline is not False)
        if isinstance(self, keras_tuner.Hyperband):
            # Hyperband hands each trial its epoch budget (`tuner/epochs`).
            hypermodel.use_tuner_epochs()
        # A search killed while KerasTuner wrote its state must resume.
        _compat.atomic_keras_tuner_json()
        _check_resumable(kwargs)
        super().__init__(hypermodel, *args, objective=self._objective_spec, **kwargs)
        _compat.forget_finished_keras_tuner_retries(self.oracle)
        self._check_size_feasible()

    # -- checks ------------------------------------------------------------

    @property
    def _scores_with_penalty(self):
        objective = self.oracle.objective
        return getattr(objective, "name", None) == "score"

    def _check_size_feasible(self):
        # Contradictory max_bytes: even the smallest configuration of the
        # space needs more. Only knowable when the widths are ours.
        if self.constraints.max_bytes is None or self.hypermodel.build_takes_hp:
            return
        hypermodel = self.hypermodel
        space = hypermodel.space
        smallest = hypermodel.baseline_config()
        smallest = dataclasses.replace(
            smallest,
            width=min(space["width"]) if "width" in space else None,
            structured_ratio=max(space.get("structured_ratio", (0.0,))),
            quantization="ptq" if set(space["quantization"]) - {"none"} else "none",
        )
        bound = hypermodel.size_lower_bound(hypermodel.architecture(smallest), smallest)
        keras.backend.clear_session()
        if bound > self.constraints.max_bytes:
            raise ValueError(
                f"max_bytes={self.constraints.max_bytes} cannot be met: the smallest "
                f"configuration of the space (width {smallest.width}, channels removed "
                f"{smallest.structured_ratio}, {smallest.quantization}) stores at least "
                f"{bound} bytes of kernels. Widen the space or raise max_bytes."
            )

    # -- the search ----------------------------------------------------------

    def search(self, x=None, y=None, validation_data=None, **kwargs):
        """Runs the search (see KerasTuner's `search`).

        Args:
            x, y: Training inputs and integer labels (numpy arrays), or `x`
                a `tf.data.Dataset` (or generator function) of `(x, y)`
                pairs, batched or not, with `y` None.
            validation_data: `(x_val, y_val)`, or a dataset of `(x, y)`
                pairs: every trial's accuracies are measured on it.
                Required (except on a distributed chief). Datasets are read
                once into memory: every trial trains and measures on the
                same examples.
            **kwargs: `batch_size` (default 32), `callbacks`, `verbose`.

        Raises:
            ValueError: If `x`, `y` or `validation_data` is missing, or a
                dataset yields no labels.
        """
        if _is_chief():
            # The chief only serves the oracle: no data, no baseline.
            return super().search(**kwargs)
        x, y, validation_data = _as_arrays(x, y, validation_data)
        if x is None or y is None:
            raise ValueError("search() needs training data x and y.")
        if validation_data is None:
            raise ValueError(
                "tfopt measures every trial on held-out data: pass "
                "validation_data=(x_val, y_val) to search()."
            )
        self._search_start = time.monotonic()
        if self._baseline_setting is True:
            self.baseline = self._ensure_baseline(x, y, validation_data,
                                                  kwargs.get("batch_size", BATCH_SIZE))
        return super().search(x, y, validation_data=validation_data, **kwargs)

    def pre_create_trial(self):
        super().pre_create_trial()
        if self.max_search_seconds is None or self._search_start is None:
            return
        if time.monotonic() - self._search_start > self.max_search_seconds:
            # The base oracle stops (returns STOPPED) once max_trials trials
            # exist; lowering it is how a search ends early without killing
            # a trial. The constructor's value comes back on reload.
            self.oracle.max_trials = max(1, len(self.oracle.trials))

    def run_trial(self, trial, x, y, validation_data=None, batch_size=BATCH_SIZE, callbacks=None,
                  verbose=0, **unused):
        """Builds, compresses, exports and measures one trial.

        Returns:
            The metrics dict logged to the trial.

        Raises:
            keras_tuner.errors.FailedTrialError: If pruning, training or
                conversion raised ValueError/TypeError (deterministic, so not
                retried); the reason is recorded with the trial.
        """
        start = time.perf_counter()
        hp = trial.hyperparameters
        directory = self.get_trial_dir(trial.trial_id)
        # A fresh graph and the same seed for every trial: a configuration's
        # result does not depend on what ran before it (or on which worker).
        keras.backend.clear_session()
        gc.collect()
        keras.utils.set_random_seed(self.hypermodel.seed)
        record = {"trial_id": trial.trial_id, "values": dict(hp.values), "status": "RUNNING"}
        stage = "build"
        try:
            cfg = self.hypermodel.config(hp)
            if "tuner/epochs" in hp.values:
                cfg = dataclasses.replace(cfg, epochs=int(hp.values["tuner/epochs"]))
            record["config"] = dataclasses.asdict(cfg)
            model = self.hypermodel.build(hp)
            bound = self.hypermodel.size_lower_bound(model, cfg)
            over = self.constraints.size_violation(bound)
            if over is not None and self._scores_with_penalty:
                return self._reject(record, directory, bound, over, start)
            stage = "compress, export and measure"
            outcome = self.hypermodel.run_config(
                cfg, model, x, y, validation_data, batch_size, callbacks, verbose,
                export_path=os.path.join(directory, trials_lib.TFLITE_FILE))
        except (ValueError, TypeError) as error:
            reason = f"{stage}: {type(error).__name__}: {error}"
            record.update(status="FAILED", reason=reason, traceback=traceback.format_exc())
            trials_lib.write_record(directory, record)
            raise keras_tuner.errors.FailedTrialError(reason) from error
        except Exception as error:
            record.update(status="ERROR", reason=f"{stage}: {type(error).__name__}: {error}",
                          traceback=traceback.format_exc())
            trials_lib.write_record(directory, record)
            raise
        metrics = dict(outcome.metrics)
        metrics.update(self._relative_to_baseline(metrics))
        violations = self.constraints.violations(metrics, self.baseline)
        violation = float(sum(violations.values()))
        metrics.update(
            feasible=0.0 if violations else 1.0,
            violation=violation,
            rejected_before_training=0.0,
            score=self.scalarization(metrics, violation),
            trial_seconds=time.perf_counter() - start,
        )
        with contextlib.suppress(Exception):  # a model Keras cannot save must not fail the trial
            outcome.model.save(os.path.join(directory, trials_lib.KERAS_FILE))
        record.update(status="COMPLETED", metrics=metrics, violations=violations,
                      reason=self.constraints.describe(violations) if violations else None)
        trials_lib.write_record(directory, record)
        return metrics

    def _reject(self, record, directory, bound, over, start):
        metrics = {
            "feasible": 0.0,
            "rejected_before_training": 1.0,
            "size_bytes_lower_bound": float(bound),
            "violation": over,
            # Scored as zero accuracy at the bound's size, plus the penalty.
            "score": (self.scalarization.accuracy_weight
                      + self.scalarization.size_weight * np.log10(max(bound, 1))
                      + objectives_lib.penalty(over)),
            "trial_seconds": time.perf_counter() - start,
        }
        reason = (f"rejected before training: the file needs at least {bound} bytes of kernels, "
                  f"over max_bytes={self.constraints.max_bytes}")
        record.update(status="COMPLETED", metrics=metrics, violations={"max_bytes": over},
                      reason=reason)
        trials_lib.write_record(directory, record)
        return metrics

    def _relative_to_baseline(self, metrics):
        if not self.baseline:
            return {}
        base = self.baseline
        relative = {
            "accuracy_drop": base["tflite_accuracy"] - metrics["tflite_accuracy"],
            "bytes_vs_float": metrics["size_bytes"] / base["size_bytes"],
            "gzip_vs_float": metrics["gzip_bytes"] / base["gzip_bytes"],
            "p50_vs_float": metrics["p50_ms"] / max(base["p50_ms"], 1e-9),
        }
        # The names of earlier searches (objectives and constraints may name them).
        relative.update({old: relative[new] for old, new in pipeline.LEGACY_NAMES.items()
                         if new in relative})
        return relative

    # -- the baseline, measured once per project -------------------------

    def _baseline_epochs(self):
        if self.hypermodel.epochs_from_tuner:
            return int(getattr(self.oracle, "max_epochs", max(self.hypermodel.space["epochs"])))
        return None

    def _baseline_key(self, x, y, validation_data, batch_size):
        digest = hashlib.sha256()
        for array in (x, y, *validation_data):
            array = np.ascontiguousarray(array)
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(array.tobytes())
        settings = {
            "config": dataclasses.asdict(self.hypermodel.baseline_config(self._baseline_epochs())),
            "batch_size": batch_size,
            "latency": self.hypermodel.latency,
            "seed": self.hypermodel.seed,
            "base_model": None if self.hypermodel.base_model is None else self.hypermodel.base_model.name,
        }
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()

    def _ensure_baseline(self, x, y, validation_data, batch_size):
        path = os.path.join(self.project_dir, BASELINE_FILE)
        key = self._baseline_key(x, y, validation_data, batch_size)
        with _file_lock(path + ".lock"):
            if os.path.isfile(path):
                with open(path) as handle:
                    cached = json.load(handle)
                if cached.get("key") == key:
                    return cached["metrics"]
            metrics = self.hypermodel.measure_baseline(
                x, y, validation_data, batch_size, epochs=self._baseline_epochs(),
                export_path=os.path.join(self.project_dir, BASELINE_TFLITE))
            keras.backend.clear_session()
            tmp = path + ".tmp"
            with open(tmp, "w") as handle:
                json.dump({"key": key, "metrics": metrics}, handle, indent=2)
            os.replace(tmp, path)
        return metrics

    # -- results -------------------------------------------------------------

    def trials(self):
        """Every trial of the project as `TrialRecord`s (sorted by id).

        Read from the oracle in the process that holds it, from the project
        directory on a distributed worker.
        """
        oracle = self.oracle
        if isinstance(oracle, keras_tuner.Oracle):
            records = [trials_lib.TrialRecord.from_trial(t, self.get_trial_dir(t.trial_id))
                       for t in oracle.trials.values()]
            return sorted(records, key=lambda r: r.trial_id)
        return trials_lib.load_trials(self.project_dir)

    def best_trials(self, num_trials=1):
        """The best feasible measured trials by the oracle's objective.

        Infeasible, rejected and failed trials are never returned, even when
        nothing else exists (then the list is shorter or empty).
        """
        objective = self.oracle.objective
        pool = [r for r in self.trials() if r.feasible and r.measured and r.score is not None]
        pool.sort(key=lambda r: r.score, reverse=objective.direction == "max")
        return pool[:num_trials]

    def get_best_hyperparameters(self, num_trials=1):
        """Hyperparameters of `best_trials(num_trials)` (feasible only)."""
        return [r.hyperparameters for r in self.best_trials(num_trials)]

    def get_best_models(self, num_models=1):
        """The final Keras models of `best_trials(num_models)` (feasible only)."""
        return [self.load_model(r) for r in self.best_trials(num_models)]

    def load_model(self, trial):
        """The trial's final Keras model (stripped, or QAT), as trained."""
        path = os.path.join(self.get_trial_dir(trial.trial_id), trials_lib.KERAS_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"Trial {trial.trial_id} saved no model ({path} is missing).")
        import tfopt  # noqa: F401  (registers tfopt's layers for loading)

        return keras.models.load_model(path)

    def pareto_front(self, objectives=trials_lib.DEFAULT_PARETO_OBJECTIVES,
                     include_infeasible=False):
        """The non-dominated trials (see `tfopt.tuning.pareto_front`).

        Args:
            objectives: Logged metric names, default TFLite accuracy (up),
                bytes and p50 latency (down).
            include_infeasible: Also consider trials breaking a constraint.

        Returns:
            A list of `TrialRecord`s.

        Example:

        ```python
        for r in tuner.pareto_front():
            print(r.values, r.metrics["tflite_accuracy"], r.metrics["size_bytes"])
        ```
        """
        return trials_lib.pareto_front(self.trials(), objectives, include_infeasible)

    def write_report(self, out_dir, command=None):
        """Writes trials.csv, trials.md, results.json and pareto.png.

        Returns:
            A dict of the paths written.
        """
        from tfopt.tuning import report

        return report.write_report(self.trials(), out_dir, baseline=self.baseline,
                                   constraints=self.constraints, command=command,
                                   scalarization=self.scalarization)


def _as_arrays(x, y, validation_data):
    """Datasets of `(x, y)` pairs (or generator functions) -> numpy arrays."""
    from tfopt.data import collect_inputs

    def read(data, name):
        inputs, labels = collect_inputs(data, name=name)
        if labels is None:
            raise ValueError(f"{name} yields no labels: give a dataset of (x, y) pairs.")
        return inputs, labels

    if x is not None and y is None and not hasattr(x, "shape"):
        x, y = read(x, "search's x")
    if validation_data is not None and not isinstance(validation_data, (tuple, list)):
        validation_data = read(validation_data, "validation_data")
    return x, y, validation_data


@contextlib.contextmanager
def _file_lock(path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RandomSearch(CompressionTuner, keras_tuner.RandomSearch):
    """KerasTuner's random search over a `CompressionHyperModel`.

    Args: as `CompressionTuner`, plus `keras_tuner.RandomSearch`'s
    (`max_trials`, `seed`, `directory`, `project_name`, `overwrite`, ...).

    Example:

    ```python
    tuner = tfopt.tuning.RandomSearch(hypermodel, max_trials=20, max_accuracy_drop=0.01,
                                      directory="search", project_name="digits")
    tuner.search(x, y, validation_data=(x_val, y_val))
    front = tuner.pareto_front()
    ```
    """


class GridSearch(CompressionTuner, keras_tuner.GridSearch):
    """KerasTuner's grid search over a `CompressionHyperModel`: every
    combination of the (discrete) space, in order, up to `max_trials`."""


class BayesianOptimization(CompressionTuner, keras_tuner.BayesianOptimization):
    """KerasTuner's Gaussian-process search over a `CompressionHyperModel`.

    With the default objective the GP models `score`, infeasibility penalty
    included, so it learns where the constraints bite."""


class Hyperband(CompressionTuner, keras_tuner.Hyperband):
    """KerasTuner's Hyperband over a `CompressionHyperModel`.

    Hyperband's budget is epochs: each trial trains for its `tuner/epochs`
    (the `epochs` hyperparameter is not declared) and is measured at the end
    like any trial. A promoted configuration retrains from scratch rather
    than from its previous checkpoint: a pruning schedule spans the whole
    training, so resuming a 2-epoch schedule into a 6-epoch one would change
    the recipe. This costs the sum of the budgets instead of the largest.
    The baseline trains for `max_epochs`.
    """


def _check_resumable(kwargs):
    """A clear error for a search state KerasTuner cannot reload (an empty or
    cut-off `oracle.json`, written in place by a KerasTuner run killed
    mid-write before tfopt made those writes atomic)."""
    if kwargs.get("overwrite", False):
        return
    directory = kwargs.get("directory") or "."
    project = kwargs.get("project_name") or "untitled_project"
    path = os.path.join(directory, project, "oracle.json")
    if "://" in path or not os.path.exists(path):
        return
    try:
        with open(path) as handle:
            json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"The search state {path} cannot be read ({type(error).__name__}: {error}); "
            f"the run that wrote it was probably killed mid-write. Pass overwrite=True "
            f"to start the search afresh, or restore the file.") from None
