"""Magnitude pruning on every layer pattern users ship (issue 11, item 1).

Each pattern of tests/patterns.py is pruned inside a short `fit`, checked
for the exact target sparsity of every prunable weight (by `PRUNE_TABLE`),
for scale/shift layers left unpruned, stripped (same outputs), exported to
TFLite and run in the LiteRT interpreter.
"""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tests import patterns
from tfopt import export
from tfopt import pruning
from tfopt.pruning import PruneLowMagnitude
from tfopt.pruning.api import _weight_label
from tfopt.pruning.api import iter_layers
from tfopt.pruning.api import pruning_wrappers
from tfopt.pruning.registry import PRUNE_TABLE
from tfopt.pruning.registry import prunable_weights
from tfopt.pruning.registry import supports_m_by_n


def _zeros_at(size, sparsity):
    # tfmot's rounding, as tfopt.pruning.masks.num_to_prune computes it.
    return size - int(np.round(size * (1.0 - sparsity)))


def _run_litert(content, x):
    interpreter = Interpreter(model_content=content)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _layers(model):
    return [l for l in iter_layers(model) if not isinstance(l, keras.Model)]


def _fit(model, x, y, run_eagerly=True):
    # Eager by default: tracing the train step costs more CPU than two tiny
    # steps; graph-mode pruning is covered by test_prune_api and the 80% case.
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=run_eagerly)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])
    return model


def _check_prune_strip_export(model, x, y, sparsity, run_eagerly=True):
    expected = {}  # (layer, weight) -> size, from the table, on the original model
    pass_through = []  # weighted layers the table leaves unpruned
    for layer in _layers(model):
        weights = prunable_weights(layer)
        assert weights is not None, f"{layer.name} ({type(layer).__name__}) not covered"
        for weight in weights:
            expected[(layer.name, _weight_label(layer, weight))] = int(np.prod(weight.shape))
        if layer.weights and not weights:
            pass_through.append(layer.name)
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(sparsity, 0, frequency=1))
    _fit(pruned, x, y, run_eagerly)

    # Exactly the table's layers are wrapped; scale/shift layers are not.
    assert {w.layer.name for w in pruning_wrappers(pruned)} == {name for name, _ in expected}
    by_name = {l.name: l for l in _layers(pruned)}
    originals = {l.name: l for l in _layers(model)}
    for name in pass_through:  # not wrapped, and still trained
        assert not isinstance(by_name[name], PruneLowMagnitude), name
        assert any(not np.array_equal(w.numpy(), o.numpy()) for w, o in
                   zip(by_name[name].trainable_weights, originals[name].trainable_weights)), name

    stripped = pruning.strip_pruning(pruned)
    assert not pruning_wrappers(stripped)
    rows = {(r["layer"], r["weight"]): r for r in pruning.sparsity_report(stripped)["layers"]}
    assert set(rows) == set(expected)
    for key, size in expected.items():
        assert rows[key]["size"] == size
        assert rows[key]["zeros"] == _zeros_at(size, sparsity), rows[key]
    stripped_layers = {l.name: l for l in _layers(stripped)}
    for name in pass_through:  # carried over as trained, not masked
        for before, after in zip(by_name[name].weights, stripped_layers[name].weights):
            np.testing.assert_array_equal(after.numpy(), before.numpy())

    reference = keras.ops.convert_to_numpy(pruned(x, training=False))
    result = keras.ops.convert_to_numpy(stripped(x, training=False))
    np.testing.assert_allclose(result, reference, atol=1e-6)

    # Keras's LSTM/GRU convert with a static batch (a WHILE loop); with a
    # dynamic one the converter needs TensorList ops TFLite lacks.
    rnn = any(isinstance(l, keras.layers.RNN) for l in _layers(stripped))
    content = export.to_tflite(stripped, batch_size=len(x) if rnn else None).content
    np.testing.assert_allclose(_run_litert(content, x), result, atol=1e-4, rtol=1e-4)
    return pruned, stripped, pass_through


CASES = [(name, 0.5) for name in patterns.PATTERNS] + [("ops_nodes", 0.8)]


@pytest.mark.parametrize("name, sparsity", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_pattern_prunes_to_exact_sparsity_strips_and_runs_in_litert(name, sparsity):
    model = patterns.PATTERNS[name][0]()
    x, y = patterns.sample_task(name, 32)
    _, _, pass_through = _check_prune_strip_export(model, x, y, sparsity,
                                                   run_eagerly=sparsity != 0.8)
    kinds = {type(l).__name__ for l in _layers(model) if l.name in pass_through}
    expected_kinds = {
        "nested": {"BatchNormalization"},
        "squeeze_excite": {"BatchNormalization"},
        "preactivation_bn": {"BatchNormalization"},
        "transformer": {"LayerNormalization"},
        "convnext_block": {"LayerNormalization", "LayerScale"},
    }.get(name, set())
    assert kinds == expected_kinds


def _wrappers_and_rnns():
    # TimeDistributed(Dense), Bidirectional(LSTM), a generic RNN(GRUCell), PReLU.
    inputs = keras.Input((patterns.SEQ,), dtype="int32")
    x = keras.layers.Embedding(patterns.VOCAB, 8)(inputs)
    x = keras.layers.TimeDistributed(keras.layers.Dense(8))(x)
    x = keras.layers.PReLU()(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True))(x)
    x = keras.layers.RNN(keras.layers.GRUCell(8))(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="wrappers_and_rnns")


