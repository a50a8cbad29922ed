"""Channel pruning through depth multipliers, GroupNormalization, Attention and ops.split.

Each model is tiny and pruned at 50%: gradually (ChannelMask, then strip)
and in one shot. The surgered model must compute what the masked model
computes (1e-5), survive `.keras` save/load, and export to a float TFLite
file whose LiteRT interpreter agrees with Keras.
"""

import keras
import numpy as np
import pytest

from tfopt import export
from tfopt import pruning
from tfopt.pruning.channel_gradual import ChannelMaskUpdater
from tfopt.pruning.channel_graph import Group
from tfopt.pruning.channel_oneshot import keep_indices

L = keras.layers


def _groups(model):
    return {row["layer"]: row for row in pruning.channel_groups(model)}


def _assert_refused(inputs, features, layer, match):
    """A classifier on `features`: pruning `layer` raises a ValueError matching `match`."""
    model = keras.Model(inputs, L.Dense(4)(features))
    with pytest.raises(ValueError, match=match):
        pruning.prune_channels(model, {layer: 0.5})


def _check_exact(model, x, tmp_path):
    """Masked == stripped == one-shot (1e-5); save/load; LiteRT agrees. Returns one-shot."""
    reference = model.predict(x, verbose=0)
    masked = pruning.prune_channels_gradually(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
    ChannelMaskUpdater(masked).update(0.5)
    expected = masked.predict(x, verbose=0)
    stripped = pruning.strip_pruning(masked)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), expected, atol=1e-5)
    small = pruning.prune_channels(model, 0.5)  # the same L1 scores: the same channels
    got = small.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - reference).max() > 1e-3  # channels really went
    assert small.count_params() < model.count_params()
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), got, atol=1e-6)
    exported = export.to_tflite(small, str(tmp_path / "small.tflite"), batch_size=1)
    report = export.verify(exported, got[:2], x[:2])  # runs the file in the LiteRT interpreter
    assert report["n"] == 2 and report["max_abs_diff"] < 1e-4
    return small


def test_depth_multiplier_prunes_each_input_channel_with_its_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2d")(x)
    x = L.ReLU()(L.BatchNormalization(name="bn_dw")(x))
    x = L.SeparableConv2D(8, 3, depth_multiplier=2, name="sep2d")(x)
    x = L.Reshape((16, 8))(x)
    x = L.DepthwiseConv1D(3, depth_multiplier=3, name="dw1d")(x)
    x = L.SeparableConv1D(6, 3, depth_multiplier=2, name="sep1d")(x)
    x = L.DepthwiseConv1D(3, depth_multiplier=2, name="dw1d_b")(x)
    model = keras.Model(inputs, L.Dense(4)(L.Flatten()(x)))  # Flatten repeats the m-blocks
    for bn in (model.get_layer("bn"), model.get_layer("bn_dw")):
        bn.set_weights([np.random.default_rng(1).uniform(0.5, 1.5, w.shape) for w in bn.get_weights()])
    groups = _groups(model)
    assert all(groups[n]["blocked"] is None and groups[n]["unit"] == 1 for n in ("stem", "sep2d", "sep1d"))
    x_in = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    small = _check_exact(model, x_in, tmp_path)
    # stem keeps 4 channels: the depthwise keeps 4 inputs x 2 outputs, the
    # separable conv reads 8 positions and its pointwise 8 x 2 rows.
    assert tuple(small.get_layer("dw2d").kernel.shape) == (3, 3, 4, 2)
    assert tuple(small.get_layer("dw2d").bias.shape) == (8,)
    sep = small.get_layer("sep2d")
    assert tuple(sep.depthwise_kernel.shape) == (3, 3, 8, 2)
    assert tuple(sep.pointwise_kernel.shape) == (1, 1, 16, 4)
    assert tuple(small.get_layer("dw1d").kernel.shape) == (3, 4, 3)
    assert tuple(small.get_layer("sep1d").pointwise_kernel.shape) == (1, 24, 3)
    assert small.layers[-1].kernel.shape[0] == 10 * 3 * 2  # Flatten: 10 steps x 3 channels x m=2


