import gc
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # Frees the test's graphs and garbage (a full gc.collect)...
    keras.backend.clear_session()
    # ...then moves what survived (TensorFlow, Keras and tfopt modules,
    # session fixtures: ~400k objects) out of the collector's reach. Without
    # this every later full collection walks them again, ~1 s each (10 s on a
    # loaded machine late in a run): in this teardown, and in the tuner's
    # gc.collect() of every trial. Reference counting still frees them.
    gc.freeze()