def test_layer_wrappers_and_generic_rnn_prune_their_inner_weights():
    model = _wrappers_and_rnns()
    x, y = patterns.sample_task("text_gru", 32)
    x = x.astype("int32")
    # Strip/export are covered above; here: the inner weights are found and pruned.
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    _fit(pruned, x, y)
    rows = pruning.sparsity_report(pruning.strip_pruning(pruned))["layers"]
    labels = {(r["layer"], r["weight"].split("/")[-1]) for r in rows}
    names = {type(l).__name__: l.name for l in model.layers}
    assert (names["TimeDistributed"], "kernel") in labels
    assert sum(r["layer"] == names["Bidirectional"] for r in rows) == 4  # 2 directions x 2 kernels
    assert {(names["RNN"], "kernel"), (names["RNN"], "recurrent_kernel")} <= labels
    assert names["PReLU"] not in {r["layer"] for r in rows}
    for row in rows:
        assert row["zeros"] == _zeros_at(row["size"], 0.5), row


class _MyDense(keras.layers.Dense):
    pass


class _NoPruneDense(keras.layers.Dense, pruning.PrunableLayer):
    def get_prunable_weights(self):
        return []


class _Gain(keras.layers.Layer):
    """A custom scale/shift layer: only vector weights."""

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones")
        self.shift = self.add_weight(shape=(), initializer="zeros")

    def call(self, x):
        return x * self.gain + self.shift


class _Mixer(keras.layers.Layer):
    """A custom layer with a matrix weight tfopt cannot know about."""

    def build(self, input_shape):
        self.mix = self.add_weight(shape=(input_shape[-1], input_shape[-1]))

    def call(self, x):
        return keras.ops.matmul(x, self.mix)


def _built(layer, shape=(2, 8)):
    layer.build(shape)
    return layer


def test_table_resolves_by_mro_and_protocol_wins():
    sub = _built(_MyDense(4))
    assert prunable_weights(sub) == [sub.kernel] and supports_m_by_n(sub)
    transposed = _built(keras.layers.Conv2DTranspose(4, 3), (1, 8, 8, 2))
    assert prunable_weights(transposed) == [transposed.kernel]
    assert not supports_m_by_n(transposed)
    assert prunable_weights(_built(_NoPruneDense(4))) == []
    assert prunable_weights(_built(_Gain())) == []
    assert prunable_weights(_built(_Mixer())) is None
    from keras.src.applications.convnext import LayerScale

    assert LayerScale in PRUNE_TABLE
    assert prunable_weights(_built(LayerScale(1e-6, 8))) == []
    adapted = _built(keras.layers.Normalization(), (2, 8))  # mean, variance, count
    assert adapted.weights and prunable_weights(adapted) == []
    for cls in (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                keras.layers.GroupNormalization, keras.layers.RMSNormalization,
                keras.layers.Normalization, keras.layers.Rescaling, keras.layers.PReLU):
        assert PRUNE_TABLE[cls].weights == () and not PRUNE_TABLE[cls].inner, cls


def test_lora_dense_is_a_clear_error_not_an_attribute_error():
    dense = _built(keras.layers.Dense(4, name="lora_dense"))
    dense.enable_lora(2)
    model = keras.Sequential([keras.Input((8,)), dense])
    with pytest.raises(ValueError, match=r"'lora_dense'.*not one of the layer's own variables"
                                         r".*skip_unsupported=True"):
        pruning.prune_low_magnitude(model)
    with pytest.warns(UserWarning, match="'lora_dense'.*skip_unsupported=True"):
        with pytest.raises(ValueError, match="no layer to prune"):
            pruning.prune_low_magnitude(model, skip_unsupported=True)
    assert pruning.sparsity_report(model)["layers"] == []


