import keras
import numpy as np
import pytest

from tfopt import pruning
from tfopt.pruning import PruneLowMagnitude

from .helpers import cnn
from .helpers import compile_model
from .helpers import digits
from .helpers import random_batch
from .helpers import wrapped_weight_sparsity

SCHEDULE = pruning.ConstantSparsity(0.75, 0, frequency=1)


def _train(model, x, y, epochs=1, **kwargs):
    compile_model(model)
    model.fit(
        x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False,
        callbacks=[pruning.UpdatePruningStep()], **kwargs,
    )
    return model


def _functional_residual():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    y = keras.layers.ReLU()(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(y)
    y = keras.layers.SeparableConv2D(8, 3, padding="same")(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


def _nested():
    inner = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu")], name="inner"
    )
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = inner(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize("build", [cnn, _functional_residual, _nested])
def test_pruned_model_trains_to_exact_sparsity_and_strips_equal(build):
    model = build()
    x, y = digits(128)
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=SCHEDULE)
    _train(pruned, x, y)
    report = pruning.sparsity_report(pruned)
    for row in report["layers"]:
        kept = round(row["size"] * 0.25)
        assert row["zeros"] == row["size"] - kept, row
    stripped = pruning.strip_pruning(pruned)
    assert not any(isinstance(l, PruneLowMagnitude) for l in pruning.api.iter_layers(stripped))
    assert pruning.sparsity_report(stripped) == report
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6
    )
    # The original model is untouched by pruning.
    assert wrapped_weight_sparsity(model) < 0.05


def test_pruned_weights_stay_zero_and_get_no_gradient():
    # Sparsity grows every step: each new mask must keep every old zero.
    model = pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.PolynomialDecay(0.2, 0.8, 0, 12, frequency=1))
    x, y = digits(128)
    compile_model(model)
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    previous = None
    for step in range(12):
        batch = slice(32 * (step % 4), 32 * (step % 4 + 1))
        model.train_on_batch(x[batch], y[batch])
        masks = [m.numpy().copy() for w in pruning.api.pruning_wrappers(model) for m in w.masks]
        if previous is not None:
            for old, new in zip(previous, masks):
                assert np.all(new[old == 0] == 0), f"step {step}: a pruned weight came back"
        previous = masks
    assert pruning.sparsity_report(model)["total"]["sparsity"] > 0.7
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.sum(model(x[:8]) ** 2)
    wrappers = pruning.api.pruning_wrappers(model)
    grads = tape.gradient(loss, [w.prunable_weights[0] for w in wrappers])
    for wrapper, grad in zip(wrappers, grads):
        pruned = wrapper.masks[0].numpy() == 0
        assert pruned.any()
        assert np.all(np.asarray(grad)[pruned] == 0)
    stripped = pruning.strip_pruning(model)
    for wrapper in wrappers:
        layer = stripped.get_layer(wrapper.layer.name)
        assert np.all(layer.kernel.numpy()[wrapper.masks[0].numpy() == 0] == 0)


def _text_model():
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8)(inputs)
    x = keras.layers.Conv1D(8, 3, padding="same")(x)
    a = keras.layers.MultiHeadAttention(2, 4)(x, x)
    x = keras.layers.Add()([x, a])
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.LSTM(8, return_sequences=True)(x)
    x = keras.layers.GRU(8, return_sequences=True)(x)
    x = keras.layers.SimpleRNN(8)(x)
    x = keras.layers.Dense(8)(x)
    x = keras.layers.EinsumDense("ab,bc->ac", output_shape=4)(x)
    return keras.Model(inputs, x)


def _conv_zoo():
    inputs = keras.Input((6, 6, 6, 2))
    x = keras.layers.Conv3D(4, 3, padding="same")(inputs)
    x = keras.layers.Reshape((6, 6, 24))(x)
    x = keras.layers.Conv2DTranspose(4, 3)(x)
    x = keras.layers.Reshape((64, 4))(x)
    x = keras.layers.Conv1DTranspose(4, 3)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("build, x_kind", [(_text_model, "tokens"), (_conv_zoo, "float")])
