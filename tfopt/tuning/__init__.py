"""Compression-aware hyperparameter search with KerasTuner.

KerasTuner searches how to compress (sparsity, schedule and pattern, QAT,
distillation, learning rate, width); every trial is trained, stripped,
exported to TFLite and measured on the exported file (accuracy, bytes, gzip
bytes, p50 latency). Constraints mark trials infeasible; `pareto_front`
returns the non-dominated trials.
"""

from tfopt.tuning.constraints import Constraints
from tfopt.tuning.hypermodel import CompressionHyperModel
from tfopt.tuning.hypermodel import TrialOutcome
from tfopt.tuning.objectives import METRICS
from tfopt.tuning.objectives import Scalarization
from tfopt.tuning.report import write_report
from tfopt.tuning.space import DEFAULT_SPACE
from tfopt.tuning.space import TrialConfig
from tfopt.tuning.trials import TrialRecord
from tfopt.tuning.trials import load_trials
from tfopt.tuning.trials import pareto_front
from tfopt.tuning.tuner import BayesianOptimization
from tfopt.tuning.tuner import CompressionTuner
from tfopt.tuning.tuner import GridSearch
from tfopt.tuning.tuner import Hyperband
from tfopt.tuning.tuner import RandomSearch

__all__ = [
    "BayesianOptimization",
    "CompressionHyperModel",
    "CompressionTuner",
    "Constraints",
    "DEFAULT_SPACE",
    "GridSearch",
    "Hyperband",
    "METRICS",
    "RandomSearch",
    "Scalarization",
    "TrialConfig",
    "TrialOutcome",
    "TrialRecord",
    "load_trials",
    "pareto_front",
    "write_report",
]