def _nested_with_custom_layers():
    inner_in = keras.Input((8,))
    inner_out = _Mixer(name="mixer")(_Gain(name="gain")(inner_in)) * 2.0  # an ops node inside
    inner = keras.Model(inner_in, inner_out, name="inner")
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8, name="first")(inputs)
    x = inner(x) + 1.0  # a raw ops node after a nested model
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_unknown_weights_inside_a_nested_model_name_the_layer_and_the_way_out():
    model = _nested_with_custom_layers()
    with pytest.raises(ValueError, match=r"'mixer' \(_Mixer\) holds weights tfopt cannot prune"
                                         r".*skip_unsupported=True.*get_prunable_weights"):
        pruning.prune_low_magnitude(model)
    with pytest.warns(UserWarning, match="'mixer'"):
        pruned = pruning.prune_low_magnitude(model, skip_unsupported=True)
    assert sorted(w.layer.name for w in pruning_wrappers(pruned)) == ["first", "head"]
    x = np.random.default_rng(0).random((4, 8)).astype("float32")
    stripped = pruning.strip_pruning(pruned)
    np.testing.assert_allclose(stripped(x), pruned(x), atol=1e-6)


def test_layers_argument_names_layers_inside_nested_models():
    model = patterns.nested()
    stem_conv = model.get_layer("stem").layers[0].name
    block_conv = [l.name for l in model.get_layer("block").layers
                  if isinstance(l, keras.layers.Conv2D)][0]
    pruned = pruning.prune_low_magnitude(model, layers=[stem_conv])
    assert [w.layer.name for w in pruning_wrappers(pruned)] == [stem_conv]
    pruned = pruning.prune_low_magnitude(model, layers=["block"])  # a nested model's name
    assert [w.layer.name for w in pruning_wrappers(pruned)] == [block_conv]
    stripped = pruning.strip_pruning(pruned)
    assert isinstance(stripped.get_layer("block"), keras.Model)
    assert not pruning_wrappers(stripped)
    x = patterns.sample_inputs("nested", 4)
    np.testing.assert_allclose(stripped(x), model(x), atol=1e-6)  # masks still all ones


def test_mobilenet_v3_small_wraps_trains_one_step_and_strips():
    # It used to crash on its raw `Add` ops nodes ('Add' object has no
    # attribute 'get_weights').
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, include_top=True, classes=10)
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("sgd", "sparse_categorical_crossentropy", run_eagerly=True)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    pruned.fit(x, np.arange(2), epochs=1, batch_size=2, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])
    stripped = pruning.strip_pruning(pruned)
    rows = pruning.sparsity_report(stripped)["layers"]
    assert len(rows) == len(pruning_wrappers(pruned)) > 40
    assert all(r["zeros"] == _zeros_at(r["size"], 0.5) for r in rows)
    np.testing.assert_allclose(stripped(x), pruned(x), atol=1e-5)


def test_convnext_tiny_wraps_with_layer_scale_unpruned_and_strips():
    # It used to be refused for its LayerScale weights; it also nests its stem.
    # A train step on its 28M weights costs ~8 s of CPU: left to the zoo
    # benchmark; the patterns above train the same layers.
    model = keras.applications.ConvNeXtTiny(
        input_shape=(32, 32, 3), weights=None, include_top=True, classes=10)
    pruned = pruning.prune_low_magnitude(model)
    all_layers = _layers(pruned)
    scales = [l for l in all_layers if type(l).__name__ == "LayerScale"]
    assert len(scales) == 18
    wrapped = pruning_wrappers(pruned)
    assert {type(w.layer).__name__ for w in wrapped} == {"Conv2D", "Dense"}  # depthwise: grouped Conv2D
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    stripped = pruning.strip_pruning(pruned)
    assert len(_layers(stripped)) == len(all_layers) and not pruning_wrappers(stripped)
    np.testing.assert_allclose(stripped(x), model(x), atol=1e-5)


def test_pruned_model_with_ops_nodes_saves_and_loads(tmp_path):
    model = patterns.ops_nodes()
    x, y = patterns.sample_task("ops_nodes", 16)
    pruned = _fit(pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1)), x, y)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    assert len(pruning_wrappers(loaded)) == 3
    np.testing.assert_allclose(loaded(x), pruned(x), atol=1e-6)
    np.testing.assert_allclose(pruning.strip_pruning(loaded)(x), pruned(x), atol=1e-6)


class _Block(keras.layers.Layer):
    """A custom transformer-style MLP block built from known layers."""

    def __init__(self, width=16, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.up = keras.layers.Dense(2 * width, activation="gelu", name="up")
        self.down = keras.layers.Dense(width, name="down")

    def call(self, x):
        return x + self.down(self.up(self.norm(x)))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def test_custom_block_of_known_layers_prunes_their_weights():
    inputs = keras.Input((8, 16))
    x = _Block(16, name="block")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    block = model.get_layer("block")
    assert prunable_weights(block) == [block.up.kernel, block.down.kernel]
    assert prunable_weights(_built(_Block(8), (2, 8)).norm) == []
    x = np.random.default_rng(0).random((32, 8, 16)).astype("float32")
    y = np.arange(32) % 10
    _check_prune_strip_export(model, x, y, 0.5)
