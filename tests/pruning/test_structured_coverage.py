"""Channel pruning through every layer pattern of tests/patterns.py.

Each pattern is pruned at 50%: gradually (ChannelMask) and in one shot; the
surgered model must compute what the masked model computes (1e-5), be
physically smaller, and export to a TFLite file whose interpreter agrees
with Keras.
"""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tests import patterns
from tfopt import export
from tfopt import pruning
from tfopt.pruning import channel_graph
from tfopt.pruning import importance
from tfopt.pruning.channel_graph import ChannelGraph
from tfopt.pruning.structured import ChannelMaskUpdater
from tfopt.pruning.structured import keep_indices

L = keras.layers
COVERED = ["ops_nodes", "nested", "squeeze_excite", "preactivation_bn", "transpose_conv",
           "transformer", "convnext_block"]


def _randomize(model, seed=0):
    """Random BN statistics and LayerScale gammas (fresh ones are ~identity / ~0)."""
    rng = np.random.default_rng(seed)
    layers = list(model.layers)
    for layer in list(layers):
        if isinstance(layer, keras.Model):
            layers += layer.layers
    for layer in layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([
                rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.2, w.shape)
                for i, w in enumerate(layer.get_weights())])
        elif type(layer).__name__ == "LayerScale":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    return model


def _build(name):
    keras.utils.set_random_seed(0)
    return _randomize(patterns.PATTERNS[name][0]())


def _gradual_masked(model, ratio):
    wrapped = pruning.prune_channels_gradually(model, pruning.ConstantSparsity(ratio, 0, frequency=1))
    ChannelMaskUpdater(wrapped).update(ratio)
    return wrapped


def _mask_heads(model, removed):
    """Zeroes the value projections of removed heads: their output is exactly 0."""
    for layer in model.layers:
        if isinstance(layer, L.MultiHeadAttention) and layer.name in removed:
            value = layer._value_dense
            kernel, bias = value.kernel.numpy(), value.bias.numpy()
            kernel[:, removed[layer.name]] = 0.0
            bias[removed[layer.name]] = 0.0
            value.kernel.assign(kernel)
            value.bias.assign(bias)
    return model


def _removed_heads(model, ratio):
    graph = ChannelGraph(model)
    removed = {}
    for group in graph.prunable_groups():
        if group.kind == "heads":
            scores = importance.head_norms(graph.functional.get_layer(group.name))
            kept = keep_indices(scores, ratio, group)
            removed[group.name] = np.setdiff1d(np.arange(group.size), kept)
    return removed


