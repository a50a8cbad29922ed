"""Structured pruning: surgery equivalence, criteria, gradual, I/O, errors."""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfopt import export
from tfopt import pruning
from tfopt import quantization
from tfopt.models import compile_classifier
from tfopt.pruning import importance
from tfopt.pruning.channel_graph import ChannelGraph
from tfopt.pruning.structured import ChannelMaskUpdater

from .helpers import compile_model
from .helpers import digits
from .helpers import random_batch

L = keras.layers


# -- models ------------------------------------------------------------------------


def _randomize_bn(model, seed=0):
    # Fresh BN layers are identities up to eps; random statistics make the
    # equivalence tests see the slicing of every BN weight.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([
                rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.2, w.shape)
                for i, w in enumerate(layer.get_weights())])
    return model


def sequential_cnn():
    return _randomize_bn(keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, padding="same"),
        L.BatchNormalization(),
        L.ReLU(),
        L.MaxPooling2D(2),
        L.Conv2D(6, 3, activation="relu"),
        L.Flatten(),  # (2, 2, 6): the interleaved Flatten index mapping
        L.Dropout(0.2),
        L.Dense(16, activation="relu"),
        L.Dense(10),
    ], name="seq_cnn"))


def residual_model():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    for _ in range(2):  # inverted residual blocks joined by Add
        y = L.Conv2D(16, 1)(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU(6.0)(y)
        y = L.ZeroPadding2D(1)(y)
        y = L.DepthwiseConv2D(3)(y)
        y = L.BatchNormalization()(y)
        y = L.ReLU(6.0)(y)
        y = L.Conv2D(8, 1)(y)
        y = L.BatchNormalization()(y)
        x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    return _randomize_bn(keras.Model(inputs, L.Dense(10)(x), name="residual"))


def concat_model():
    inputs = keras.Input((8, 8, 1))
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="branch_a")(inputs)
    b = L.Conv2D(4, 1, name="branch_b")(inputs)
    x = L.Concatenate()([a, inputs, b])  # a fixed segment between two groups
    x = L.BatchNormalization()(x)
    x = L.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    x = L.Flatten()(L.AveragePooling2D(4)(x))
    x = L.Dense(12, activation="relu", name="hidden")(x)
    return _randomize_bn(keras.Model(inputs, L.Dense(10, name="logits")(x), name="concat"))


def mobilenet_v2():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
        classifier_activation=None)
    return _randomize_bn(model)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(4, 3)
        self.head = L.Dense(10)

    def call(self, x):
        return self.head(L.Flatten()(self.conv(x)))


def _masked(model, ratio, criterion="l1"):
    """The gradual model with its masks set once to `ratio`."""
    wrapped = pruning.prune_channels_gradually(
        model, pruning.ConstantSparsity(ratio, 0, frequency=1), criterion=criterion)
    ChannelMaskUpdater(wrapped).update(ratio)
    return wrapped


def _predict(model, x):
    return model.predict(x, verbose=0)


# -- surgery equivalence ------------------------------------------------------


@pytest.mark.parametrize("build", [sequential_cnn, residual_model, concat_model, mobilenet_v2])
def test_surgered_model_equals_masked_model(build):
    model = build()
    params = model.count_params()
    x = random_batch(model, n=8)
    masked = _masked(model, 0.5)
    small = pruning.strip_pruning(masked)
    one_shot = pruning.prune_channels(model, 0.5)
    assert not pruning.structured.channel_masks(small)
    np.testing.assert_allclose(_predict(small, x), _predict(masked, x), atol=1e-5)
    # One-shot and gradual pick the same channels (same L1 scores).
    np.testing.assert_allclose(_predict(one_shot, x), _predict(small, x), atol=1e-5)
    # The masks really removed something: smaller model, different outputs.
    assert small.count_params() < 0.6 * model.count_params()
    assert np.abs(_predict(model, x) - _predict(small, x)).max() > 1e-3
    # The original is untouched.
    assert model.count_params() == params
    assert not any(isinstance(l, pruning.ChannelMask) for l in model.layers)


