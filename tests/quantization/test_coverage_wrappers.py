"""QAT of wrapper and recurrent layers users ship, into real int8 files.

Bidirectional (every merge mode), SimpleRNN, TimeDistributed (with and
without a mask), PReLU, GroupNormalization: each test builds (and mostly
trains) a tiny model, quantizes it, exports the int8 file, runs it in the
LiteRT interpreter and compares it with the QAT model.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import layers

from tests.quantization.test_recurrent import logit_error
from tests.quantization.test_recurrent import trained
from tfopt import export
from tfopt import quantization
from tfopt.export.verify import run_tflite
from tfopt.quantization.layers import QuantizedBidirectional
from tfopt.quantization.layers import QuantizedPReLU
from tfopt.quantization.layers import QuantizedRecurrent
from tfopt.quantization.layers import QuantizedTimeDistributed

STEPS = 4


def sequence_task(n, seed, steps=STEPS):
    """Float sequences; the class is read at the first and last steps (both directions matter).

    The deciding values are at least 0.5 away from the class boundary, so
    that a 1% logit difference (int8 rounding) does not flip near-ties.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 3)).astype("float32")
    for step, feature in ((0, 0), (-1, 1)):
        x[:, step, feature] = np.sign(x[:, step, feature]) * (0.5 + np.abs(x[:, step, feature]))
    y = (x[:, 0, 0] > 0).astype("int32") + 2 * (x[:, -1, 1] > 0).astype("int32")
    return x, y


def quantized_after_fit(model, x, y, epochs=4):
    """Float fit (`epochs`, 0: none), then QAT with its ranges set; returns (qat, error of QAT vs float logits)."""
    keras.utils.set_random_seed(0)
    if epochs:
        trained(model, x, y, epochs=epochs)
    qat = quantization.quantize_model(model)
    # One training-mode batch sets the ranges: the QAT model then computes
    # the float model's function up to int8 rounding (a wrong direction or
    # step order would not). Eager calls: cheaper than tracing a predict.
    qat(x[:256], training=True)
    float_logits, qat_logits = np.asarray(model(x[:128])), np.asarray(qat(x[:128]))
    return qat, float(np.abs(qat_logits - float_logits).max() / np.ptp(float_logits))


def qat_and_file(model, x, y, epochs=4, qat_epochs=1):
    """`quantized_after_fit`, QAT fit (recurrent tests skip it: test_recurrent.py trains
    QuantizedRecurrent; its unrolled graph is slow to trace), int8 export."""
    qat, before = quantized_after_fit(model, x, y, epochs)
    if qat_epochs:
        trained(qat, x, y, epochs=qat_epochs, learning_rate=1e-3)
    return qat, export.to_tflite(qat, quantization="int8", batch_size=1), before


def assert_unrolled_int8_file(exported, qat, recurrent_layers, min_agreement):
    """Every compute op int8 (per recurrent layer: input + recurrent projection
    per step, none recurrent at step 0; + the head), the file agrees with `qat`."""
    precision = export.op_precision(exported.content)
    assert precision["compute_ops"] == recurrent_layers * (2 * STEPS - 1) + 1, precision
    assert precision["int8_share"] == 1.0 and not precision["float_other"], precision
    x_test, _ = sequence_task(128, 1)
    error, agreement, _ = logit_error(exported, qat, x_test)
    assert agreement >= min_agreement and error <= 0.03, (agreement, error)
    return x_test


def wrapped(model, cls):
    return [l.layer for l in model.layers if isinstance(l, quantization.QuantizeWrapper)
            and isinstance(l.layer, cls)]


def assert_round_trip(model, x, tmp_path):
    path = str(tmp_path / "qat.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    # Eager calls: cheaper than tracing a predict of an unrolled graph.
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)


MERGE_STEPS = 3  # (fewer steps than the other tests: four layers to convert)
MERGES = (("sum", 4 * MERGE_STEPS), ("concat", 8), ("mul", 4), ("ave", 4))  # (mode, features)