def _tflite_outputs(model, x, path):
    export.to_tflite(model, str(path), batch_size=1)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for row in x:
        interpreter.set_tensor(inp["index"], row[None].astype(inp["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(results)


@pytest.mark.parametrize("name", COVERED)
def test_pattern_prunes_at_half_and_surgery_is_exact(name, tmp_path):
    model = _build(name)
    x = patterns.sample_inputs(name, 8)
    reference = model.predict(x, verbose=0)
    # Gradual path: masks in fit, then surgery.
    masked = _gradual_masked(model, 0.5)
    stripped = pruning.strip_pruning(masked)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    # One-shot path: the same channels (same L1 scores), plus whole attention heads.
    one_shot = pruning.prune_channels(model, 0.5)
    removed = _removed_heads(model, 0.5)
    expected = _mask_heads(masked, removed).predict(x, verbose=0)
    np.testing.assert_allclose(one_shot.predict(x, verbose=0), expected, atol=1e-5)
    # Physically smaller, and really different from the unpruned model.
    assert stripped.count_params() < model.count_params()
    assert one_shot.count_params() <= stripped.count_params()
    assert np.abs(one_shot.predict(x, verbose=0) - reference).max() > 1e-3
    assert not any(isinstance(l, keras.Model) for l in one_shot.layers)  # nested models come back flat
    # Every prunable group lost half its channels (heads included).
    graph = ChannelGraph(model)
    small = {l.name: l for l in one_shot.layers}
    for group in graph.prunable_groups():
        _, rule = channel_graph.rule_for(small[group.name])
        width = small[group.name].get_config()[rule.size_key]
        assert width == group.size - int(np.floor(0.5 * group.size + 0.5)), group.name
    # The surgered model runs in the LiteRT interpreter and agrees with Keras.
    got = _tflite_outputs(one_shot, x[:4], tmp_path / f"{name}.tflite")
    np.testing.assert_allclose(got, one_shot.predict(x[:4], verbose=0), atol=1e-4)


def _groups(model):
    return {row["layer"]: row for row in pruning.prunable_layers(model)}


def test_ops_nodes_scalars_pass_and_tensor_ops_couple():
    groups = _groups(patterns.ops_nodes())
    prunable = [g for g in groups.values() if g["blocked"] is None]
    # `x + 3`, `* (1/6)`, the hard-swish product and the spatial mean pass; the
    # ops add couples the two convs; the gate multiply joins the same group.
    assert len(prunable) == 1 and len(prunable[0]["producers"]) == 2


def test_squeeze_excite_couples_gate_with_block_and_bottleneck_is_prunable():
    model = patterns.squeeze_excite()
    graph = ChannelGraph(model)
    convs = [l.name for l in model.layers if isinstance(l, L.Conv2D)]
    block = graph.group_of_producer(convs[0])
    assert sorted(block.producers) == sorted([convs[0], convs[2]])  # stem conv + SE expand conv
    inner = graph.group_of_producer(convs[1])
    assert inner.blocked is None and inner.producers == [convs[1]]


def test_convnext_prunes_mlp_hidden_units_but_not_the_normalized_stream():
    model = patterns.convnext_block()
    graph = ChannelGraph(model)
    dense = [l for l in model.layers if isinstance(l, L.Dense)]
    assert graph.group_of_producer(dense[0].name).blocked is None  # the 4x expansion
    stem = graph.group_of_producer(model.layers[1].name)
    assert "LayerNormalization" in stem.blocked
    small = pruning.prune_channels(model, 0.5)
    widths = [l.units for l in small.layers if isinstance(l, L.Dense)]
    assert widths == [32, 16, 10]
    scale = [l for l in small.layers if type(l).__name__ == "LayerScale"][0]
    assert scale.get_weights()[0].shape == (16,)


def test_transformer_heads_are_one_group_scored_by_their_slices():
    model = _build("transformer")
    mha = [l for l in model.layers if isinstance(l, L.MultiHeadAttention)][0]
    group = ChannelGraph(model).group_of_producer(mha.name)
    assert group.kind == "heads" and group.size == 2 and group.blocked is None
    # L1 of a head = its Q, K, V kernel/bias slices + its output-kernel slice.
    w = {v.path.split("/")[-2] + "/" + v.path.split("/")[-1]: v.numpy() for v in mha.weights}
    expected = np.zeros(2)
    for h in range(2):
        for part in ("query", "key", "value"):
            expected[h] += np.abs(w[f"{part}/kernel"][:, h]).sum() + np.abs(w[f"{part}/bias"][h]).sum()
        expected[h] += np.abs(w["attention_output/kernel"][h]).sum()
    np.testing.assert_allclose(importance.head_norms(mha), expected, rtol=1e-6)
    small = pruning.prune_channels(model, {mha.name: 0.5})
    new = [l for l in small.layers if isinstance(l, L.MultiHeadAttention)][0]
    assert new.num_heads == 1 and new.key_dim == mha.key_dim


def test_heads_refuse_data_criteria_and_gradual_naming_clearly():
    model = patterns.transformer()
    mha = [l.name for l in model.layers if isinstance(l, L.MultiHeadAttention)][0]
    x = patterns.sample_inputs("transformer", 8)
    with pytest.raises(ValueError, match=f"{mha}.*'taylor'"):
        pruning.prune_channels(model, {mha: 0.5}, criterion="mean_activation", data=x)
    with pytest.raises(ValueError, match="one shot only"):
        pruning.prune_channels_gradually(model, pruning.ConstantSparsity(0.5, 0), layers=[mha])


def test_taylor_removes_a_dead_head():
    model = _build("transformer")
    mha = [l for l in model.layers if isinstance(l, L.MultiHeadAttention)][0]
    x, y = patterns.sample_task("transformer", 32)
    _mask_heads(model, {mha.name: np.array([1])})  # head 1 contributes nothing
    graph = ChannelGraph(model)
    root = graph.group_of_producer(mha.name).id
    scores = importance.group_importance(graph, "taylor", (x, y), roots=[root])[root]
    assert scores[1] == 0.0 and scores[0] > 0.0
    small = pruning.prune_channels(model, {mha.name: 0.5}, criterion="taylor", data=(x, y))
    np.testing.assert_allclose(small.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-5)


def test_nested_model_is_pruned_by_inner_layer_names_and_comes_back_flat():
    model = _build("nested")
    inner = model.get_layer("stem").layers[0].name
    small = pruning.prune_channels(model, {inner: 0.5})
    assert small.get_layer(inner).filters == 4
    assert not any(isinstance(l, keras.Model) for l in small.layers)


def test_transpose_conv_kernel_axes():
    model = _build("transpose_conv")
    up = [l for l in model.layers if isinstance(l, L.Conv2DTranspose)][0]
    small = pruning.prune_channels(model, {up.name: 0.5})
    kernel = small.get_layer(up.name).kernel
    assert tuple(kernel.shape) == (3, 3, 8, 16)  # (kh, kw, out, in): out halved
    # Its L1 scores come from axis -2 (the output channels).
    graph = ChannelGraph(model)
    scores = importance.group_importance(graph, "l1", roots=[graph.group_of_producer(up.name).id])
    expected = np.abs(up.kernel.numpy()).sum(axis=(0, 1, 3))
    np.testing.assert_allclose(list(scores.values())[0], expected, rtol=1e-6)


def test_describe_table_covers_every_entry():
    rows = channel_graph.describe_table()
    assert all(len(r) == 3 and all(isinstance(c, str) and c for c in r) for r in rows)
    text = " ".join(r[0] for r in rows)
    for name in ("Conv2DTranspose", "MultiHeadAttention", "LayerNormalization", "LayerScale",
                 "keras.ops: add, subtract", "hard_sigmoid", "keras.ops: reshape", "UpSampling2D"):
        assert name in text
    assert all(r[2] == "no structured pruning" for r in rows)
    flows = {r[1].split(":")[0] for r in rows}
    assert {"produces", "follows", "couples", "passes", "blocks", "heads"} <= flows


def test_grouped_conv_with_one_group_per_channel_follows_like_depthwise():
    # ConvNeXt (Keras applications) writes its depthwise conv as Conv2D(groups=C).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = L.Conv2D(8, 3, padding="same", groups=8, name="grouped_dw")(x)
    x = L.Conv2D(4, 3, padding="same", groups=2, name="grouped")(x)  # not depthwise: blocks
    model = keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    groups = _groups(model)
    assert groups["stem"]["blocked"] is not None and "grouped convolution" in groups["stem"]["blocked"]
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = L.Conv2D(8, 3, padding="same", groups=8, name="grouped_dw")(x)
    model = keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling2D()(L.Conv2D(6, 1)(x))))
    x_in = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
    masked = _gradual_masked(model, 0.5)
    small = pruning.strip_pruning(masked)
    np.testing.assert_allclose(small.predict(x_in, verbose=0), masked.predict(x_in, verbose=0), atol=1e-5)
    dw = small.get_layer("grouped_dw")
    assert dw.filters == dw.groups == 4 and tuple(dw.kernel.shape) == (3, 3, 1, 4)


@pytest.mark.parametrize("criterion", ["l2", "taylor"])
def test_heads_without_bias_and_with_own_value_dim(criterion):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 8))
    context = L.Dense(8, name="context")(inputs)  # key/value from another tensor
    y = L.MultiHeadAttention(4, key_dim=3, value_dim=5, use_bias=False, name="mha")(inputs, context)
    model = keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling1D()(y)))
    x = np.random.default_rng(0).normal(size=(16, 6, 8)).astype("float32")
    y_true = np.arange(16) % 10
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    groups = _groups(model)
    assert "mha" in groups["context"]["blocked"]  # its channels feed the attention
    small = pruning.prune_channels(model, {"mha": 0.5}, criterion=criterion, data=(x, y_true))
    layer = small.get_layer("mha")
    assert layer.num_heads == 2 and tuple(layer._output_dense.kernel.shape) == (2, 5, 8)
    graph = ChannelGraph(model)
    root = graph.group_of_producer("mha").id
    scores = importance.group_importance(graph, criterion, (x, y_true), roots=[root])[root]
    removed = np.setdiff1d(np.arange(4), keep_indices(scores, 0.5, graph.group(root)))
    value = model.get_layer("mha")._value_dense
    kernel = value.kernel.numpy()
    kernel[:, removed] = 0.0
    value.kernel.assign(kernel)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_pruned_transformer_saves_and_loads(tmp_path):
    model = _build("transformer")
    rows = pruning.prunable_layers(model)
    assert [r["kind"] for r in rows if r["blocked"] is None] == ["heads", "channels"]
    small = pruning.prune_channels(model, 0.5)
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    x = patterns.sample_inputs("transformer", 4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-6)
    assert loaded.count_params() == small.count_params()