def test_group_norm_prunes_whole_groups(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(8, 1, name="b")(inputs)
    x = L.GroupNormalization(groups=4, name="gn1")(L.Concatenate()([a, b]))  # 4 channels a group
    x = L.Conv2D(8, 3, name="c")(L.Activation("relu")(x))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)  # 16 positions, c's channel = 2
    x = L.GroupNormalization(groups=4, name="gn2")(x)  # 4 positions = 2 of c's channels a group
    model = keras.Model(inputs, L.Dense(4)(L.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(1)
    for name in ("gn1", "gn2"):
        layer = model.get_layer(name)
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    groups = _groups(model)
    assert (groups["a"]["unit"], groups["b"]["unit"], groups["c"]["unit"]) == (4, 4, 2)
    x_in = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    small = _check_exact(model, x_in, tmp_path)
    assert small.get_layer("gn1").groups == 2 and small.get_layer("gn2").groups == 2
    assert small.get_layer("a").filters == small.get_layer("b").filters == 4
    # The sensitivity scan counts blocks too: 0.75 of a's 2 groups removes both, so it is skipped.
    y_in = np.arange(4) % 4
    assert pruning.sensitivity_analysis(model, x_in, y_in, ratios=(0.75,), layers=["a"]) == []
    assert [r["kept"] for r in pruning.sensitivity_analysis(model, x_in, y_in, ratios=(0.5,),
                                                             layers=["c"])] == [4]
    # Whole groups: a's kept channels are one block of 4 adjacent ones.
    kept = keep_indices(np.arange(8.0), 0.5, Group(0, "a", ["a"], 8, unit=4))
    assert kept.tolist() == [4, 5, 6, 7]
    # A normalization group straddling two layers' channels refuses with the reason.
    inputs = keras.Input((8, 8, 3))
    x = L.Concatenate()([L.Conv2D(6, 1, name="six")(inputs), L.Conv2D(2, 1, name="two")(inputs)])
    _assert_refused(inputs, L.GlobalAveragePooling2D()(L.GroupNormalization(2)(x)), "six", "'six'.*straddle")


def test_attention_couples_query_and_key_and_output_follows_value(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 4))
    q, k, v = (L.Dense(n, name=name)(inputs) for name, n in (("q", 8), ("k", 8), ("v", 6)))
    a1 = L.Attention(use_scale=True, name="dot")([q, v, k])
    q2, v2 = L.Dense(6, name="q2")(inputs), L.Dense(6, name="v2")(inputs)
    a2 = L.AdditiveAttention(name="additive")([q2, v2])  # no key: q2, v2 coupled; scale per channel
    a3 = L.Attention(score_mode="concat", use_scale=True, name="concat")([a1, a2])
    model = keras.Model(inputs, L.Dense(4)(L.GlobalAveragePooling1D()(a3)))
    groups = {tuple(sorted(r["producers"])): r for r in pruning.channel_groups(model) if r["blocked"] is None}
    assert set(groups) == {("k", "q"), ("q2", "v", "v2")}
    x_in = np.random.default_rng(0).normal(size=(4, 6, 4)).astype("float32")
    small = _check_exact(model, x_in, tmp_path)
    assert small.get_layer("q").units == small.get_layer("k").units == 4
    assert small.get_layer("v").units == small.get_layer("v2").units == 3
    assert tuple(small.get_layer("additive").scale.shape) == (3,)
    # Query coupled with a model input (never pruned): refused with the reason.
    inputs = keras.Input((6, 8))
    out = L.Attention()([L.Dense(8, name="query")(inputs), inputs])
    _assert_refused(inputs, L.GlobalAveragePooling1D()(out), "query", "'query'.*query with key")


def test_split_into_equal_sections_couples_channel_i_of_each_section(tmp_path):
    keras.utils.set_random_seed(0)
    ops = keras.ops
    inputs = keras.Input((8, 8, 3))
    gate = L.Conv2D(8, 3, padding="same", name="gate")(inputs)
    a, b = ops.split(gate, 2, axis=-1)  # one layer's channels span both sections
    x = ops.concatenate([ops.relu(a), ops.sigmoid(b) * a], axis=-1)
    c1, c2 = L.Conv2D(8, 1, name="c1")(inputs), L.Conv2D(8, 1, name="c2")(inputs)
    parts = ops.split(L.Concatenate()([c1, L.BatchNormalization(name="bn")(c2)]), 4, axis=-1)
    y = L.Conv2D(6, 3, padding="same", name="after")(parts[0] * ops.sigmoid(parts[1]) + parts[2] - parts[3])
    side = L.Conv2D(5, 1, name="side")(c1)  # c1 also read whole, outside the split
    rows, cols = ops.split(L.Conv2D(4, 1, name="spatial")(inputs), 2, axis=1)  # another axis: passes
    x = ops.concatenate([x, y, side, ops.concatenate([cols, rows], axis=1)], axis=-1)
    model = keras.Model(inputs, L.Dense(4)(ops.mean(x, axis=(1, 2))))
    groups = {tuple(sorted(r["producers"])): r for r in pruning.channel_groups(model)}
    assert groups[("gate",)]["channels"] == 4 and groups[("c1", "c2")]["channels"] == 4
    assert groups[("spatial",)]["blocked"] is None
    x_in = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    small = _check_exact(model, x_in, tmp_path)
    # Half of each section: 2 of 4 per section, sections stay equal.
    assert small.get_layer("gate").filters == 4
    assert small.get_layer("c1").filters == small.get_layer("c2").filters == 4
    assert tuple(small.get_layer("after").kernel.shape) == (3, 3, 2, 3)
    # Explicit split indices on the channel axis: refused with the reason.
    inputs = keras.Input((8,))
    first, rest = ops.split(L.Dense(8, name="d")(inputs), [3], axis=-1)
    _assert_refused(inputs, ops.concatenate([first * 2.0, rest], axis=-1), "d", "'d'.*explicit indices")


def test_split_after_group_norm_and_multiplier_with_data_criterion_and_fit(tmp_path):
    # GroupNorm (unit 2) then a split (tiled conv) then a depthwise multiplier:
    # a data criterion and gradual pruning in fit see the same whole units.
    keras.utils.set_random_seed(0)
    ops = keras.ops
    inputs = keras.Input((6, 6, 3))
    x = L.GroupNormalization(groups=4, name="gn")(L.Conv2D(8, 3, padding="same", name="conv")(inputs))
    a, b = ops.split(x, 2, axis=-1)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(ops.relu(a) * ops.sigmoid(b))
    model = keras.Model(inputs, L.Dense(4)(L.Conv2D(6, 1, name="head")(x)[:, 0, 0]))
    groups = _groups(model)
    assert (groups["conv"]["channels"], groups["conv"]["unit"]) == (4, 2)  # 4 per section, GN pairs
    x_in = np.random.default_rng(0).normal(size=(32, 6, 6, 3)).astype("float32")
    y_in = np.arange(32) % 4
    small = pruning.prune_channels(model, {"conv": 0.5}, criterion="mean_activation", data=x_in)
    assert small.get_layer("conv").filters == 4 and small.get_layer("gn").groups == 2
    assert tuple(small.get_layer("dw").kernel.shape) == (3, 3, 2, 2)
    wrapped = pruning.prune_channels_gradually(model, pruning.ConstantSparsity(0.5, 0, frequency=1),
                                               layers=["conv"])
    wrapped.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(x_in, y_in, batch_size=16, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    path = str(tmp_path / "wrapped.keras")
    wrapped.save(path)
    stripped = pruning.strip_pruning(keras.models.load_model(path))
    np.testing.assert_allclose(stripped.predict(x_in, verbose=0), wrapped.predict(x_in, verbose=0), atol=1e-5)
    assert stripped.get_layer("gn").groups == 2