def test_bidirectional_every_merge_mode_runs_int8_through_the_file(tmp_path):
    # One Bidirectional per merge mode, side by side (one conversion): an
    # LSTM returning sequences (the backward steps put back in time order),
    # a GRU, a tanh and a relu SimpleRNN.
    inputs = keras.Input((MERGE_STEPS, 3))
    branches = [
        layers.Flatten()(layers.Bidirectional(layers.LSTM(4, return_sequences=True),
                                              merge_mode="sum")(inputs)),
        layers.Bidirectional(layers.GRU(4), merge_mode="concat")(inputs),
        layers.Bidirectional(layers.SimpleRNN(4), merge_mode="mul")(inputs),
        layers.Bidirectional(layers.SimpleRNN(4, activation="relu"), merge_mode="ave")(inputs),
    ]
    features = layers.Concatenate(name="features")(branches)
    model = keras.Model(inputs, layers.Dense(4)(features))
    x, y = sequence_task(512, 0, MERGE_STEPS)
    qat, before = quantized_after_fit(model, x, y, epochs=2)
    assert sorted(l.merge_mode for l in wrapped(qat, QuantizedBidirectional)) == sorted(
        mode for mode, _ in MERGES)
    assert before <= 0.05, before  # the QAT model computes the float model
    # The file of the logits and of every merged output (after its range).
    probe = keras.Model(qat.input, [qat.output, qat.get_layer("features_quant").output])
    exported = export.to_tflite(probe, quantization="int8", batch_size=1)
    precision = export.op_precision(exported.content)
    # Per direction: input + recurrent projection per step (none at step 0);
    # + the head. Nothing float, no REVERSE_V2.
    assert precision["compute_ops"] == 4 * 2 * (2 * MERGE_STEPS - 1) + 1, precision
    assert precision["int8_share"] == 1.0 and not precision["float_other"], precision
    ops_ = {o["op"] for o in precision["ops"]}
    assert {"CONCATENATION", "ADD", "MUL"} <= ops_ and "REVERSE_V2" not in ops_, ops_
    x_test, _ = sequence_task(128, 1, MERGE_STEPS)
    logits, merged = run_tflite(exported, x_test)
    want_logits, want_merged = (np.asarray(out) for out in probe(x_test))
    assert np.mean(logits.argmax(-1) == want_logits.argmax(-1)) >= 0.99
    assert np.abs(logits - want_logits).max() <= 0.03 * np.ptp(want_logits)
    start = 0
    for mode, width in MERGES:  # each merge within a few int8 steps of its range
        got, want = merged[:, start:start + width], want_merged[:, start:start + width]
        start += width
        assert np.abs(got - want).max() <= 0.04 * np.ptp(want), mode
    assert_round_trip(qat, x_test[:8], tmp_path)
    # An ineligible direction (dropout) keeps the whole layer a float island.
    dropped = layers.Bidirectional(layers.GRU(4, dropout=0.1))(inputs)
    island = quantization.quantize_model(keras.Model(inputs, dropped))
    assert not wrapped(island, QuantizedBidirectional)
    assert any(isinstance(l, layers.Bidirectional) for l in island.layers)


def test_simple_rnn_runs_int8_unrolled_and_falls_back_to_a_float_island():
    inputs = keras.Input((STEPS, 3))
    h = layers.SimpleRNN(6, return_sequences=True)(inputs)
    h = layers.SimpleRNN(6, activation="relu", go_backwards=True)(h)
    model = keras.Model(inputs, layers.Dense(4)(h))
    x, y = sequence_task(512, 0)
    qat, exported, before = qat_and_file(model, x, y, qat_epochs=0)
    assert [l.cell for l in wrapped(qat, QuantizedRecurrent)] == ["simple_rnn", "simple_rnn"]
    assert before <= 0.05, before
    # (A 1% logit difference, one int8 step of the output, flips 1-2 near-ties.)
    assert_unrolled_int8_file(exported, qat, 2, min_agreement=0.97)
    # Ineligible (dropout) or switched off: the float island, as for LSTM.
    island = keras.Model(inputs, layers.Dense(4)(layers.SimpleRNN(6, dropout=0.1)(inputs)))
    for qat in (quantization.quantize_model(island), quantization.quantize_model(model, int8_recurrent=False)):
        assert not wrapped(qat, QuantizedRecurrent)
        assert sum(isinstance(l, layers.SimpleRNN) for l in qat.layers) >= 1


def test_time_distributed_runs_its_layer_int8_on_the_reshaped_batch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3, 8, 8, 2)).astype("float32")
    y = (x[:, 1, 2:6, 2:6, 0].mean((1, 2)) > 0).astype("int32") + 2 * (x[:, 2, :, :, 1].mean((1, 2)) > 0)
    inputs = keras.Input((3, 8, 8, 2))
    h = layers.TimeDistributed(layers.Conv2D(4, 3, activation="relu"))(inputs)
    h = layers.TimeDistributed(layers.GlobalAveragePooling2D())(h)
    h = layers.TimeDistributed(layers.Dense(4, activation="gelu"))(h)
    model = keras.Model(inputs, layers.Dense(4)(layers.Flatten()(h)))
    qat, exported, before = qat_and_file(model, x, y.astype("int32"))
    assert len(wrapped(qat, QuantizedTimeDistributed)) == 2
    assert before <= 0.05, before
    precision = export.op_precision(exported.content)
    ops_ = [o["op"] for o in precision["ops"]]
    assert ops_.count("CONV_2D") == 1 and ops_.count("FULLY_CONNECTED") == 2, ops_
    assert precision["int8_share"] == 1.0 and not precision["float_other"], precision
    error, agreement, _ = logit_error(exported, qat, x[:64])
    assert agreement >= 0.99 and error <= 0.02, (agreement, error)
    assert_round_trip(qat, x[:8], tmp_path)
    # A layer tfopt cannot run on the reshaped batch: a clear refusal.
    seq = keras.Input((2, STEPS, 3))
    refused = keras.Model(seq, layers.TimeDistributed(layers.LSTM(2))(seq))
    with pytest.raises(ValueError, match=r"'time_distributed.*\(TimeDistributed\).*LSTM.*not supported"):
        quantization.quantize_model(refused)