def test_sequential_stays_sequential_and_layers_shrink():
    model = sequential_cnn()
    small = pruning.prune_channels(model, 0.5)
    assert isinstance(small, keras.Sequential)
    widths = [l.output.shape[-1] for l in small.layers if isinstance(l, (L.Conv2D, L.Dense))]
    assert widths == [4, 3, 8, 10]  # the classifier keeps its 10 outputs
    assert small.layers[1].moving_mean.shape == (4,)  # BatchNormalization sliced
    assert small.layers[7].kernel.shape == (2 * 2 * 3, 8)  # rows after Flatten


def test_residual_add_is_one_group_and_depthwise_follows():
    model = residual_model()
    rows = {r["layer"]: r for r in pruning.prunable_layers(model)}
    coupled = [r for r in rows.values() if len(r["producers"]) == 3]
    assert len(coupled) == 1  # stem conv + both block outputs share channels
    small = pruning.prune_channels(model, 0.5)
    depthwise = [l for l in small.layers if isinstance(l, L.DepthwiseConv2D)]
    assert [l.kernel.shape[2] for l in depthwise] == [8, 8]
    adds = [l for l in small.layers if isinstance(l, L.Add)]
    assert all(l.output.shape[-1] == 4 for l in adds)


def test_concatenate_offsets_and_fixed_segment():
    model = concat_model()
    small = pruning.prune_channels(model, {"branch_a": 0.5, "branch_b": 0.5})
    concat = [l for l in small.layers if isinstance(l, L.Concatenate)][0]
    assert concat.output.shape[-1] == 3 + 1 + 2
    x = random_batch(model, n=4)
    masked = pruning.prune_channels_gradually(
        model, pruning.ConstantSparsity(0.5, 0), layers=["branch_a", "branch_b"])
    ChannelMaskUpdater(masked).update(0.5)
    np.testing.assert_allclose(_predict(small, x), _predict(masked, x), atol=1e-5)


def test_mobilenet_v2_groups():
    model = mobilenet_v2()
    rows = pruning.prunable_layers(model)
    blocked = [r["layer"] for r in rows if r["blocked"]]
    assert blocked == ["predictions"]
    groups = {r["layer"]: r["producers"] for r in rows}
    assert groups["block_6_project"] == [f"block_{i}_project" for i in (6, 7, 8, 9)]
    assert "Conv_1" in groups and "block_5_expand" in groups


# -- criteria ----------------------------------------------------------------------------


def test_filter_norms_on_hand_made_kernel():
    kernel = np.array([[1.0, -3.0, 0.5], [-2.0, 0.0, 0.5]])
    np.testing.assert_allclose(importance.filter_norms(kernel, 1), [3.0, 3.0, 1.0])
    np.testing.assert_allclose(importance.filter_norms(kernel, 2), [np.sqrt(5), 3.0, np.sqrt(0.5)])
    conv = np.zeros((3, 3, 2, 2))
    conv[..., 0] = 1.0
    conv[0, 0, 0, 1] = -5.0
    np.testing.assert_allclose(importance.filter_norms(conv, 1), [18.0, 5.0])
    np.testing.assert_allclose(importance.filter_norms(conv, 2), [np.sqrt(18), 5.0])


def _mlp_with(kernel):
    model = keras.Sequential([keras.Input((2,)), L.Dense(3, use_bias=False, name="hidden"),
                              L.Dense(2, name="out")])
    model.get_layer("hidden").set_weights([np.asarray(kernel, "float32")])
    return model