def test_every_builtin_prunable_layer_wraps_trains_and_strips(build, x_kind):
    model = build()
    rng = np.random.default_rng(0)
    if x_kind == "tokens":
        x = rng.integers(0, 20, size=(16, 6)).astype("int32")
    else:
        x = rng.random((16, *model.inputs[0].shape[1:])).astype("float32")
    y = rng.random((16, *model.outputs[0].shape[1:])).astype("float32")
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=SCHEDULE)
    wrapped = {type(w.layer).__name__ for w in pruning.api.pruning_wrappers(pruned)}
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for row in pruning.sparsity_report(pruned)["layers"]:
        assert row["zeros"] == row["size"] - round(row["size"] * 0.25), row
    stripped = pruning.strip_pruning(pruned)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)
    if x_kind == "tokens":
        assert wrapped == {"Embedding", "Conv1D", "MultiHeadAttention", "LSTM", "GRU", "SimpleRNN", "Dense", "EinsumDense"}
    else:
        assert wrapped == {"Conv3D", "Conv2DTranspose", "Conv1DTranspose"}


def test_layer_and_list_of_layers_and_subclassed_model():
    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.hidden = pruning.prune_low_magnitude(
                keras.layers.Dense(16, activation="relu"), pruning_schedule=SCHEDULE
            )
            self.out = pruning.prune_low_magnitude(keras.layers.Dense(10), pruning_schedule=SCHEDULE)

        def call(self, x, training=None):
            # Subclassed models must pass `training` on, as for Dropout.
            hidden = self.hidden(self.flatten(x), training=training)
            return self.out(hidden, training=training)

    x, y = digits(64)
    model = Classifier()
    _train(model, x, y)
    assert wrapped_weight_sparsity(model) == pytest.approx(0.75, abs=1e-3)
    with pytest.raises(TypeError, match="subclassed"):
        pruning.strip_pruning(model)
    wrapped = pruning.prune_low_magnitude([keras.layers.Dense(3), keras.layers.Conv2D(2, 3)])
    assert all(isinstance(w, PruneLowMagnitude) for w in wrapped)


def test_layers_argument_limits_pruning_and_rejects_unknown_names():
    model = cnn()
    pruned = pruning.prune_low_magnitude(model, layers=[model.layers[-1].name])
    assert [w.layer.name for w in pruning.api.pruning_wrappers(pruned)] == [model.layers[-1].name]
    with pytest.raises(ValueError, match=r"layers=\['nope'\] not found"):
        pruning.prune_low_magnitude(model, layers=["nope"])


class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


class PrunableScale(Scale, pruning.PrunableLayer):
    def get_prunable_weights(self):
        return [self.scale]


class Mix(keras.layers.Layer):
    def build(self, input_shape):
        self.mix = self.add_weight(shape=(input_shape[-1], input_shape[-1]))

    def call(self, x):
        return x @ self.mix


