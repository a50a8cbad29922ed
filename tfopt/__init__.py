"""tfopt: model compression inside `model.fit` for Keras 3.

Subpackages: `tfopt.pruning` (magnitude pruning), `tfopt.export` (TFLite
export), `tfopt.data` (the embedded datasets).
"""

from tfopt import data
from tfopt import export
from tfopt import pruning

__version__ = "0.1.0"

__all__ = ["__version__", "data", "export", "pruning"]
