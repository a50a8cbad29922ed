"""tfopt: model compression inside `model.fit` for Keras 3.

Subpackages: `tfopt.pruning` (magnitude and structured pruning),
`tfopt.clustering` (weight clustering),
`tfopt.quantization` (quantization-aware training), `tfopt.distillation`
(knowledge distillation), `tfopt.export` (TFLite export, inspection,
verification), `tfopt.bench` (latency and benchmark suites), `tfopt.tuning`
(compression search with KerasTuner), `tfopt.data` (the embedded datasets),
`tfopt.models` (small reference models).
"""

from tfopt import bench
from tfopt import clustering
from tfopt import data
from tfopt import distillation
from tfopt import export
from tfopt import models
from tfopt import pruning
from tfopt import quantization
from tfopt import tuning

__version__ = "0.1.0"

__all__ = ["__version__", "bench", "clustering", "data", "distillation", "export", "models", "pruning", "quantization",
           "tuning"]