def test_prelu_runs_as_int8_ops_and_matches(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 12)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("int32")
    inputs = keras.Input((12,))
    h = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25))(layers.Dense(16)(inputs))
    model = keras.Model(inputs, layers.Dense(2)(h))
    qat, exported, before = qat_and_file(model, x, y, epochs=6)
    assert sum(isinstance(l, QuantizedPReLU) for l in qat.layers) == 1
    assert before <= 0.05, before
    precision = export.op_precision(exported.content)
    ops_ = [(o["op"], o["input_dtype"], o["output_dtype"]) for o in precision["ops"]]
    # relu(x) + alpha * min(x, 0): MINIMUM, MUL, ADD (the RELU fused into
    # the kernel before it), every op int8 between the file's QUANTIZE and
    # DEQUANTIZE; no float PRELU.
    assert {op for op, *_ in ops_} >= {"MINIMUM", "MUL", "ADD"}, ops_
    assert all((i, o) == ("int8", "int8") for op, i, o in ops_ if op not in ("QUANTIZE", "DEQUANTIZE")), ops_
    assert precision["int8_share"] == 1.0 and not precision["float_other"], precision
    error, agreement, _ = logit_error(exported, qat, x[:128])
    assert agreement >= 0.99 and error <= 0.03, (agreement, error)
    assert_round_trip(qat, x[:8], tmp_path)


def test_group_normalization_is_a_float_island_between_int8_kernels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8, 8, 2)).astype("float32")
    y = (x[:, 2:6, 2:6, 0].mean((1, 2)) > 0).astype("int32")
    inputs = keras.Input((8, 8, 2))
    h = layers.GroupNormalization(groups=2)(layers.Conv2D(8, 3)(inputs))
    h = layers.GlobalAveragePooling2D()(layers.Activation("relu")(h))
    model = keras.Model(inputs, layers.Dense(2)(h))
    qat, exported, before = qat_and_file(model, x, y)
    assert before <= 0.05, before
    precision = export.op_precision(exported.content)
    # CONV_2D and FULLY_CONNECTED int8; the normalization's lowering float.
    assert precision["compute_ops"] == 2 and precision["int8_share"] == 1.0, precision
    assert "RSQRT" in precision["float_other"], precision
    error, agreement, _ = logit_error(exported, qat, x[:64])
    assert agreement >= 0.97 and error <= 0.05, (agreement, error)


def test_time_distributed_passes_a_mask_on_as_keras_does(tmp_path):
    # Padded token sequences: the masked mean after TimeDistributed(Dense)
    # reads only the real steps (token 0 has an embedding row too: ignoring
    # the mask would change the logits).
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20, size=(128, 6))
    for row, length in zip(tokens, rng.integers(2, 7, size=128)):
        row[length:] = 0
    keras.utils.set_random_seed(0)

    def classifier(mask_zero):
        inputs = keras.Input((6,), dtype="int32")
        h = layers.Embedding(20, 8, mask_zero=mask_zero,
                             embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0))(inputs)
        h = layers.TimeDistributed(layers.Dense(6, activation="relu"))(h)
        return keras.Model(inputs, layers.Dense(4)(layers.GlobalAveragePooling1D()(h)))

    model, unmasked = classifier(True), classifier(False)
    unmasked.set_weights(model.get_weights())
    float_logits = np.asarray(model(tokens))
    span = np.ptp(float_logits)
    assert np.abs(np.asarray(unmasked(tokens)) - float_logits).max() > 0.1 * span  # the mask matters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qat = quantization.quantize_model(model)
        qat(tokens, training=True)  # sets the ranges
    # The wrappers and ranges pass the mask on (Keras warns of a layer that drops it).
    assert not [w for w in caught if "destroy the mask" in str(w.message)], caught
    assert len(wrapped(qat, QuantizedTimeDistributed)) == 1
    qat_logits = np.asarray(qat(tokens))
    assert np.abs(qat_logits - float_logits).max() <= 0.02 * span
    exported = export.to_tflite(qat, quantization="int8")
    precision = export.op_precision(exported.content)
    # The two FULLY_CONNECTED int8 (GATHER keeps the table's int8); the masked
    # mean (SUM, DIV) is float.
    assert precision["compute_ops"] == 2 and precision["int8_share"] == 1.0, precision
    assert {"SUM", "DIV"} <= set(precision["float_other"]), precision
    file_logits = run_tflite(exported, tokens)
    assert np.abs(file_logits - qat_logits).max() <= 0.01 * span
    assert np.mean(file_logits.argmax(-1) == qat_logits.argmax(-1)) >= 0.99
    assert_round_trip(qat, tokens[:8], tmp_path)  # the saved model still masks
    # A layer inside that takes the mask itself: refused up front, by name.
    frames = keras.Input((2, 5, 3))
    pooled = layers.TimeDistributed(layers.GlobalAveragePooling1D(), name="pool_steps")(
        layers.Masking()(frames))
    with pytest.raises(ValueError, match=r"'pool_steps'.*receives a mask.*GlobalAveragePooling1D.*"
                                         r"skip_unsupported=True"):
        quantization.quantize_model(keras.Model(frames, pooled))
