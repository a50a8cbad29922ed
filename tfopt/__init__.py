"""tfopt: model compression inside `model.fit` for Keras 3.

Subpackages: `tfopt.pruning` (magnitude and structured pruning),
`tfopt.clustering` (weight clustering),
`tfopt.quantization` (quantization-aware training), `tfopt.distillation`
(knowledge distillation), `tfopt.distribute` (`model.fit` on several
machines), `tfopt.export` (TFLite export, inspection, verification),
`tfopt.bench` (latency and benchmark suites), `tfopt.tuning` (compression
search with KerasTuner), `tfopt.compress` (one-call recipes on a
user's model and data), `tfopt.data` (the embedded datasets and input
handling), `tfopt.models` (small reference models).

Subpackages are imported on first use (`tfopt.pruning` works after
`import tfopt`), so `import tfopt` and `tfopt --help` do not load TensorFlow.
tfopt's layers are still registered for `keras.models.load_model` after
`import tfopt`: as soon as Keras is imported (before or after tfopt).
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_SUBMODULES = ("bench", "clustering", "compress", "data", "defaults", "distillation", "distribute",
               "export", "graph", "models", "pipeline", "pruning", "quantization", "support",
               "tuning", "zoo")

__all__ = ["__version__", *_SUBMODULES]


# The subpackages that register Keras serializables (layers, schedules...).
_REGISTERING = ("pruning", "quantization", "distillation", "clustering")


def _register():
    for name in _REGISTERING:
        importlib.import_module(f"tfopt.{name}")


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Registers tfopt's layers right after `import keras` completes.

    A mere look-up (`importlib.util.find_spec("keras")`, which TensorFlow
    and other libraries do without importing Keras) must not use the hook
    up: it leaves `sys.meta_path` only once Keras has really been executed.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or "keras" in sys.modules:
            return None
        # Ask the other finders (not this one) where Keras is.
        others = [f for f in sys.meta_path if f is not self and hasattr(f, "find_spec")]
        spec = None
        for finder in others:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module
        hook = self

        def exec_module(module):
            execute(module)
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            _register()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register()
elif not any(isinstance(f, _RegisterWhenKerasLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"tfopt.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfopt' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
