import numpy as np
import pytest

from tfopt import data


@pytest.mark.parametrize("size", [8, 16, 28])
def test_digits_shapes_split_and_range(size):
    (x, y), (x_test, y_test) = data.load_digits(size)
    assert x.shape == (1437, size, size, 1) and x_test.shape == (360, size, size, 1)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    (x2, _), _ = data.load_digits(size)
    np.testing.assert_array_equal(x, x2)  # fixed split


def test_upsampled_digits_keep_the_image():
    (x8, _), _ = data.load_digits(8)
    (x16, _), _ = data.load_digits(16)
    pooled = x16.reshape(-1, 8, 2, 8, 2, 1).mean(axis=(2, 4))
    assert np.corrcoef(pooled.ravel(), x8.ravel())[0, 1] > 0.95


def test_synthetic_is_seeded_and_learnable_shape():
    x, y = data.synthetic_classification(100, (4, 4, 2), num_classes=3, seed=5)
    x2, y2 = data.synthetic_classification(100, (4, 4, 2), num_classes=3, seed=5)
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (100, 4, 4, 2) and set(np.unique(y)) <= {0, 1, 2}


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size=12"):
        data.load_digits(12)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(8, test_fraction=1.5)
    with pytest.raises(ValueError, match="num_samples"):
        data.synthetic_classification(0)


# -- model_batches: one reader for one input or several -----------------------


def _read(data_, shapes, names=None, **kwargs):
    return list(data.model_batches(data_, shapes, names, **kwargs))


def test_model_batches_reads_every_predict_form_alike():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 3)).astype("float32"), rng.normal(size=(40, 2)).astype("float32")
    y, w = np.arange(40), np.ones(40, "float32")
    shapes, names = [(3,), (2,)], ["a", "b"]
    forms = {
        "list": [a, b],
        "dict": {"b": b, "a": a},
        "dataset (x, y, w)": tf.data.Dataset.from_tensor_slices(((a, b), y, w)).batch(7),
        "unbatched dict dataset": tf.data.Dataset.from_tensor_slices({"a": a, "b": b}),
        "generator of input lists": lambda: iter([[a[i:i + 8], b[i:i + 8]] for i in range(0, 40, 8)]),
    }
    for form, value in forms.items():
        xs, labels = data.collect_model_inputs(value, shapes, names)
        np.testing.assert_array_equal(xs[0], a, err_msg=form)
        np.testing.assert_array_equal(xs[1], b, err_msg=form)
        assert (labels is not None) == ("(x, y, w)" in form), form
    # Small batches and single examples are regrouped (one model call each);
    # reading stops at max_examples.
    assert [len(xs[0]) for xs, _ in _read(forms["unbatched dict dataset"], shapes, names)] == [40]
    assert [len(xs[0]) for xs, _ in _read(forms["dataset (x, y, w)"], shapes, names,
                                          max_examples=10)] == [10]
    # One input: the same function; a dict by the input's name works too.
    (single,) = _read({"a": a}, [(3,)], ["a"])
    np.testing.assert_array_equal(single[0][0], a)
    x_one, _ = data.collect_inputs(tf.data.Dataset.from_tensor_slices((a, y)), (3,), 5)
    assert x_one.shape == (5, 3)
    # The kept names are the same reader.
    legacy = [xs for xs, _ in data.multi_input_batches([a, b], names, shapes)]
    assert [x.shape for x in legacy[0]] == [(40, 3), (40, 2)]


def test_model_batches_names_what_is_wrong():
    a, b = np.zeros((4, 3), "float32"), np.zeros((4, 2), "float32")
    shapes, names = [(3,), (2,)], ["a", "b"]
    with pytest.raises(ValueError, match=r"1 items where the model takes 2 inputs \['a', 'b'\]"):
        _read([a], shapes, names)
    with pytest.raises(ValueError, match=r"no input\(s\) \['b'\] \(keys \['a', 'c'\]\)"):
        _read({"a": a, "c": b}, shapes, names)
    with pytest.raises(ValueError, match=r"different lengths \{'a': 4, 'b': 3\}"):
        _read([a, b[:3]], shapes, names)
    with pytest.raises(ValueError, match=r"input 'b' has examples of shape \(3,\)"):
        _read([a, a], shapes, names)
    with pytest.raises(ValueError, match="one array where the model takes 2 inputs"):
        _read(a, shapes, names)
    with pytest.raises(ValueError, match="give a dict by input name"):
        _read([a, b], shapes, names, positional=False)
    with pytest.raises(TypeError, match="one-shot generator"):
        _read((x for x in [a]), [(3,)])
    with pytest.raises(TypeError, match=r"yields dicts \(keys \['image', 'label'\]\)"):
        _read(lambda: iter([{"image": a, "label": a}]), [(3,)], ["x"])
    with pytest.raises(ValueError, match="names are needed"):
        _read([a, b], shapes)
