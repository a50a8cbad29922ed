import warnings

import keras
import numpy as np
import pytest

from tfopt.pruning import ConstantSparsity
from tfopt.pruning import PolynomialDecay

STEPS = list(range(0, 260, 1)) + [1000, 5000]


def _values(schedule, steps):
    pairs = [schedule(step) for step in steps]
    return (
        np.array([bool(p[0]) for p in pairs]),
        np.array([float(p[1]) for p in pairs], dtype=np.float32),
    )


@pytest.mark.parametrize(
    "args",
    [
        dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=100, frequency=1),
        dict(initial_sparsity=0.1, final_sparsity=0.9, begin_step=13, end_step=211, power=2, frequency=7),
        dict(initial_sparsity=0.5, final_sparsity=0.5, begin_step=5, end_step=50, power=1, frequency=10),
    ],
)
def test_polynomial_decay_equals_tfmot(args):
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    ours = PolynomialDecay(**args)
    theirs = tfmot.sparsity.keras.PolynomialDecay(**args)
    our_prune, our_sparsity = _values(ours, STEPS)
    their_prune, their_sparsity = _values(theirs, STEPS)
    np.testing.assert_array_equal(our_prune, their_prune)
    np.testing.assert_allclose(our_sparsity, their_sparsity, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "args",
    [
        dict(target_sparsity=0.5, begin_step=0),
        dict(target_sparsity=0.75, begin_step=20, end_step=200, frequency=9),
    ],
)
def test_constant_sparsity_equals_tfmot(args):
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    ours = ConstantSparsity(**args)
    theirs = tfmot.sparsity.keras.ConstantSparsity(**args)
    our_prune, our_sparsity = _values(ours, STEPS)
    their_prune, their_sparsity = _values(theirs, STEPS)
    np.testing.assert_array_equal(our_prune, their_prune)
    np.testing.assert_allclose(our_sparsity, their_sparsity, atol=1e-7)


@pytest.mark.parametrize(
    "schedule",
    [
        ConstantSparsity(0.3, 4, end_step=40, frequency=3),
        PolynomialDecay(0.2, 0.7, 2, 90, power=2, frequency=4),
    ],
)
def test_schedule_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    np.testing.assert_array_equal(_values(restored, STEPS)[1], _values(schedule, STEPS)[1])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ConstantSparsity(1.0, 0), r"target_sparsity=1\.0 is outside \[0, 1\)"),
        (lambda: ConstantSparsity(-0.1, 0), r"target_sparsity=-0\.1"),
        (lambda: PolynomialDecay(0.0, 1.2, 0, 10, frequency=1), r"final_sparsity=1\.2"),
        (lambda: PolynomialDecay(0.0, 0.5, 10, 5, frequency=1), r"end_step=5 must be >= begin_step=10"),
        (lambda: PolynomialDecay(0.0, 0.5, 10, 10), r"end_step=10 must be > begin_step=10"),
        (lambda: ConstantSparsity(0.5, 0, frequency=0), r"frequency=0 must be > 0"),
        (lambda: PolynomialDecay(0.0, 0.5, 0, 100, frequency=-5), r"frequency=-5"),
        (lambda: ConstantSparsity(0.5, -1), r"begin_step=-1"),
        (lambda: PolynomialDecay(0.0, 0.5, 0, 100, power=0, frequency=1), r"power=0"),
    ],
)
def test_invalid_schedules_raise_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="begin_step must be an int"):
        ConstantSparsity(0.5, 1.5)
    with pytest.raises(TypeError, match="target_sparsity must be a float"):
        ConstantSparsity("0.5", 0)


def test_warns_when_ramp_has_few_mask_updates():
    with pytest.warns(UserWarning, match=r"only 2 mask update\(s\)"):
        PolynomialDecay(0.0, 0.8, 0, 150, frequency=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PolynomialDecay(0.0, 0.8, 0, 150, frequency=1)
