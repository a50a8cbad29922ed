"""QAT of Keras's dot-product/additive Attention, and the refusal of layers TFLite cannot convert.

`keras.layers.Attention`/`AdditiveAttention` are quantized with
`quantize_model`, fine-tuned briefly, exported with
`to_tflite(qat, quantization="int8")` (ranges from the fake-quant nodes) and
run in the LiteRT interpreter: every op between the file's input QUANTIZE and
output DEQUANTIZE must read int8, and the file must agree with the QAT model.
3-D pooling (no TFLite builtin) is refused before any training.
"""

import keras
import numpy as np
import pytest
from keras import layers

from tfopt import export
from tfopt import quantization
from tfopt.export.verify import run_tflite
from tfopt.quantization import config as config_lib


def _attention_model(attention, return_scores=False):
    inputs = keras.Input((6, 8))
    query = layers.Dense(8)(inputs)
    if return_scores:
        x, scores = attention([query, inputs], return_attention_scores=True)
        x = layers.Concatenate()([x, scores])
    else:
        x = attention([query, inputs])
    return keras.Model(inputs, layers.Dense(4)(layers.GlobalAveragePooling1D()(x)))


def _task(n=128):
    x = np.random.default_rng(0).normal(size=(n, 6, 8)).astype("float32")
    return x, x[:, :, :4].sum(axis=1).argmax(-1)


def _fit_and_export(model, epochs):
    """`(qat model, int8 export, x)` after a short QAT fit on the task."""
    keras.utils.set_random_seed(0)
    x, y = _task()
    qat = quantization.quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return qat, export.to_tflite(qat, quantization="int8"), x


def _op_input_dtypes(content):
    """`[(op name, dtype of its first input)]` of a TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return [(op["op_name"], dtypes[op["inputs"][0]]) for op in interpreter._get_ops_details()]


@pytest.mark.parametrize("make, return_scores", [
    # The scores output (return_attention_scores) joins the head through a Concatenate.
    pytest.param(lambda: layers.Attention(use_scale=True), True, id="dot-scaled-scores"),
    pytest.param(lambda: layers.Attention(use_scale=True, score_mode="concat", dropout=0.1), False,
                 id="concat"),
    pytest.param(lambda: layers.AdditiveAttention(), False, id="additive"),
])
def test_attention_qat_file_is_int8_and_agrees(make, return_scores, tmp_path):
    qat, exported, x = _fit_and_export(_attention_model(make(), return_scores), epochs=4)
    inner = next(l for l in qat.layers if isinstance(l, layers.Attention))
    assert type(inner).__name__.startswith("Quantized")
    ops_read = _op_input_dtypes(exported.content)
    assert ("BATCH_MATMUL", "int8") in ops_read and ("FULLY_CONNECTED", "int8") in ops_read
    # No float island inside: only the input's QUANTIZE reads float, only
    # the output's DEQUANTIZE writes it (a QUANTIZE int8 -> int8 requantizes).
    assert [op for op, dtype in ops_read if dtype != "int8"] == ["QUANTIZE"], ops_read
    assert [op for op, _ in ops_read].count("DEQUANTIZE") == 1, ops_read
    keras_out = qat.predict(x, verbose=0)
    file_out = run_tflite(exported, x)
    assert (file_out.argmax(-1) == keras_out.argmax(-1)).mean() >= 0.99
    assert np.abs(file_out - keras_out).max() < 0.05 * np.abs(keras_out).max()
    path = str(tmp_path / "attention.keras")
    qat.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), keras_out, atol=1e-5)


def _masked_models():
    inputs = keras.Input((6, 8))
    yield "causal", keras.Model(inputs, layers.Attention()([inputs, inputs], use_causal_mask=True))
    mask = keras.Input((6,), dtype="bool")
    attended = layers.AdditiveAttention()([inputs, inputs], mask=[mask, mask])
    yield "explicit", keras.Model([inputs, mask], attended)
    tokens = keras.Input((6,), dtype="int32")
    embedded = layers.Embedding(10, 8, mask_zero=True)(tokens)
    yield "mask_zero", keras.Model(tokens, layers.Attention()([embedded, embedded]))


def test_masked_attention_is_refused_by_name():
    for kind, model in _masked_models():
        with pytest.raises(ValueError, match=r"\(Attention|\(AdditiveAttention") as error:
            quantization.quantize_model(model)
        assert "use_causal_mask" in str(error.value) and "skip_unsupported" in str(error.value), kind
        with pytest.warns(UserWarning, match="stays float"):
            qat = quantization.quantize_model(model, skip_unsupported=True)
        kept = [l for l in qat.layers if isinstance(l, layers.Attention)]
        assert kept and not any(type(l).__name__.startswith("Quantized") for l in kept), kind
    from tfopt.quantization.layers import QuantizedAttention

    x = np.ones((1, 3, 4), "float32")
    with pytest.raises(ValueError, match="mask"):
        QuantizedAttention()([x, x], use_causal_mask=True)


@pytest.mark.parametrize("pool", [layers.MaxPooling3D, layers.AveragePooling3D])
def test_3d_pooling_is_refused_before_training(pool):
    assert config_lib.rule_for(pool(2)).io == config_lib.NO_KERNEL
    inputs = keras.Input((4, 4, 4, 2))
    x = pool(2, name="pool3d")(layers.Conv3D(4, 1)(inputs))
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.raises(ValueError, match=r"'pool3d' \(.*Pooling3D\).*no 3-D pooling kernel"
                       r".*GlobalAveragePooling3D.*strided Conv3D"):
        quantization.quantize_model(model)
    rows = {row[0]: row[1] for row in config_lib.describe_table()}
    assert "no 3-D pooling kernel" in rows[pool.__name__]
