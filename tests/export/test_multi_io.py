"""Models of several inputs and outputs: int8 calibration, verify, run_tflite.

Real tiny Keras models, real conversions, the real LiteRT interpreter. The
two inputs have scales 10^4 apart, so a calibration that fed one input's
examples to the other would clip the file (checked: swapping them).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt import export
from tfopt.export.verify import run_tflite


def two_in_two_out():
    keras.utils.set_random_seed(0)
    wide = keras.Input((4,), name="zeta")   # declared first, sorts last
    small = keras.Input((8,), name="alpha")
    x = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(wide),
                                    keras.layers.Dense(8, activation="relu")(small)])
    return keras.Model([wide, small], [keras.layers.Dense(4, name="cls")(x),
                                       keras.layers.Dense(2, name="box")(x)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    zeta = 100 * rng.normal(size=(128, 4)).astype("float32")
    alpha = 0.01 * rng.normal(size=(128, 8)).astype("float32")
    return zeta, alpha, rng.integers(0, 4, 128)



def test_int8_calibration_of_two_inputs_in_every_form(data):
    zeta, alpha, y = data
    model = two_in_two_out()
    keras_out = model.predict([zeta, alpha], verbose=0)
    spans = [float(np.ptp(out)) for out in keras_out]
    forms = {  # (a list of arrays: the isolated export below)
        "dict": {"alpha": alpha, "zeta": zeta},
        "dataset": tf.data.Dataset.from_tensor_slices(((zeta, alpha), y)).batch(16),
    }
    for form, representative in forms.items():
        exported = export.to_tflite(model, quantization="int8", representative_data=representative)
        assert export.op_precision(exported.content)["int8_share"] == 1.0, form
        outs = run_tflite(exported, [zeta, alpha])
        errors = [np.abs(o - k).max() / s for o, k, s in zip(outs, keras_out, spans)]
        assert max(errors) < 0.03, (form, errors)
    # Each input calibrated on the other's scale: the file clips.
    swapped = export.to_tflite(model, quantization="int8", representative_data={
        "alpha": np.tile(zeta, (1, 2)), "zeta": alpha[:, :4]})
    errors = [np.abs(o - k).max() / s
              for o, k, s in zip(run_tflite(swapped, [zeta, alpha]), keras_out, spans)]
    assert max(errors) > 0.2, errors
    # In a child process (the calibration travels as an .npz), at batch 1.
    isolated = export.to_tflite(model, quantization="int8", representative_data=[zeta, alpha],
                                isolate=True, batch_size=1)
    report = export.verify(isolated, model, [zeta[:16], alpha[:16]])
    assert report["top1_agreement"] >= 0.9 and report["n"] == 16


def test_bad_calibration_of_two_inputs_is_named(data):
    zeta, alpha, _ = data
    model = two_in_two_out()
    with pytest.raises(ValueError, match=r"1 items where the model takes 2 inputs"):
        export.to_tflite(model, quantization="int8", representative_data=[zeta])
    with pytest.raises(ValueError, match=r"no input\(s\) \['alpha'\]"):
        export.to_tflite(model, quantization="int8", representative_data={"zeta": zeta})
    with pytest.raises(ValueError, match=r"input 'zeta' has examples of shape \(8,\)"):
        export.to_tflite(model, quantization="int8", representative_data=[alpha, zeta])
    with pytest.raises(ValueError, match="different lengths"):
        export.to_tflite(model, quantization="int8", representative_data=[zeta, alpha[:5]])


def test_verify_and_run_two_inputs_two_outputs(data):
    zeta, alpha, y = data
    model = two_in_two_out()
    exported = export.to_tflite(model)  # float: the file equals the model
    report = export.verify(exported, model, {"alpha": alpha, "zeta": zeta}, y)
    assert [o["n"] for o in report["outputs"]] == [128, 128]
    assert report["max_abs_diff"] < 1e-3 and report["top1_agreement"] == 1.0
    assert report["tflite_accuracy"] == report["keras_accuracy"]
    assert "tflite_accuracy" not in report["outputs"][1]  # labels go with the first head
    outs = run_tflite(exported, tf.data.Dataset.from_tensor_slices(((zeta, alpha), y)).batch(32))
    assert [o.shape for o in outs] == [(128, 4), (128, 2)]  # the model's output order
    np.testing.assert_allclose(outs[1], model.predict([zeta, alpha], verbose=0)[1], atol=1e-3)
    # A reference of precomputed outputs, and a file that is not this model.
    assert export.verify(exported, model.predict([zeta, alpha], verbose=0), [zeta, alpha])[
        "max_abs_diff"] < 1e-3
    with pytest.raises(ValueError, match="single-output classifier"):
        export.evaluate_tflite(exported, [zeta, alpha], y)
    other = keras.Model(model.inputs, model.outputs[0])
    with pytest.raises(ValueError, match="outputs"):
        export.verify(exported, other, [zeta, alpha])


def test_inputs_and_outputs_are_matched_by_name_not_file_order():
    # Twelve same-shape inputs: the converter's input order is not the
    # model's (it looked hash-like), so a positional mix-up would pass
    # the shape checks and give wrong numbers.
    keras.utils.set_random_seed(0)
    inputs = [keras.Input((2,), name=f"in_{i}") for i in range(12)]
    joined = keras.layers.Concatenate()(inputs)
    model = keras.Model(inputs, {"cls": keras.layers.Dense(3)(joined),
                                 "box_xy": keras.layers.Dense(3)(joined)})
    xs = [np.full((4, 2), float(i), "float32") for i in range(12)]
    exported = export.to_tflite(model)
    by_name = {f"in_{i}": x for i, x in enumerate(xs)}
    expected = keras.tree.flatten(model.predict(by_name, verbose=0))  # box_xy, cls
    for outs in (run_tflite(exported, xs),                # the export knows the model's order
                 run_tflite(exported.content, by_name)):  # bare bytes: by name only
        for out, want in zip(outs, expected):
            np.testing.assert_allclose(out, want, atol=1e-4)
    with pytest.raises(ValueError, match="give a dict by input name"):
        run_tflite(exported.content, xs)
    report = export.verify(exported.content, model, xs)  # the model names the inputs
    assert report["max_abs_diff"] < 1e-4
    assert export.verify(exported, model.predict(by_name, verbose=0), xs)["max_abs_diff"] < 1e-4


def test_dict_inputs_labels_per_output_and_a_subclassed_model(data):
    zeta, alpha, y = data
    keras.utils.set_random_seed(0)
    z, a = keras.Input((4,), name="zeta"), keras.Input((8,), name="alpha")
    x = keras.layers.Concatenate()([z, a])
    model = keras.Model({"zeta": z, "alpha": a},
                        [keras.layers.Dense(4)(x), keras.layers.Dense(2)(x)])
    exported = export.to_tflite(model)
    labels = tf.data.Dataset.from_tensor_slices(
        ({"zeta": zeta, "alpha": alpha}, (y, np.zeros((128, 2), "float32")))).batch(32)
    report = export.verify(exported, model, labels)  # the first head's labels
    assert report["max_abs_diff"] < 1e-4
    assert report["tflite_accuracy"] == report["keras_accuracy"]

    class TwoInputs(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, inputs):
            return self.dense(keras.ops.concatenate(inputs, axis=-1))

    subclassed = TwoInputs()
    subclassed([zeta[:1], alpha[:1]])
    int8 = export.to_tflite(subclassed, quantization="int8", representative_data=[zeta, alpha])
    outs = run_tflite(int8, [zeta, alpha])
    want = subclassed.predict([zeta, alpha], verbose=0)
    assert np.abs(outs - want).max() < 0.03 * np.ptp(want)


def test_labels_per_output_by_name_and_a_list_of_labels(data):
    zeta, alpha, _ = data
    model = two_in_two_out()  # outputs "cls" then "box": "box" sorts first
    exported = export.to_tflite(model)
    inputs = {"zeta": zeta, "alpha": alpha}
    y = model.predict(inputs, verbose=0)[0].argmax(-1)  # the first head's own top-1
    boxes = np.zeros((128, 2), "float32")
    by_name = tf.data.Dataset.from_tensor_slices((inputs, {"box": boxes, "cls": y})).batch(32)
    report = export.verify(exported, model, by_name)
    assert report["keras_accuracy"] == 1.0 and report["tflite_accuracy"] > 0.95
    wrong = tf.data.Dataset.from_tensor_slices((inputs, {"box": boxes, "other": y})).batch(32)
    with pytest.raises(ValueError, match="first output, 'cls'"):
        export.verify(exported, model, wrong)

    def batches():  # labels as a plain list of ints, per batch
        for start in (0, 64):
            yield ({"zeta": zeta[start:start + 64], "alpha": alpha[start:start + 64]},
                   [int(v) for v in y[start:start + 64]])

    assert export.verify(exported, model, batches)["keras_accuracy"] == 1.0
