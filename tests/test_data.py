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
