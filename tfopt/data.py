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

MULTI_INPUT_FORMS = (
    "a list or tuple of arrays in the model's input order, a dict of arrays by input "
    "name, a tf.data.Dataset yielding such an x (alone as `(x,)`, or as (x, y)), or a "
    "function returning an iterator of such elements"
)

REBATCH_SIZE = 256


def _is_dataset(data):
    return hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator")


def _to_numpy(value):
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def model_batches(data, example_shapes, names=None, max_examples=None, name="data",
                  positional=True, outputs=None, label_key=None):
    """Yields `(xs, y)` numpy batches for a model of one or several inputs.

    The one reader behind every entry point that takes data
    (`to_tflite(representative_data=...)`, `verify`, `run_tflite`,
    `evaluate_tflite`, `Distiller.cache_teacher`, the recipe pipeline and
    the compression search). It takes what Keras's `model.predict(x)`
    takes, for the number of inputs `example_shapes` gives:

    - one input: a numpy array `(n, *shape)`; a list of arrays (whole
      batches, or single examples); a dict `{input_name: array}`;
    - several inputs: a list or tuple of arrays in the model's input order,
      or a dict of arrays by input name;
    - either: a `tf.data.Dataset` whose elements are `x`, `(x,)`, `(x, y)`
      or `(x, y, sample_weight)` with such an `x` (a bare dict is `x`),
      batched or not; or a function returning an iterator of such elements
      or of lists of the inputs (the TFLite converter's
      `representative_dataset` form). One-shot iterators are refused (they
      cannot be read twice).

    Arrays are sliced; datasets and generator functions are streamed and
    stopped after `max_examples`, so a large pipeline is never
    materialised. Single examples and small batches are grouped into
    batches of up to `REBATCH_SIZE` (one model call each).

    Args:
        data: The inputs, in one of the forms above.
        example_shapes: The shape of one example of each input, without the
            batch (None for a free dimension), in input order. For one
            input, `[None]` skips the shape check (single examples are
            then only told from batches by a scalar label).
        names: The inputs' names, in input order: they key a dict of inputs
            and name the inputs in errors. Needed for several inputs.
        max_examples: Stop after this many examples (None: all).
        name: How to call `data` in error messages.
        positional: Whether a list or tuple may give several inputs by
            position (in `names` order); False when that order is not the
            model's (a TFLite file read alone), so only dicts are taken.
        outputs: How many outputs the model has (None: unknown). With
            several, labels given as a list or tuple of that many arrays
            are per output, and the first output's are used; otherwise a
            list of labels is one array of labels.
        label_key: The first output's name: labels given per output as a
            dict use this entry (None: only a dict of one entry is taken).

    Yields:
        `(xs, y)`: `xs` a list with one numpy batch per input, all of the
        same length; `y` the labels or None (of the first output, for
        labels given per output as a list, tuple or dict; None for a batch
        in which only some elements had labels).

    Raises:
        TypeError: If `data` is none of the accepted forms (e.g. a one-shot
            generator object), or holds Python objects instead of numbers.
        ValueError: If `data` is empty, gives another number of inputs than
            `example_shapes`, misses an input name, has examples of another
            shape, gives inputs of different lengths, or labels as a dict
            without the first output's entry.

    Example:

    >>> a, b = np.zeros((5, 3), "float32"), np.ones((5, 2), "float32")
    >>> [[x.shape for x in xs] for xs, _ in model_batches(
    ...     {"b": b, "a": a}, [(3,), (2,)], names=["a", "b"])]
    [[(5, 3), (5, 2)]]
    >>> [xs[0].shape for xs, _ in model_batches(a, [(3,)], max_examples=4)]
    [(4, 3)]
    """
    expected = [None if shape is None else tuple(None if d is None else int(d) for d in shape)
                for shape in example_shapes]
    count = len(expected)
    if count < 1:
        raise ValueError("example_shapes must give at least one input's shape.")
    if names is None:
        if count > 1:
            raise ValueError("names are needed to read the data of several inputs.")
        names = [None]
    names = list(names)
    if len(names) != count:
        raise ValueError(f"{len(names)} names for {count} example_shapes.")
    forms = INPUT_FORMS if count == 1 else MULTI_INPUT_FORMS
    known = [n for n in names if n is not None]

    def from_dict(x):
        if count == 1 and names[0] not in x and len(x) != 1:
            raise TypeError(
                f"{name} yields dicts (keys {sorted(x)}) where the model takes one input"
                f"{'' if names[0] is None else ' ' + repr(names[0])}: map the dataset to "
                "`x` or `(x, y)`, or key the input by its name.")
        if count == 1:
            return [x[names[0]] if names[0] in x else next(iter(x.values()))]
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(
                f"{name} has no input(s) {missing} (keys {sorted(x)}); the model's "
                f"inputs are {names}.")
        return [x[n] for n in names]

    def arrays(x):
        """The list of one array per input of one element's `x`."""
        if isinstance(x, dict):
            return [_to_numpy(item) for item in from_dict(x)]
        if count == 1:
            return [_to_numpy(x)]
        if not positional and isinstance(x, (list, tuple)):
            raise ValueError(
                f"{name} gives the {count} inputs as a {type(x).__name__}, but their "
                f"order is not known here (a TFLite file does not keep the model's input "
                f"order): give a dict by input name, keys {sorted(known)}, or pass the "
                "TFLiteExport that to_tflite returned (or the Keras model, to verify).")
        if not isinstance(x, (list, tuple)) or len(x) != count:
            got = f"{len(x)} items" if isinstance(x, (list, tuple)) else type(x).__name__
            raise ValueError(
                f"{name} gives {got} where the model takes {count} inputs "
                f"{names}; give {forms}.")
        return [_to_numpy(item) for item in x]

    def split(element):
        """`(x, y)` of one element: `x`, `(x,)`, `(x, y)`, `(x, y, w)`, or the inputs' list."""
        if isinstance(element, dict):
            return element, None
        if not isinstance(element, (list, tuple)):
            if count > 1:
                raise ValueError(
                    f"{name} yields {type(element).__name__} elements where the model takes "
                    f"{count} inputs {names}; give {forms}.")
            return element, None
        if count > 1 and len(element) == count and not isinstance(element[0], (list, tuple, dict)):
            return element, None  # the converter's form: one list of the inputs
        if not element or len(element) > 3 or (
                count > 1 and not isinstance(element[0], (list, tuple, dict))):
            raise ValueError(
                f"{name} yields {type(element).__name__}s of {len(element)} items; expected "
                f"x, (x,), (x, y) or (x, y, sample_weight)"
                + ("." if count == 1 else f" with x the model's {count} inputs {names}."))
        return element[0], element[1] if len(element) > 1 else None

    def fit(xs, y, single_ok):
        """Checks one element's arrays; gives single examples a batch axis."""
        for input_name, x in zip(names, xs):
            if x.dtype == object:
                where = "" if count == 1 else f" input {input_name!r}"
                raise TypeError(
                    f"{name}{where} holds Python objects (dtype=object), not numbers; "
                    f"give {forms}.")
        y = first_labels(y)
        if single_ok:
            known_shapes = all(shape is not None for shape in expected)
            scalar_label = y is not None and y.ndim == 0
            if (all(x.ndim == len(shape) for x, shape in zip(xs, expected)) if known_shapes
                    else scalar_label):
                xs = [x[None] for x in xs]  # one example (an unbatched element)
                y = None if y is None else y[None]
        for input_name, x, shape in zip(names, xs, expected):
            if shape is None:
                if x.ndim == 0:
                    raise ValueError(f"{name} yields scalars; expected arrays of examples.")
                continue
            if x.ndim != len(shape) + 1 or any(
                    e is not None and e != s for e, s in zip(shape, x.shape[1:])):
                where = "" if count == 1 else f" input {input_name!r}"
                raise ValueError(
                    f"{name}{where} has examples of shape {tuple(x.shape[1:])} (batch shape "
                    f"{tuple(x.shape)}); the model takes {shape}.")
        if len({len(x) for x in xs}) != 1:
            raise ValueError(
                f"{name} gives inputs of different lengths "
                f"{dict(zip(names, (len(x) for x in xs)))}.")
        return xs, y

    def first_labels(y):
        """The labels of the first output (the head verify scores)."""
        if isinstance(y, dict):
            if label_key in y or len(y) == 1:
                return _to_numpy(y[label_key] if label_key in y else next(iter(y.values())))
            first = ("" if label_key is None else
                     f" (the first output, {label_key!r}, is not among them)")
            raise ValueError(
                f"{name} gives labels as a dict with keys {sorted(y)}{first}: which output "
                "they score is not known here; give the first output's labels as an array.")
        if (isinstance(y, (list, tuple)) and outputs is not None and outputs > 1
                and len(y) == outputs and all(np.ndim(item) >= 1 for item in y)):
            y = y[0]  # labels per output
        return None if y is None else _to_numpy(y)

    def join(group):
        xs = [group[0][0][i] if len(group) == 1 else np.concatenate([xs[i] for xs, _ in group])
              for i in range(count)]
        labels = [y for _, y in group]
        if any(y is None for y in labels):
            return xs, None
        return xs, labels[0] if len(labels) == 1 else np.concatenate(labels)

    def limited(elements, single_ok=True):
        # Single examples (an unbatched dataset) and small batches are
        # grouped into batches of up to REBATCH_SIZE: one model call each.
        # Reading stops as soon as max_examples are in hand.
        seen, group, held = 0, [], 0
        for x, y in elements:
            xs, y = fit(arrays(x), y, single_ok)
            if max_examples is not None and seen + held + len(xs[0]) > max_examples:
                keep = max_examples - seen - held
                xs, y = [a[:keep] for a in xs], None if y is None else y[:keep]
            if len(xs[0]):
                group.append((xs, y))
                held += len(xs[0])
            done = max_examples is not None and seen + held >= max_examples
            if group and (held >= REBATCH_SIZE or done):
                yield join(group)
                seen, group, held = seen + held, [], 0
            if done:
                return
        if group:
            yield join(group)

    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{name} must be {forms}; got {type(data).__name__}.")
    if _is_dataset(data):
        return limited(split(e) for e in data.as_numpy_iterator())
    if isinstance(data, dict):
        return limited(iter([(data, None)]))
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        if count > 1:
            raise ValueError(
                f"{name} is one array where the model takes {count} inputs {names}; "
                f"give {forms}.")
        return limited(iter([(data, None)]), single_ok=False)
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{name} is empty.")
        if count > 1:
            return limited(iter([(data, None)]))
        return limited((item, None) for item in data)  # batches or single examples
    if callable(data):
        def generated():
            iterator = data()
            if not hasattr(iterator, "__next__") and not hasattr(iterator, "__iter__"):
                raise TypeError(
                    f"{name} is a function, but it returned {type(iterator).__name__}, "
                    "not an iterator of input lists.")
            for element in iterator:
                yield split(element)

        return limited(generated())
    if hasattr(data, "__next__"):
        raise TypeError(
            f"{name} is a one-shot {type(data).__name__} (it can be read only "
            "once); pass an array, a tf.data.Dataset, or the function that "
            "creates the iterator (the TFLite converter's representative_dataset form).")
    raise TypeError(f"{name} must be {forms}; got {type(data).__name__}.")