def test_l1_and_l2_keep_different_units():
    # Unit 0 spreads its weight (L1 3.0, L2 2.12), unit 1 concentrates it
    # (L1 2.5, L2 2.5), unit 2 is weak: L1 keeps unit 0, L2 unit 1.
    model = _mlp_with([[1.5, 2.5, 0.0], [1.5, 0.0, 0.1]])
    out_kernel = model.get_layer("out").kernel.numpy()
    keep_l1 = pruning.prune_channels(model, {"hidden": 0.6}, criterion="l1")
    keep_l2 = pruning.prune_channels(model, {"hidden": 0.6}, criterion="l2")
    np.testing.assert_allclose(keep_l1.get_layer("hidden").kernel.numpy(), [[1.5], [1.5]])
    np.testing.assert_allclose(keep_l2.get_layer("hidden").kernel.numpy(), [[2.5], [0.0]])
    # The consumer keeps the matching input row.
    np.testing.assert_allclose(keep_l2.get_layer("out").kernel.numpy(), out_kernel[1:2])


def test_data_criteria_on_hand_made_activations():
    a = np.array([[[0.0, 2.0, -1.0]], [[0.0, 0.0, 3.0]]])  # (N=2, positions=1, C=3)
    g = np.array([[[5.0, 1.0, 1.0]], [[5.0, 1.0, 1.0]]])
    np.testing.assert_allclose(importance.taylor_importance(a, g), [0.0, 1.0, 2.0])
    np.testing.assert_allclose(importance.mean_activation_importance(a), [0.0, 1.0, 2.0])
    np.testing.assert_allclose(importance.apoz_importance(a), [0.0, 0.5, 1.0])
    # Taylor sums a*g over positions before the absolute value, per example.
    a2 = np.array([[[1.0], [1.0]]])
    g2 = np.array([[[1.0], [-1.0]]])
    np.testing.assert_allclose(importance.taylor_importance(a2, g2), [0.0])


def test_apoz_and_mean_activation_remove_dead_units():
    model = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="relu", name="hidden"),
                              L.Dense(3, name="out")])
    kernel = np.eye(4, dtype="float32")
    bias = np.array([0.0, -10.0, 0.0, 0.0], "float32")  # unit 1 never fires
    model.get_layer("hidden").set_weights([kernel * [1, 9, 1, 1], bias])
    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    for criterion in ("apoz", "mean_activation"):
        small = pruning.prune_channels(model, {"hidden": 0.25}, criterion=criterion, data=x)
        # L1 would keep unit 1 (its weight is the largest).
        np.testing.assert_allclose(small.get_layer("hidden").bias.numpy(), [0, 0, 0])
        np.testing.assert_allclose(_predict(small, x), _predict(model, x), atol=1e-5)
    l1 = pruning.prune_channels(model, {"hidden": 0.25}, criterion="l1")
    assert -10.0 in l1.get_layer("hidden").bias.numpy()


def test_taylor_matches_gradient_tape_computation():
    import tensorflow as tf

    model = sequential_cnn()
    x, y = digits(16)
    # The first conv's channels are consumed by the second conv.
    probe = keras.Model(model.inputs[0], [model.layers[4].input, model.outputs[0]])
    with tf.GradientTape() as tape:
        act, logits = probe(x, training=False)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    grad = tape.gradient(loss, act).numpy() * len(x)
    expected = importance.taylor_importance(act.numpy(), grad)
    graph = pruning.channel_graph.ChannelGraph(model)
    root = graph.group_of_producer(model.layers[0].name).id
    scores = importance.group_importance(graph, "taylor", (x, y), roots=[root], batch_size=16)
    np.testing.assert_allclose(scores[root], expected, rtol=1e-4, atol=1e-7)
    small = pruning.prune_channels(model, 0.5, criterion="taylor", data=(x, y))
    assert small.count_params() < model.count_params()


# -- sensitivity -----------------------------------------------------------------------


