"""Crash-isolated conversion, recurrent layers in int8, op precision.

The crash is real: Keras 3's LSTM kept as a while loop (`unroll_rnn=False`)
makes TF 2.21's converter segfault at int8 with batch 1. Isolated, it comes
back as a `ConversionError` and this process goes on.
"""

import keras
import numpy as np
import pytest

from tests.patterns import PATTERNS
from tests.patterns import sample_inputs
from tests.patterns import sample_task
from tests.pruning.helpers import cnn
from tfopt import export


def _pattern(name):
    keras.utils.set_random_seed(0)
    return PATTERNS[name][0]()


def test_converter_crash_is_a_clear_error_and_the_caller_survives():
    model = _pattern("text_lstm")
    x = sample_inputs("text_lstm", 32)
    with pytest.raises(export.ConversionError) as info:
        export.to_tflite(model, quantization="int8", representative_data=x,
                         batch_size=1, unroll_rnn=False, isolate=True)
    error = info.value
    assert error.signal is not None and error.signal.startswith("SIG"), error.signal
    assert error.model_name == "text_lstm"
    message = str(error)
    assert "crashed" in message and "'text_lstm'" in message and error.signal in message
    assert "unroll_rnn=True" in message
    assert isinstance(error, ValueError) and isinstance(error, RuntimeError)
    # This process is alive and converts the same model (unrolled) in int8.
    exported = export.to_tflite(model, quantization="int8", representative_data=x, batch_size=1)
    assert export.op_precision(exported.content)["int8_share"] == 1.0


def test_isolated_conversion_error_is_the_in_process_error():
    model = _pattern("text_gru")
    x = sample_inputs("text_gru", 16)
    kwargs = dict(quantization="int8", representative_data=x, unroll_rnn=False)
    with pytest.raises(export.ConversionError, match="TensorListReserve") as isolated:
        export.to_tflite(model, isolate=True, **kwargs)
    assert isolated.value.signal is None
    with pytest.raises(export.ConversionError, match="TensorListReserve"):
        export.to_tflite(model, isolate=False, **kwargs)


def test_isolated_conversion_gives_the_same_file(digits8):
    (x, _), _ = digits8
    keras.utils.set_random_seed(3)
    model = cnn()
    kwargs = dict(quantization="int8", representative_data=x[:64], batch_size=1)
    child = export.to_tflite(model, isolate=True, **kwargs)
    here = export.to_tflite(model, isolate=False, **kwargs)
    assert child.content == here.content


def test_isolate_must_be_true_false_or_auto(digits8):
    keras.utils.set_random_seed(3)
    with pytest.raises(ValueError, match="isolate='yes' must be True, False or 'auto'"):
        export.to_tflite(cnn(), isolate="yes")


@pytest.mark.parametrize("name", ["text_lstm", "text_gru"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_recurrent_model_exports_int8_with_every_compute_op_int8(name, batch_size):
    keras.utils.set_random_seed(0)
    model = PATTERNS[name][0]()
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = sample_task(name, 256)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    exported = export.to_tflite(model, quantization="int8", representative_data=x[:64],
                                batch_size=batch_size)
    precision = export.op_precision(exported.content)
    # At least one gate matmul per time step (12), + the head.
    assert precision["compute_ops"] >= 12 + 1
    assert precision["int8_share"] == 1.0, precision["float_compute"]
    # Besides compute, at most GRU's split of its float bias stays float.
    assert set(precision["float_other"]) <= {"SPLIT"}, precision["float_other"]
    assert not any("WHILE" == op or "TensorList" in op for op in exported.ops)
    # Barely trained logits are close together, so compare values, not argmax.
    report = export.verify(exported, model, x[:64])
    assert report["cosine_similarity"] >= 0.98, report
    # The user's model is untouched (a clone was unrolled).
    assert not model.get_layer(index=2).unroll


def test_unroll_recurrent_keeps_outputs_and_weights():
    model = _pattern("text_lstm")
    unrolled = export.unroll_recurrent(model)
    assert unrolled is not model
    assert all(layer.unroll for layer in export.tflite.recurrent_layers(unrolled))
    x = sample_inputs("text_lstm", 8)
    np.testing.assert_allclose(unrolled.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert export.unroll_recurrent(unrolled) is unrolled


def test_op_precision_of_int8_and_float_files(digits8, tmp_path):
    (x, _), _ = digits8
    keras.utils.set_random_seed(3)
    model = cnn()
    int8 = export.to_tflite(model, str(tmp_path / "m.tflite"), quantization="int8",
                            representative_data=x[:64])
    precision = export.op_precision(int8.path)
    kinds = {row["op"] for row in precision["ops"] if row["compute"]}
    assert kinds and kinds <= set(export.inspect.COMPUTE_OPS)
    assert precision["compute_ops"] == sum(
        1 for row in precision["ops"] if row["op"] in export.inspect.COMPUTE_OPS)
    assert precision["int8_share"] == 1.0 and precision["float_compute"] == {}
    as_float = export.op_precision(export.to_tflite(model).content)
    assert as_float["int8_share"] == 0.0
    assert sum(as_float["float_compute"].values()) == as_float["compute_ops"] > 0
    with pytest.raises(ValueError, match="not a valid TFLite model"):
        export.op_precision(b"not a flatbuffer")
