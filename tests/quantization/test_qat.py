import keras
import numpy as np
import pytest

from tfopt import export
from tfopt import pruning
from tfopt import quantization
from tfopt.data import load_digits
from tfopt.models import compile_classifier
from tfopt.quantization import quantizers
from tfopt.quantization import transforms


def _tf_fake_quant(x, minimum, maximum, narrow_range):
    """numpy reference of TF's FakeQuantWithMinMaxVars (nudged range)."""
    qmin, qmax = (1, 255) if narrow_range else (0, 255)
    scale = (maximum - minimum) / (qmax - qmin)
    zero_from_min = qmin - minimum / scale
    zero = np.clip(np.floor(zero_from_min + 0.5), qmin, qmax)
    low, high = (qmin - zero) * scale, (qmax - zero) * scale
    levels = np.floor((np.clip(x, low, high) - low) / scale + 0.5)
    return levels * scale + low, scale, zero


def test_weight_fake_quant_is_tflite_per_channel_symmetric_int8():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    kernel[..., 2] = 0.0  # an all-zero channel stays zero
    out = np.asarray(quantizers.fake_quant_weight(kernel, "per_channel"))
    for c in range(5):
        bound = np.abs(kernel[..., c]).max() or np.abs(kernel).max()
        expected, scale, zero = _tf_fake_quant(kernel[..., c], -bound, bound, narrow_range=True)
        np.testing.assert_allclose(out[..., c], expected, atol=1e-6)
        assert zero == 128  # int8 zero point 0: symmetric
        levels = out[..., c] / scale
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
        assert np.abs(np.round(levels)).max() <= 127  # narrow range [-127, 127]
    assert np.all(out[..., 2] == 0)
    assert np.all(out[kernel == 0] == 0)


def test_activation_fake_quant_is_tflite_asymmetric_int8():
    # Random points: a grid would land on exact .5 ties, where float32 and
    # float64 rounding may legitimately differ.
    x = np.random.default_rng(3).uniform(-3.0, 7.0, 1001).astype("float32")
    out = np.asarray(quantizers.fake_quant_activation(x, -1.0, 5.0))
    expected, scale, zero = _tf_fake_quant(x, -1.0, 5.0, narrow_range=False)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Values outside the range clamp; the int8 zero point is zero - 128.
    int8 = np.round(out / scale + zero - 128)
    assert int8.min() == -128 and int8.max() == 127
    assert quantizers.int8_parameters(-1.0, 5.0)[1] == int(zero - 128)


def test_batchnorm_folding_is_exact_in_inference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 9, 9, 3)).astype("float32")
    for conv in (keras.layers.Conv2D(6, 3, use_bias=False), keras.layers.DepthwiseConv2D(3, depth_multiplier=2)):
        inputs = keras.Input((9, 9, 3))
        bn = keras.layers.BatchNormalization()
        model = keras.Model(inputs, bn(conv(inputs)))
        bn.set_weights([rng.random(w.shape).astype("float32") + 0.5 for w in bn.weights])
        folded = conv.__class__.from_config(transforms.folded_config(conv))
        folded.build((None, 9, 9, 3))
        folded.set_weights(transforms.folded_weights(conv, bn))
        np.testing.assert_allclose(folded(x), model(x, training=False), atol=1e-5)


def test_all_zero_channels_keep_a_usable_range_and_export(digits16):
    # A fully pruned channel with a bias: a vanishing weight scale would
    # overflow TFLite's int32 bias (scale = input_scale * weight_scale).
    (x, y), (x_test, _) = digits16
    inputs = keras.Input((16, 16, 1))
    conv = keras.layers.Conv2D(4, 3, activation="relu")
    model = compile_classifier(keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(conv(inputs)))))
    model.fit(x, y, epochs=1, verbose=0)
    kernel, bias = conv.get_weights()
    kernel[..., 1] = 0.0
    conv.set_weights([kernel, bias + 0.5])
    qat = compile_classifier(quantization.quantize_model(model, preserve_sparsity=True))
    qat.fit(x, y, epochs=1, verbose=0)
    exported = export.to_tflite(qat, quantization="int8")
    assert export.verify(exported, qat, x_test)["top1_agreement"] >= 0.97


