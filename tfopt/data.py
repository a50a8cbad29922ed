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


# -- inputs in every form the entry points take -------------------------------

INPUT_FORMS = (
    "a numpy array of shape (n, *input_shape), a list of such arrays or of "
    "single examples, a tf.data.Dataset (batched or not, with or without "
    "labels as (x, y) tuples), or a function returning an iterator of lists "
    "of arrays (the TFLite converter's representative_dataset form)"
)


def _is_dataset(data):
    return hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator")


def _to_numpy(value):
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def _split_element(element, name):
    """`(x, y)` of one element: a tensor, `(x,)`, `(x, y)`, `(x, y, w)` or `[x]`."""
    if isinstance(element, dict):
        raise TypeError(
            f"{name} yields dicts (keys {sorted(element)}); tfopt takes "
            "single-input data: map the dataset to `x` or `(x, y)`."
        )
    if isinstance(element, (tuple, list)):
        if not element or len(element) > 3:
            raise ValueError(
                f"{name} yields {type(element).__name__}s of {len(element)} "
                "items; expected x, (x,), (x, y) or (x, y, sample_weight)."
            )
        x = element[0]
        y = element[1] if len(element) >= 2 else None
        return _to_numpy(x), None if y is None else _to_numpy(y)
    return _to_numpy(element), None


REBATCH_SIZE = 256


def _join(xs, ys):
    x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    if any(y is None for y in ys):
        return x, None
    return x, ys[0] if len(ys) == 1 else np.concatenate([np.asarray(y) for y in ys])


def input_batches(data, example_shape=None, max_examples=None, name="data"):
    """Yields `(x, y)` numpy batches from any input form tfopt accepts.

    One helper behind `to_tflite(representative_data=...)`, `verify`,
    `evaluate_tflite` and `Distiller.cache_teacher`: arrays are sliced,
    datasets and generator functions are streamed and stopped after
    `max_examples`, so a large pipeline is never materialised.

    Args:
        data: A numpy array `(n, *example_shape)`; a list of arrays (whole
            batches, or single examples of `example_shape`); a
            `tf.data.Dataset` yielding `x`, `(x, y)` or `(x, y, w)`, batched
            or not; or a callable returning an iterator of such elements or
            of lists of arrays (the TFLite converter's
            `representative_dataset`, whose lists hold the model's inputs).
        example_shape: The shape of one example (without batch). Needed to
            tell single examples from batches; checked against every batch.
        max_examples: Stop after this many examples (None: all).
        name: How to call `data` in error messages.

    Yields:
        `(x, y)`: `x` a numpy batch of shape `(b, *example_shape)`, `y` its
        labels or None.

    Raises:
        TypeError: If `data` is none of the accepted forms (e.g. a
            one-shot generator object, which cannot be read twice).
        ValueError: If an example does not have `example_shape`.

    Example:

    >>> x = np.zeros((10, 4), "float32")
    >>> [b.shape for b, _ in input_batches(x, (4,), max_examples=6)]
    [(6, 4)]
    """
    expected = None if example_shape is None else tuple(
        None if d is None else int(d) for d in example_shape)

    def fit(x, y, single_ok):
        if x.dtype == object:
            raise TypeError(
                f"{name} holds Python objects (dtype=object), not numbers; "
                f"give {INPUT_FORMS}.")
        if single_ok and y is not None and np.ndim(y) == 0:
            # A scalar label: one example of an unbatched (x, y) dataset.
            if expected is None or x.ndim == len(expected):
                x, y = x[None], np.asarray(y)[None]
        if expected is not None:
            if single_ok and x.ndim == len(expected):  # a single example
                x = x[None]
                y = None if y is None else np.asarray(y)[None]
            if x.ndim != len(expected) + 1 or any(
                    e is not None and e != s for e, s in zip(expected, x.shape[1:])):
                raise ValueError(
                    f"{name} has examples of shape {tuple(x.shape[1:])} "
                    f"(batch shape {tuple(x.shape)}); the model takes "
                    f"{tuple(expected)}.")
        elif x.ndim == 0:
            raise ValueError(f"{name} yields scalars; expected arrays of examples.")
        return x, y

    def limited(batches, single_ok=True):
        # Single examples (an unbatched dataset) and small batches are
        # grouped into batches of up to REBATCH_SIZE: one model call each.
        # Reading stops as soon as max_examples are in hand.
        seen, xs, ys, count = 0, [], [], 0
        for x, y in batches:
            x, y = fit(x, y, single_ok)
            if max_examples is not None:
                keep = max_examples - seen - count
                if len(x) > keep:
                    x, y = x[:keep], None if y is None else y[:keep]
            if len(x):
                xs.append(x)
                ys.append(y)
                count += len(x)
            done = max_examples is not None and seen + count >= max_examples
            if xs and (count >= REBATCH_SIZE or done):
                yield _join(xs, ys)
                seen, xs, ys, count = seen + count, [], [], 0
            if done:
                return
        if xs:
            yield _join(xs, ys)

    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{name} must be {INPUT_FORMS}; got {type(data).__name__}.")
    if _is_dataset(data):
        return limited(_split_element(e, name) for e in data.as_numpy_iterator())
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        return limited(iter([(_to_numpy(data), None)]), single_ok=False)
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{name} is empty.")
        arrays = [_to_numpy(item) for item in data]
        return limited((a, None) for a in arrays)
    if callable(data):
        def generated():
            iterator = data()
            if not hasattr(iterator, "__next__") and not hasattr(iterator, "__iter__"):
                raise TypeError(
                    f"{name} is a function, but it returned "
                    f"{type(iterator).__name__}, not an iterator of input lists.")
            for element in iterator:
                yield _split_element(element, name)

        return limited(generated())
    if hasattr(data, "__next__"):
        raise TypeError(
            f"{name} is a one-shot {type(data).__name__} (it can be read only "
            "once); pass an array, a tf.data.Dataset, or the function that "
            "creates the iterator (the TFLite converter's representative_dataset form).")
    raise TypeError(f"{name} must be {INPUT_FORMS}; got {type(data).__name__}.")


