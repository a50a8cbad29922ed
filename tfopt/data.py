"""Embedded datasets used by examples, benchmarks and tests.

Nothing here downloads anything: the digits come from scikit-learn's
bundled copy of the UCI optical digits (1,797 8x8 images), and the
synthetic data is generated from a seed.
"""

import numpy as np

DIGITS_SIZES = (8, 16, 28)


def load_digits(image_size=8, test_fraction=0.2, seed=0):
    """Loads the scikit-learn digits as channels-last float32 images.

    The split is fixed by `seed` and stratified by class, so every caller
    with the same arguments gets the same train and test sets.

    Args:
        image_size: Side of the square images: 8 (native), 16 or 28
            (bilinear upsampling of the native 8x8 images).
        test_fraction: Fraction of the 1,797 images held out for testing.
        seed: Seed of the train/test split.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: images of shape
        `(n, image_size, image_size, 1)` scaled to [0, 1], labels as int32
        class indices 0-9.

    Raises:
        ValueError: If `image_size` is not one of 8, 16, 28, or
            `test_fraction` is not in (0, 1).

    Example:

    >>> (x, y), (x_test, y_test) = load_digits(image_size=16)
    >>> x.shape[1:]
    (16, 16, 1)
    """
    if image_size not in DIGITS_SIZES:
        raise ValueError(
            f"image_size={image_size!r} is not supported; use one of "
            f"{DIGITS_SIZES}."
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"test_fraction={test_fraction!r} must be in (0, 1)."
        )
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    if image_size != 8:
        images = _resize(images, image_size)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=test_fraction,
        random_state=seed,
        stratify=labels,
    )
    return (x_train, y_train), (x_test, y_test)


def _resize(images, size):
    # Bilinear resize in numpy (separable interpolation), so loading the
    # data does not need TensorFlow and gives identical bytes everywhere.
    src = images.shape[1]
    coords = (np.arange(size) + 0.5) * src / size - 0.5
    coords = np.clip(coords, 0, src - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, src - 1)
    frac = (coords - low).astype("float32")
    rows = (
        images[:, low, :, :] * (1 - frac)[None, :, None, None]
        + images[:, high, :, :] * frac[None, :, None, None]
    )
    out = (
        rows[:, :, low, :] * (1 - frac)[None, None, :, None]
        + rows[:, :, high, :] * frac[None, None, :, None]
    )
    return out.astype("float32")


def synthetic_classification(
    num_samples=512, input_shape=(16,), num_classes=4, seed=0
):
    """Generates a learnable synthetic classification problem.

    Each class is a Gaussian blob around its own random centre, so a small
    model reaches high accuracy in a few epochs.

    Args:
        num_samples: Number of examples.
        input_shape: Shape of one example (any rank).
        num_classes: Number of classes.
        seed: Seed of the generator.

    Returns:
        `(x, y)`: float32 inputs of shape `(num_samples, *input_shape)` and
        int32 labels in `[0, num_classes)`.

    Raises:
        ValueError: If `num_samples` or `num_classes` is smaller than 1.

    Example:

    >>> x, y = synthetic_classification(64, (8, 8, 1), num_classes=3)
    >>> x.shape, int(y.max()) < 3
    ((64, 8, 8, 1), True)
    """
    if num_samples < 1 or num_classes < 1:
        raise ValueError(
            f"num_samples={num_samples!r} and num_classes={num_classes!r} "
            "must both be >= 1."
        )
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=num_samples).astype("int32")
    noise = 0.5 * rng.normal(size=(num_samples, *input_shape))
    x = (centres[y] + noise).astype("float32")
    return x, y
