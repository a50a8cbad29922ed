"""`compress` flags a file that disagrees with its Keras model (no silent wrong artifact)."""

import warnings

import keras
import numpy as np
import pytest

from tfopt import compress


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10)], name="probe")


def test_ptq_file_calibrated_on_unrepresentative_data_is_flagged(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 256)
    x_test = rng.uniform(-1, 1, (256, 16)).astype("float32")
    # Calibration inputs 100x smaller than the held-out ones: every held-out
    # input saturates the int8 input range, so the file answers almost one class.
    tiny = (x_test / 100).astype("float32")
    with pytest.warns(UserWarning, match=r"agrees with its Keras model 'probe' on only .*calibration"):
        bad = compress.compress(_model(), (tiny, y, x_test, y), "ptq-int8", str(tmp_path / "bad.tflite"))
    assert bad.report["top1_agreement"] < 0.95
    assert (tmp_path / "bad.tflite").exists()  # written, and flagged

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=r"(?!compress:)")  # only ours become errors
        good = compress.compress(_model(), (x_test, y, x_test, y), "ptq-int8",
                                 str(tmp_path / "good.tflite"))
    assert good.report["top1_agreement"] >= 0.95


def test_a_one_unit_output_is_judged_by_sign_agreement(tmp_path):
    # argmax of one logit always "agrees": the sign decides a binary classifier.
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)], name="binary")
    x_test = rng.uniform(-1, 1, (256, 16)).astype("float32")
    y = rng.integers(0, 2, 256)
    with pytest.warns(UserWarning, match=r"'binary' on only"):
        bad = compress.compress(model, (x_test / 100, y, x_test, y), "ptq-int8",
                                str(tmp_path / "bad.tflite"))
    assert bad.report["top1_agreement"] == 1.0  # why argmax cannot be the test here