def collect_inputs(data, example_shape=None, max_examples=None, name="data"):
    """`(x, y)` numpy arrays from any input form (see `input_batches`).

    Args:
        data: As `input_batches`.
        example_shape: As `input_batches`.
        max_examples: Read at most this many examples (None: all).
        name: How to call `data` in error messages.

    Returns:
        `(x, y)`: the inputs, and the labels (None if `data` has none, or
        if only some of its elements had labels).

    Raises:
        TypeError: As `input_batches`.
        ValueError: As `input_batches`, or if `data` holds no example.

    Example:

    >>> x, y = collect_inputs([np.zeros(3), np.ones(3)], example_shape=(3,))
    >>> x.shape, y is None
    ((2, 3), True)
    """
    xs, ys = [], []
    for x, y in input_batches(data, example_shape, max_examples, name):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError(f"{name} holds no example.")
    labels = None if any(y is None for y in ys) else np.concatenate(
        [np.asarray(y) for y in ys])
    return np.concatenate(xs), labels


MULTI_INPUT_FORMS = (
    "a list or tuple of arrays in the model's input order, a dict of arrays by input "
    "name, a tf.data.Dataset yielding such an x (alone as `(x,)`, or as (x, y)), or a "
    "function returning an iterator of such elements"
)


def multi_input_batches(data, names, example_shapes, max_examples=None, name="data",
                        positional=True):
    """Yields `(xs, y)` numpy batches for a model of several inputs.

    The multi-input sibling of `input_batches`, with Keras's conventions for
    `model.predict(x)`: `x` is a list or tuple of arrays in the model's
    input order or a dict keyed by input name; a dataset element is
    `(x,)`, `(x, y)` or `(x, y, w)` (a bare dict is `x`), batched or not.

    Args:
        data: One of `MULTI_INPUT_FORMS`.
        names: The model's input names, in its input order.
        example_shapes: The shape of one example of each input (without
            batch; None for a free dimension).
        max_examples: Stop after this many examples (None: all).
        name: How to call `data` in error messages.
        positional: Whether a list or tuple of arrays may give the inputs
            by position (in `names` order); False when that order is not
            the model's (a TFLite file read alone), so only dicts are taken.

    Yields:
        `(xs, y)`: `xs` a list with one numpy batch per input, all of the
        same length, `y` the labels or None (of the first output, for
        labels given per output as a list, tuple or dict).

    Raises:
        TypeError: If `data` is none of the accepted forms.
        ValueError: If an input is missing, has examples of another shape,
            or the inputs have different numbers of examples.

    Example:

    >>> a, b = np.zeros((5, 3), "float32"), np.ones((5, 2), "float32")
    >>> [[x.shape for x in xs] for xs, _ in multi_input_batches(
    ...     [a, b], ["a", "b"], [(3,), (2,)])]
    [[(5, 3), (5, 2)]]
    """
    names = list(names)
    expected = [tuple(None if d is None else int(d) for d in shape) for shape in example_shapes]

    def arrays(x):
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(
                    f"{name} has no input(s) {missing} (keys {sorted(x)}); the model's "
                    f"inputs are {names}.")
            x = [x[n] for n in names]
        elif not positional and isinstance(x, (list, tuple)):
            raise ValueError(
                f"{name} gives the {len(names)} inputs as a {type(x).__name__}, but their "
                f"order is not known here (a TFLite file does not keep the model's input "
                f"order): give a dict by input name, keys {sorted(names)}, or pass the "
                "TFLiteExport that to_tflite returned (or the Keras model, to verify).")
        if not isinstance(x, (list, tuple)) or len(x) != len(names):
            got = f"{len(x)} items" if isinstance(x, (list, tuple)) else type(x).__name__
            raise ValueError(
                f"{name} gives {got} where the model takes {len(names)} inputs "
                f"{names}; give {MULTI_INPUT_FORMS}.")
        return [_to_numpy(item) for item in x]

    def fit(xs, y):
        # An unbatched element (every input one example) gets a batch axis.
        if all(x.ndim == len(shape) for x, shape in zip(xs, expected)):
            xs = [x[None] for x in xs]
        batched = xs
        for input_name, x, shape in zip(names, batched, expected):
            if x.dtype == object:
                raise TypeError(f"{name} input {input_name!r} holds Python objects, not numbers.")
            if x.ndim != len(shape) + 1 or any(
                    e is not None and e != s for e, s in zip(shape, x.shape[1:])):
                raise ValueError(
                    f"{name} input {input_name!r} has examples of shape {tuple(x.shape[1:])}; "
                    f"the model takes {shape}.")
        if len({len(x) for x in batched}) != 1:
            raise ValueError(
                f"{name} gives inputs of different lengths "
                f"{dict(zip(names, (len(x) for x in batched)))}.")
        if isinstance(y, (list, tuple, dict)):
            # Labels per output: the first output's (the head verify scores).
            import keras

            y = keras.tree.flatten(y)[0] if keras.tree.flatten(y) else None
        if y is not None and np.ndim(y) == 0:
            y = np.asarray(y)[None]
        return batched, y

    def split(element):
        if isinstance(element, dict):
            return element, None
        if isinstance(element, (list, tuple)) and 1 <= len(element) <= 3 and isinstance(
                element[0], (list, tuple, dict)):
            return element[0], element[1] if len(element) > 1 else None
        if isinstance(element, (list, tuple)) and len(element) == len(names):
            return element, None  # the converter's form: one list of the inputs
        raise ValueError(
            f"{name} yields {type(element).__name__} elements that are not x, (x,), (x, y) "
            f"or (x, y, w) with x one of the model's {len(names)} inputs {names}.")

    def limited(elements):
        seen = 0
        for xs, y in elements:
            xs, y = fit(arrays(xs), y)
            if max_examples is not None and seen + len(xs[0]) > max_examples:
                keep = max_examples - seen
                xs, y = [x[:keep] for x in xs], None if y is None else y[:keep]
            if len(xs[0]):
                seen += len(xs[0])
                yield xs, y
            if max_examples is not None and seen >= max_examples:
                return

    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{name} must be {MULTI_INPUT_FORMS}; got {type(data).__name__}.")
    if _is_dataset(data):
        return limited(split(e) for e in data.as_numpy_iterator())
    if isinstance(data, (dict, list, tuple)):
        return limited(iter([(data, None)]))
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        raise ValueError(
            f"{name} is one array where the model takes {len(names)} inputs {names}; "
            f"give {MULTI_INPUT_FORMS}.")
    if callable(data):
        def generated():
            iterator = data()
            if not hasattr(iterator, "__next__") and not hasattr(iterator, "__iter__"):
                raise TypeError(
                    f"{name} is a function, but it returned {type(iterator).__name__}, "
                    "not an iterator.")
            for element in iterator:
                yield split(element)

        return limited(generated())
    raise TypeError(f"{name} must be {MULTI_INPUT_FORMS}; got {type(data).__name__}.")


def collect_multi_inputs(data, names, example_shapes, max_examples=None, name="data"):
    """`(xs, y)`: every batch of `multi_input_batches` joined.

    Args:
        data, names, example_shapes, max_examples, name: As
            `multi_input_batches`.

    Returns:
        `(xs, y)`: one numpy array per input, the labels or None.

    Raises:
        TypeError, ValueError: As `multi_input_batches`, or if `data`
            holds no example.

    Example:

    >>> xs, y = collect_multi_inputs({"a": np.zeros((4, 3)), "b": np.ones((4, 2))},
    ...                              ["a", "b"], [(3,), (2,)])
    >>> [x.shape for x in xs], y is None
    ([(4, 3), (4, 2)], True)
    """
    parts, labels = [], []
    for xs, y in multi_input_batches(data, names, example_shapes, max_examples, name):
        parts.append(xs)
        labels.append(y)
    if not parts:
        raise ValueError(f"{name} holds no example.")
    xs = [np.concatenate([part[i] for part in parts]) for i in range(len(names))]
    y = None if any(label is None for label in labels) else np.concatenate(
        [np.asarray(label) for label in labels])
    return xs, y