def test_unsupported_layer_raises_unless_skipped_and_protocol_opts_in():
    # A layer with an unknown matrix weight (vector-only layers such as Scale
    # pass through unpruned: see tests/pruning/test_coverage.py).
    model = keras.Sequential([keras.Input((4,)), Mix(name="mix"), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"'mix' \(Mix\) holds weights tfopt cannot prune"):
        pruning.prune_low_magnitude(model)
    with pytest.warns(UserWarning, match="left unwrapped"):
        pruned = pruning.prune_low_magnitude(model, skip_unsupported=True)
    assert len(pruning.api.pruning_wrappers(pruned)) == 1
    custom = keras.Sequential([keras.Input((8,)), PrunableScale(), keras.layers.Dense(2)])
    pruned = pruning.prune_low_magnitude(custom, pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("sgd", "mse")
    pruned.fit(np.ones((8, 8)), np.ones((8, 2)), verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert (pruning.api.pruning_wrappers(pruned)[0].masks[0].numpy() == 0).sum() == 4


def test_bad_input_errors_before_training():
    model = cnn()
    with pytest.raises(ValueError, match="already wrapped"):
        pruning.prune_low_magnitude(pruning.prune_low_magnitude(model))
    with pytest.raises(ValueError, match="already wrapped"):
        pruning.prune_low_magnitude(pruning.prune_low_magnitude(keras.layers.Dense(2)))
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="is not built"):
        pruning.prune_low_magnitude(unbuilt)
    with pytest.raises(ValueError, match="conv2d.*axis -2 has 1\\) to be divisible by 4"):
        pruning.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    with pytest.raises(ValueError, match=r"m \(zeros per group\) must be at least 1 and smaller than n"):
        pruning.prune_low_magnitude(model, sparsity_m_by_n=(4, 2))
    with pytest.raises(ValueError, match=r"block_size=\(0, 2\)"):
        pruning.prune_low_magnitude(model, block_size=(0, 2))
    with pytest.raises(ValueError, match=r"block_size=\(5, 5\) does not tile"):
        pruning.prune_low_magnitude(model, block_size=(5, 5))
    with pytest.raises(ValueError, match="block_pooling_type='MEDIAN'"):
        pruning.prune_low_magnitude(model, block_pooling_type="MEDIAN")
    with pytest.raises(ValueError, match="scope='model'"):
        pruning.prune_low_magnitude(model, scope="model")
    with pytest.raises(TypeError, match="pruning_schedule must be"):
        pruning.prune_low_magnitude(model, pruning_schedule=0.5)
    with pytest.raises(TypeError, match="got str"):
        pruning.prune_low_magnitude("dense")


def test_training_without_callback_raises_clear_error():
    pruned = compile_model(pruning.prune_low_magnitude(cnn()))
    x, y = digits(32)
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        pruned.fit(x, y, verbose=0)


def test_block_and_m_by_n_patterns_in_a_model():
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8), keras.layers.Dense(4)])
    x = random_batch(model, 32)
    y = np.zeros((32, 4), "float32")
    pruned = pruning.prune_low_magnitude(model, sparsity_m_by_n=(2, 4), pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", "mse")
    pruned.fit(x, y, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for wrapper in pruning.api.pruning_wrappers(pruned):
        groups = wrapper.masks[0].numpy().T.reshape(-1, 4)
        np.testing.assert_array_equal(groups.sum(-1), 2)
    blocked = pruning.prune_low_magnitude(model, block_size=(4, 2), pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1))
    blocked.compile("adam", "mse")
    blocked.fit(x, y, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    mask = pruning.api.pruning_wrappers(blocked)[0].masks[0].numpy()
    blocks = mask.reshape(4, 4, 4, 2).sum(axis=(1, 3))
    assert set(np.unique(blocks)) == {0.0, 8.0} and (blocks == 0).sum() == 8


def test_global_scope_hits_total_sparsity_with_different_layer_sparsities():
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(),
        keras.layers.Dense(32), keras.layers.Dense(10),
    ])
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.7, 0, frequency=1), scope="global")
    x, y = digits(64)
    _train(pruned, x, y)
    report = pruning.sparsity_report(pruned)
    size = report["total"]["size"]
    assert report["total"]["zeros"] == size - round(size * 0.3)
    per_layer = [row["sparsity"] for row in report["layers"]]
    assert max(per_layer) - min(per_layer) > 0.05
    with pytest.raises(ValueError, match="scope='global'"):
        pruning.prune_low_magnitude(model, scope="global", block_size=(2, 2))


def test_mask_update_compiles_under_xla():
    # Keras turns XLA on by default on GPUs; every mask op must have static
    # shapes (a data-sized histogram such as ops.bincount would not compile).
    model = pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.PolynomialDecay(0.0, 0.7, 0, 3, frequency=1))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    x, y = digits(128)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for row in pruning.sparsity_report(model)["layers"]:
        assert row["zeros"] == row["size"] - round(row["size"] * 0.3), row


def test_m_by_n_rejects_layers_without_an_input_channel_axis():
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 3, name="up")(inputs))
    with pytest.raises(ValueError, match=r"layer 'up' is a Conv2DTranspose"):
        pruning.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))


def test_global_scope_with_several_steps_per_execution():
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    pruned = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.PolynomialDecay(0.0, 0.8, 0, 7, frequency=1), scope="global")
    pruned.compile("sgd", "mse", steps_per_execution=4)
    rng = np.random.default_rng(0)
    pruned.fit(rng.random((96, 16)), rng.random((96, 4)), batch_size=8, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])
    total = pruning.sparsity_report(pruned)["total"]
    assert total["zeros"] == total["size"] - round(total["size"] * 0.2)


def test_activity_regularizer_losses_survive_wrapping():
    layer = keras.layers.Dense(4, activity_regularizer=keras.regularizers.L1(1.0))
    wrapped = pruning.prune_low_magnitude(layer)
    model = keras.Sequential([keras.Input((4,)), wrapped])
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    model(np.ones((2, 4), "float32"), training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