def _zoo_model():
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(8, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    r = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    r = keras.layers.BatchNormalization()(r)
    r = keras.layers.Activation("relu")(r)
    x = keras.layers.Add()([x, r])
    a = keras.layers.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
    b = keras.layers.AveragePooling2D(1)(x)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Reshape((64, 16))(x)
    x = keras.layers.Conv1D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(0.1)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.fixture(scope="module")
def digits16():
    return load_digits(16)


def test_every_supported_layer_trains_exports_to_int8_and_reloads(tmp_path, digits16):
    (x, y), (x_test, y_test) = digits16
    keras.utils.set_random_seed(0)
    model = compile_classifier(_zoo_model())
    model.fit(x, y, epochs=2, verbose=0)
    qat = compile_classifier(quantization.quantize_model(model))
    kinds = {type(l.layer).__name__ for l in qat.layers if isinstance(l, quantization.QuantizeWrapper)}
    assert kinds == {"Conv2D", "DepthwiseConv2D", "Conv1D", "Dense"}
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in qat.layers)
    qat.fit(x, y, epochs=1, verbose=0)
    exported = export.to_tflite(qat, quantization="int8")  # no calibration data
    big = [w for w in exported.weights if w["size"] >= 64]
    assert big and all(w["dtype"] == "int8" for w in big), big
    assert exported.inputs[0]["dtype"] == "float32"
    report = export.verify(exported, qat, x_test, y_test)
    assert report["top1_agreement"] >= 0.97, report
    int8_io = export.to_tflite(qat, quantization="int8", int8_io=True)
    assert int8_io.inputs[0]["dtype"] == "int8" and int8_io.outputs[0]["dtype"] == "int8"
    assert export.verify(int8_io, qat, x_test, y_test)["top1_agreement"] >= 0.95
    # The trained QAT model, ranges included, survives a .keras round trip.
    path = str(tmp_path / "qat.keras")
    qat.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x_test, verbose=0), qat.predict(x_test, verbose=0), atol=1e-5)
    ranges = [(l.range_min.numpy(), l.range_max.numpy()) for l in loaded.layers
              if isinstance(l, quantization.QuantizeActivation)]
    assert ranges and all(low <= 0 <= high and high > low for low, high in ranges)


def test_preserve_sparsity_keeps_exact_zeros_in_keras_and_int8(digits16):
    (x, y), (x_test, _) = digits16
    keras.utils.set_random_seed(0)
    base = compile_classifier(keras.Sequential([
        keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10)]))
    pruned = compile_classifier(pruning.prune_low_magnitude(
        base, pruning_schedule=pruning.ConstantSparsity(0.8, 0, frequency=1)))
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    # Automatic: a model still wrapped for pruning keeps its zeros.
    qat = compile_classifier(quantization.quantize_model(pruned))
    qat.fit(x, y, epochs=1, verbose=0)
    for wrapper in (l for l in qat.layers if isinstance(l, quantization.QuantizeWrapper)):
        effective = np.asarray(wrapper.quantized_kernels()[0])
        assert (effective == 0).mean() >= 0.79
    exported = export.to_tflite(qat, quantization="int8")
    kernels = [w for w in exported.weights if w["dtype"] == "int8" and w["size"] >= 64]
    assert len(kernels) == 2 and all(w["zero_fraction"] >= 0.79 for w in kernels), kernels
    assert export.verify(exported, qat, x_test)["top1_agreement"] >= 0.97


def test_annotate_and_apply_quantizes_only_annotated_layers():
    inputs = keras.Input((8, 8, 1))
    x = quantization.quantize_annotate_layer(keras.layers.Conv2D(4, 3))(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    qat = quantization.quantize_apply(model)
    wrapped = [l.layer.name for l in qat.layers if isinstance(l, quantization.QuantizeWrapper)]
    assert len(wrapped) == 1 and "conv2d" in wrapped[0]
    everything = quantization.quantize_apply(quantization.quantize_annotate_model(model))
    assert sum(isinstance(l, quantization.QuantizeWrapper) for l in everything.layers) == 2


class Bad(quantization.QuantizeConfig):
    def get_weights(self, layer):
        return [layer.bias]


class Foreign(quantization.QuantizeConfig):
    def get_weights(self, layer):
        return [keras.Variable(np.ones((2, 2)))]


class Gain(keras.layers.Layer):
    """A custom layer with a weight: not in QUANTIZE_TABLE."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], input_shape[-1]))

    def call(self, x):
        return keras.ops.matmul(x, self.w)


def test_bad_inputs_raise_clear_errors():
    norm = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), Gain(name="gain")])
    with pytest.raises(ValueError, match=r"'gain' \(Gain\) cannot be quantized"):
        quantization.quantize_model(norm)
    with pytest.warns(UserWarning, match="stays float"):
        quantization.quantize_model(norm, skip_unsupported=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    qat = quantization.quantize_model(model)
    with pytest.raises(ValueError, match="already quantized"):
        quantization.quantize_model(qat)
    with pytest.raises(ValueError, match="is not one of the layer's weights"):
        inputs = keras.Input((4,))
        quantization.quantize_apply(keras.Model(inputs, quantization.quantize_annotate_layer(
            keras.layers.Dense(2), Foreign())(inputs)))
    with pytest.raises(ValueError, match="needs a kernel"):
        inputs = keras.Input((4,))
        quantization.quantize_apply(keras.Model(inputs, quantization.quantize_annotate_layer(
            keras.layers.Dense(2), Bad())(inputs)))
    with pytest.raises(ValueError, match="no annotated layer"):
        quantization.quantize_apply(model)
    with pytest.raises(TypeError, match="takes a layer"):
        quantization.quantize_annotate_layer(model)


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_qat_to_the_same_state(tmp_path, digits16):
    (x, y), _ = digits16
    x, y = x[:256], y[:256]

    def run(callbacks):
        keras.utils.set_random_seed(5)
        base = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                 keras.layers.Flatten(), keras.layers.Dense(10)])
        model = compile_classifier(quantization.quantize_model(base))
        model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
        return model

    reference = run([])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), _Crash()])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    for a, b in zip(resumed.weights, reference.weights):  # kernels and ranges
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)
