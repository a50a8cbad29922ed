"""tfopt.pruning.prunable_weights / pattern_support / count_prunable agree with
what prune_low_magnitude wraps."""

import keras
import pytest

from tfopt import pruning


def _nested():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="inner_dense")],
                             name="inner")
    inputs = keras.Input((6,))
    x = inner(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(6, name="odd")(x)        # kernel (8, 6): 2:4 fits (8 % 4 == 0)
    x = keras.layers.Dense(4, name="head")(x)       # kernel (6, 4): 2:4 does not
    return keras.Model(inputs, x, name="outer")


def test_prunable_weights_enter_nested_models_and_match_the_wrapper():
    model = _nested()
    found = pruning.prunable_weights(model)
    assert [layer.name for layer, _ in found] == ["inner_dense", "odd", "head"]
    assert [tuple(w.shape) for _, ws in found for w in ws] == [(6, 8), (8, 6), (6, 4)]
    assert pruning.count_prunable(model) == 48 + 48 + 24
    wrapped = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.5, 0))
    wrapped_names = sorted(w.layer.name for w in pruning.api.pruning_wrappers(wrapped))
    assert wrapped_names == sorted(layer.name for layer, _ in found)


def test_pattern_support_gives_fits_and_reasons():
    model = _nested()
    by_name = {fit.name: fit for fit in pruning.pattern_support(model, sparsity_m_by_n=(2, 4))}
    assert by_name["odd"].fits and by_name["odd"].reason is None
    assert not by_name["head"].fits and "not divisible by 4" in by_name["head"].reason
    assert not by_name["bn"].fits and "passes through" in by_name["bn"].reason
    assert not by_name["inner_dense"].fits  # (6, 8): axis -2 has 6
    fits = [f.name for f in pruning.pattern_support(model, sparsity_m_by_n=(2, 4)) if f.fits]
    # What pattern_support says fits, prune_low_magnitude accepts.
    pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.5, 0),
                                sparsity_m_by_n=(2, 4), layers=fits)
    blocks = {f.name: f for f in pruning.pattern_support(model, block_size=(4, 4))}
    assert [n for n, f in blocks.items() if f.fits] == []
    assert "does not tile" in blocks["head"].reason
    plain = [f.name for f in pruning.pattern_support(model) if f.fits]
    assert plain == ["inner_dense", "odd", "head"]


def test_pattern_support_rejects_bad_input():
    with pytest.raises(TypeError, match="keras.Model"):
        pruning.pattern_support(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="block_size"):
        pruning.pattern_support(_nested(), block_size=(0, 4))
    with pytest.raises(ValueError, match="sparsity_m_by_n"):
        pruning.pattern_support(_nested(), sparsity_m_by_n=(4, 2))