def collect_model_inputs(data, example_shapes, names=None, max_examples=None, name="data",
                         positional=True, outputs=None, label_key=None):
    """`(xs, y)`: every batch of `model_batches` joined.

    Args:
        data, example_shapes, names, max_examples, name, positional,
        outputs, label_key: As `model_batches`.

    Returns:
        `(xs, y)`: one numpy array per input; the labels, or None if `data`
        has none (or only some of its elements had labels).

    Raises:
        TypeError, ValueError: As `model_batches`, or if `data` holds no
            example.

    Example:

    >>> xs, y = collect_model_inputs({"a": np.zeros((4, 3)), "b": np.ones((4, 2))},
    ...                              [(3,), (2,)], names=["a", "b"])
    >>> [x.shape for x in xs], y is None
    ([(4, 3), (4, 2)], True)
    """
    parts, labels = [], []
    for xs, y in model_batches(data, example_shapes, names, max_examples, name, positional,
                               outputs, label_key):
        parts.append(xs)
        labels.append(y)
    if not parts:
        raise ValueError(f"{name} holds no example.")
    xs = [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
    y = None if any(label is None for label in labels) else np.concatenate(labels)
    return xs, y


# -- the single- and multi-input names of the same reader (public API) --------


def input_batches(data, example_shape=None, max_examples=None, name="data"):
    """Yields `(x, y)` numpy batches for a model of one input.

    `model_batches` for one input, yielding its batch as an array (not a
    list of one).

    Args:
        data: As `model_batches` for one input: an array, a list of arrays
            (batches or single examples), a dataset or a generator function.
        example_shape: The shape of one example (without batch). Needed to
            tell single examples from batches; checked against every batch.
        max_examples: Stop after this many examples (None: all).
        name: How to call `data` in error messages.

    Yields:
        `(x, y)`: `x` a numpy batch of shape `(b, *example_shape)`, `y` its
        labels or None.

    Raises:
        TypeError, ValueError: As `model_batches`.

    Example:

    >>> x = np.zeros((10, 4), "float32")
    >>> [b.shape for b, _ in input_batches(x, (4,), max_examples=6)]
    [(6, 4)]
    """
    batches = model_batches(data, [example_shape], None, max_examples, name)
    return ((xs[0], y) for xs, y in batches)


def collect_inputs(data, example_shape=None, max_examples=None, name="data"):
    """`(x, y)` numpy arrays of a one-input model's data (see `model_batches`).

    Args:
        data, example_shape, max_examples, name: As `input_batches`.

    Returns:
        `(x, y)`: the inputs, and the labels (None if `data` has none, or
        if only some of its elements had labels).

    Raises:
        TypeError, ValueError: As `model_batches`, or if `data` holds no
            example.

    Example:

    >>> x, y = collect_inputs([np.zeros(3), np.ones(3)], example_shape=(3,))
    >>> x.shape, y is None
    ((2, 3), True)
    """
    xs, y = collect_model_inputs(data, [example_shape], None, max_examples, name)
    return xs[0], y


def multi_input_batches(data, names, example_shapes, max_examples=None, name="data",
                        positional=True):
    """`model_batches` with the names first (kept for callers of this name).

    Args:
        data, max_examples, name, positional: As `model_batches`.
        names: The model's input names, in its input order.
        example_shapes: The shape of one example of each input.

    Yields:
        `(xs, y)`: as `model_batches`.

    Raises:
        TypeError, ValueError: As `model_batches`.

    Example:

    >>> a, b = np.zeros((5, 3), "float32"), np.ones((5, 2), "float32")
    >>> [[x.shape for x in xs] for xs, _ in multi_input_batches(
    ...     [a, b], ["a", "b"], [(3,), (2,)])]
    [[(5, 3), (5, 2)]]
    """
    return model_batches(data, example_shapes, names, max_examples, name, positional)


def collect_multi_inputs(data, names, example_shapes, max_examples=None, name="data"):
    """`collect_model_inputs` with the names first (kept for callers of this name).

    Args:
        data, names, example_shapes, max_examples, name: As
            `multi_input_batches`.

    Returns:
        `(xs, y)`: one numpy array per input, the labels or None.

    Raises:
        TypeError, ValueError: As `collect_model_inputs`.

    Example:

    >>> xs, y = collect_multi_inputs({"a": np.zeros((4, 3)), "b": np.ones((4, 2))},
    ...                              ["a", "b"], [(3,), (2,)])
    >>> [x.shape for x in xs], y is None
    ([(4, 3), (4, 2)], True)
    """
    return collect_model_inputs(data, example_shapes, names, max_examples, name)