def test_sensitivity_table_ratios_and_plot(tmp_path):
    x, y = digits(256)
    model = compile_model(sequential_cnn())
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    table = pruning.sensitivity_analysis(model, x, y, ratios=(0.25, 0.5, 0.9))
    layers = [r["layer"] for r in table]
    assert set(layers) == {model.layers[0].name, model.layers[4].name, model.layers[7].name}
    for row in table:
        assert row["baseline"] - row["metric"] == pytest.approx(row["drop"])
        assert 0 < row["params"] < 1
    # Removing more of one layer never keeps more channels.
    first = [r for r in table if r["layer"] == model.layers[0].name]
    assert [r["kept"] for r in first] == [6, 4, 1]
    ratios = pruning.ratios_from_sensitivity(table, max_drop=1.0)
    assert ratios == {name: 0.9 for name in set(layers)}
    strict = pruning.ratios_from_sensitivity(table, max_drop=-1.0)
    assert strict == {}
    small = pruning.prune_channels(model, pruning.ratios_from_sensitivity(table, max_drop=0.05))
    assert small.count_params() <= model.count_params()
    png = pruning.plot_sensitivity(table, str(tmp_path / "sensitivity.png"))
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


# -- gradual pruning in fit ------------------------------------------------------------


def test_gradual_pruning_reaches_target_and_strips_equal():
    x, y = digits(256)
    model = residual_model()
    schedule = pruning.PolynomialDecay(0.0, 0.5, 0, 12, frequency=1)
    wrapped = compile_model(pruning.prune_channels_gradually(model, schedule))
    callback = pruning.UpdatePruningStep()
    history = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            history.append(ChannelMaskUpdater(wrapped).group_masks())

    wrapped.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback, Record()])
    # Pruned channels stay pruned while the ratio grows.
    for before, after in zip(history, history[1:]):
        for root in before:
            assert np.all(after[root] <= before[root])
    final = history[-1]
    graph = ChannelMaskUpdater(wrapped).graph
    for root, mask in final.items():
        size = graph.group(root).size
        assert mask.sum() == size - int(np.floor(0.5 * size + 0.5))
    small = pruning.strip_pruning(wrapped)
    xb = x[:16]
    np.testing.assert_allclose(_predict(small, xb), _predict(wrapped, xb), atol=1e-5)
    assert small.count_params() < 0.5 * model.count_params()


def test_gradual_pruning_without_callback_fails_clearly():
    x, y = digits(64)
    wrapped = compile_model(pruning.prune_channels_gradually(
        sequential_cnn(), pruning.ConstantSparsity(0.5, 0)))
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        wrapped.fit(x, y, epochs=1, verbose=0)


