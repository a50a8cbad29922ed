"""A tiny compression search run as a separate process by the tests
(resume after kill, distributed chief + workers). Not collected by pytest.

    python -m tests.tuning.search_script DIRECTORY PROJECT MAX_TRIALS LOG [--overwrite]

Appends "<tuner id> <trial id>" to LOG when a trial starts.
"""

import gc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run(directory, project, max_trials, log, overwrite=False):
    """Runs the search (in this process); see the module docstring."""
    from tfopt import data
    from tfopt import tuning
    from tests.tuning.conftest import tiny_hypermodel

    class LoggingSearch(tuning.RandomSearch):
        def on_trial_begin(self, trial):
            with open(log, "a") as handle:
                handle.write(f"{self.tuner_id} {trial.trial_id}\n")
            super().on_trial_begin(trial)

    (x, y), (x_val, y_val) = data.load_digits(8)
    tuner = LoggingSearch(
        tiny_hypermodel({"width": [1.0, 0.75, 0.5], "pruning": ["none", "unstructured"],
                         "quantization": ["none", "ptq"]}),
        max_trials=int(max_trials), baseline=False, seed=7, directory=directory,
        project_name=project, overwrite=overwrite)
    tuner.search(x[:256], y[:256], validation_data=(x_val[:96], y_val[:96]), verbose=0)


def main():
    directory, project, max_trials, log = sys.argv[1:5]
    import tfopt.tuning  # noqa: F401  (TensorFlow, Keras, KerasTuner)

    # The tuner runs gc.collect() before every trial: keep the ~400k objects
    # of the imports out of it (as tests/conftest.py does in-process).
    gc.collect()
    gc.freeze()
    run(directory, project, max_trials, log, overwrite="--overwrite" in sys.argv)


if __name__ == "__main__":
    main()