def test_gradual_model_saves_mid_training_and_resumes(tmp_path):
    x, y = digits(256)
    schedule = pruning.PolynomialDecay(0.0, 0.5, 0, 16, frequency=1)
    wrapped = compile_model(pruning.prune_channels_gradually(sequential_cnn(), schedule))
    wrapped.fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0,
                callbacks=[pruning.UpdatePruningStep()])
    path = str(tmp_path / "mid.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    masks = pruning.structured.channel_masks
    assert [m.name for m in masks(loaded)] == [m.name for m in masks(wrapped)]
    for a, b in zip(masks(wrapped), masks(loaded)):
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
        assert int(b.pruning_step.numpy()) == 4
        assert b.targets == a.targets
    assert 0 < min(float(m.mask.numpy().mean()) for m in masks(loaded)) < 1
    np.testing.assert_allclose(_predict(loaded, x[:8]), _predict(wrapped, x[:8]), atol=1e-6)
    loaded.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert int(masks(loaded)[0].pruning_step.numpy()) == 20
    small = pruning.strip_pruning(loaded)
    np.testing.assert_allclose(_predict(small, x[:8]), _predict(loaded, x[:8]), atol=1e-5)
    first = [l for l in small.layers if isinstance(l, L.Conv2D)][0]
    assert first.filters == 4


# -- the surgered model is a plain model: save, export, compose ------------------------


def test_surgered_model_saves_and_loads(tmp_path):
    model = residual_model()
    small = pruning.prune_channels(model, 0.5)
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    x = random_batch(model, n=4)
    np.testing.assert_allclose(_predict(loaded, x), _predict(small, x), atol=1e-6)
    assert loaded.count_params() == small.count_params()


def test_surgered_model_exports_float_and_int8(tmp_path):
    x, y = digits(256)
    model = compile_model(residual_model())
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    small = compile_model(pruning.prune_channels(model, 0.5))
    small.fit(x, y, epochs=1, batch_size=32, verbose=0)
    float_file = export.to_tflite(small, str(tmp_path / "small.tflite"), batch_size=1)
    # The file holds the narrow weights (BatchNormalization folded away).
    assert sum(w["size"] for w in float_file.weights) < 0.5 * model.count_params()
    interpreter = Interpreter(model_path=str(tmp_path / "small.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert tuple(inp["shape"]) == (1, 8, 8, 1)
    interpreter.set_tensor(inp["index"], x[:1])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), _predict(small, x[:1]), atol=1e-4)
    report = export.verify(float_file, small, x[:64], y[:64])
    assert report["max_abs_diff"] < 1e-4
    int8 = export.to_tflite(small, quantization="int8", representative_data=x[:100], batch_size=1)
    report = export.verify(int8, small, x[:128], y[:128])
    assert report["top1_agreement"] >= 0.9
    kernels = [w for w in int8.weights if len(w["shape"]) == 4]
    assert kernels and all(w["dtype"] == "int8" for w in kernels)


def test_channel_pruned_model_composes_with_magnitude_pruning_and_qat():
    x, y = digits(256)
    model = compile_model(sequential_cnn())
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    small = pruning.prune_channels(model, 0.5)
    sparse = compile_model(pruning.prune_low_magnitude(
        small, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1)))
    sparse.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    sparse = pruning.strip_pruning(sparse)
    assert pruning.sparsity_report(sparse)["total"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    qat = compile_model(quantization.quantize_model(sparse, preserve_sparsity=True))
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
    exported = export.to_tflite(qat, quantization="int8", batch_size=1)
    assert any(w["dtype"] == "int8" for w in exported.weights)
    report = export.verify(exported, qat, x[:64], y[:64])
    assert report["top1_agreement"] >= 0.9


# -- errors ---------------------------------------------------------------------------


def test_bad_ratios_raise():
    model = sequential_cnn()
    with pytest.raises(ValueError, match="would remove all 8 channels of layer .conv2d."):
        pruning.prune_channels(model, 0.97)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
            pruning.prune_channels(model, bad)
    with pytest.raises(TypeError, match="float"):
        pruning.prune_channels(model, "half")
    with pytest.raises(ValueError, match="outside"):
        pruning.prune_channels(model, {model.layers[0].name: 1.0})
    # A ratio removing every channel of a small layer names the layer.
    tiny = keras.Sequential([keras.Input((3,)), L.Dense(2, name="two"), L.Dense(1)])
    with pytest.raises(ValueError, match="remove all 2 channels of layer 'two'"):
        pruning.prune_channels(tiny, 0.8)
    unchanged = pruning.prune_channels(model, 0.0)
    assert unchanged.count_params() == model.count_params()


def test_unknown_and_unprunable_layers_raise():
    model = residual_model()
    with pytest.raises(ValueError, match="'nope' not found"):
        pruning.prune_channels(model, {"nope": 0.5})
    depthwise = [l.name for l in model.layers if isinstance(l, L.DepthwiseConv2D)][0]
    with pytest.raises(ValueError, match="follow its input"):
        pruning.prune_channels(model, {depthwise: 0.5})
    with pytest.raises(ValueError, match="model output"):
        pruning.prune_channels(model, {model.layers[-1].name: 0.5})
    # Coupled layers (Add) cannot take different ratios.
    rows = [r for r in pruning.prunable_layers(model) if len(r["producers"]) > 1]
    first, second = rows[0]["producers"][:2]
    with pytest.raises(ValueError, match="coupled"):
        pruning.prune_channels(model, {first: 0.25, second: 0.5})
    with pytest.raises(ValueError, match="pass sample data"):
        pruning.prune_channels(model, 0.5, criterion="apoz")
    with pytest.raises(ValueError, match="criterion"):
        pruning.prune_channels(model, 0.5, criterion="random")


def test_layer_that_blocks_pruning_is_named():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    x = L.LayerNormalization(name="ln")(x)
    y = L.Conv2D(8, 3, name="free")(x)
    x = L.Softmax(name="channel_softmax")(y)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(10)(x))
    with pytest.raises(ValueError, match="'conv'.*'ln' \\(LayerNormalization\\)"):
        pruning.prune_channels(model, {"conv": 0.5})
    with pytest.raises(ValueError, match="'channel_softmax'"):
        pruning.prune_channels(model, {"free": 0.5})
    with pytest.raises(ValueError, match="no channels that can be pruned"):
        pruning.prune_channels(model, 0.5)


def test_unsupported_models_raise():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(TypeError, match="subclassed"):
        pruning.prune_channels(model, 0.5)
    with pytest.raises(ValueError, match="subclassed"):  # what a tuner catches
        pruning.prune_channels(model, 0.5)
    with pytest.raises(TypeError, match="subclassed"):
        pruning.prune_channels_gradually(model, pruning.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match="not built"):
        pruning.prune_channels(keras.Sequential([L.Dense(4), L.Dense(2)]), 0.5)
    with pytest.raises(ValueError, match="gradual"):
        pruning.prune_channels_gradually(sequential_cnn(), pruning.ConstantSparsity(0.5, 0),
                                         criterion="taylor")


def test_channel_mixing_activation_blocks_its_own_units():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="softmax", name="sm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Dense(5, name="h")(hidden)))
    blocked = {row["layer"]: row["blocked"] for row in pruning.prunable_layers(model)}
    assert "softmax" in blocked["sm"] and blocked["h"] is None
    with pytest.raises(ValueError, match="'sm'.*softmax"):
        pruning.prune_channels(model, {"sm": 0.5})
    assert pruning.prune_channels(model, 0.4).get_layer("sm").units == 8


def test_separable_conv_with_depth_multiplier_and_the_layers_after_it_are_prunable():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(8, 3, depth_multiplier=2, name="sep")(inputs)
    x = keras.layers.Conv2D(6, 3, name="c")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    small = pruning.prune_channels(model, {"c": 0.5})
    assert small.get_layer("c").filters == 3
    # Its pointwise filters are a normal group (depth_multiplier 2 only
    # changes the depthwise part; tests/pruning/test_channel_coverage5.py).
    assert pruning.prune_channels(model, {"sep": 0.5}).get_layer("sep").filters == 4


def test_gradual_final_step_removes_what_one_shot_removes():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(10, activation="relu", name="h"),
                              keras.layers.Dense(3)])
    x, y = np.random.rand(32, 6).astype("float32"), np.random.randint(0, 3, 32)
    wrapped = compile_classifier(pruning.prune_channels_gradually(
        model, pruning.ConstantSparsity(0.45, 0, frequency=1)))
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    # 0.45 is 0.4499999 in float32: still 5 of 10 units removed, as one shot.
    assert pruning.strip_structured(wrapped).get_layer("h").units == 5
    assert pruning.prune_channels(model, 0.45).get_layer("h").units == 5


def test_taylor_uses_the_compiled_loss_of_a_sequential_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="h"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.random.rand(40, 6).astype("float32"), np.random.rand(40, 1).astype("float32")
    # mse regression: a guessed cross-entropy would fail on these labels.
    small = pruning.prune_channels(model, 0.5, criterion="taylor", data=(x, y))
    assert small.get_layer("h").units == 4
    graph = ChannelGraph(model)
    scores_32 = importance.group_importance(graph, "taylor", data=(x, y), batch_size=32)
    scores_40 = importance.group_importance(graph, "taylor", data=(x, y), batch_size=40)
    for key in scores_40:
        np.testing.assert_allclose(scores_32[key], scores_40[key], rtol=1e-4)
