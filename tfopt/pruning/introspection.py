"""What magnitude pruning would do to a model, asked before wrapping it.

Public helpers for tools built on tfopt (the benchmark suites, the
compression search, your own scripts): which weights `prune_low_magnitude`
would mask, and which layers fit a block or N:M pattern (and why the others
do not). They read the same table (`PRUNE_TABLE`) and the same shape rules
as the wrapper, so an answer here is what wrapping would do.
"""

import dataclasses

import keras

from tfopt.pruning import api as _api
from tfopt.pruning import masks as _masks
from tfopt.pruning import params as _params
from tfopt.pruning import registry as _registry

_NOT_PRUNABLE = "tfopt cannot prune it (not in PRUNE_TABLE, no get_prunable_weights())"


@dataclasses.dataclass(frozen=True)
class LayerFit:
    """Whether one layer fits a pruning pattern.

    Attributes:
        layer: The Keras layer.
        weights: The variables pruning would mask (empty when none).
        fits: True when the layer would be pruned with the pattern.
        reason: Why not, when `fits` is False (None otherwise).
    """

    layer: object
    weights: tuple
    fits: bool
    reason: str | None = None

    @property
    def name(self):
        """The layer's name (what `prune_low_magnitude(layers=...)` takes)."""
        return self.layer.name


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{what} takes a keras.Model, got {type(model).__name__}; pass the "
            "whole model (nested models are entered).")


def _layer_weights(layer):
    """`(weights or None, reason)`: None when tfopt cannot prune the layer."""
    try:
        weights = _registry.prunable_weights(layer)
    except ValueError as error:  # a table entry that does not fit this layer
        return None, str(error)
    if weights is None:
        return None, _NOT_PRUNABLE
    return tuple(weights), None


def prunable_weights(model):
    """The weights magnitude pruning would mask, layer by layer.

    Nested models are entered (their layers are listed, not the nested
    model itself), as `prune_low_magnitude` sees them. Layers that pass
    through unpruned (no matrix weights, e.g. BatchNormalization) and layers
    tfopt cannot prune are left out; `pattern_support` lists those with the
    reason.

    Args:
        model: A built `keras.Model` (Sequential, Functional, nested).

    Returns:
        A list of `(layer, [variables])` pairs in layer order.

    Raises:
        TypeError: If `model` is not a `keras.Model`.

    Example:

    ```python
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    [(layer.name, [w.shape for w in weights])
     for layer, weights in tfopt.pruning.prunable_weights(model)]
    # [('dense', [(8, 4)])]
    ```
    """
    _check_model(model, "prunable_weights")
    found = []
    for layer in _api.iter_layers(model):
        if isinstance(layer, keras.Model):
            continue
        weights, _ = _layer_weights(layer)
        if weights:
            found.append((layer, list(weights)))
    return found


def validate_pattern(block_size=None, sparsity_m_by_n=None):
    """Checks a block / N:M pattern's form before any model is at hand.

    Args:
        block_size: `(rows, cols)` of positive ints, or None.
        sparsity_m_by_n: `(m, n)` ints with `0 < m < n`, or None.

    Returns:
        `(block_size, sparsity_m_by_n)` as tuples (or None).

    Raises:
        ValueError: If either is malformed.

    Example:

    >>> validate_pattern((1, 4), None)
    ((1, 4), None)
    """
    return (None if block_size is None else _params.validate_block_size(block_size),
            _params.validate_m_by_n(sparsity_m_by_n))


def _misfit(layer, weights, block_size, m_by_n):
    """Why `layer` cannot take the pattern, or None when it can."""
    if m_by_n is not None:
        if not _registry.supports_m_by_n(layer):
            return (f"sparsity_m_by_n applies to Dense, Conv1D/2D/3D and RNN kernels; "
                    f"{type(layer).__name__} is not one")
        group = m_by_n[1]
        for weight in weights:
            shape = tuple(weight.shape)
            if len(shape) < 2 or shape[-2] % group:
                return (f"{weight.name} has shape {shape}: its input-channel axis (-2) "
                        f"is not divisible by {group}")
    if block_size is not None and tuple(block_size) != (1, 1):
        for weight in weights:
            try:
                _masks.check_block_size(weight.shape, block_size, weight.name)
            except ValueError as error:
                return str(error).split(". ")[0]
    return None


def pattern_support(model, block_size=None, sparsity_m_by_n=None):
    """Which layers of `model` a pruning pattern applies to, and why not the others.

    Every layer holding weights is listed (nested models entered): those
    `prune_low_magnitude(model, block_size=..., sparsity_m_by_n=...)` would
    prune with the pattern have `fits=True`; the others carry the reason
    (no prunable weights, a layer tfopt cannot prune, a kernel the block
    does not tile, an input-channel axis not divisible by N, a layer type
    N:M does not apply to). With neither pattern the answer is plain
    magnitude pruning. Pass the fitting names as `layers=` to prune only
    those.

    Args:
        model: A built `keras.Model`.
        block_size: `(rows, cols)` of a block pattern, or None.
        sparsity_m_by_n: `(m, n)` of an N:M pattern (e.g. `(2, 4)`), or None.

    Returns:
        A list of `LayerFit` (`layer`, `weights`, `fits`, `reason`, `name`)
        in layer order.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If `block_size` or `sparsity_m_by_n` is malformed.

    Example:

    ```python
    fits = tfopt.pruning.pattern_support(model, sparsity_m_by_n=(2, 4))
    names = [f.name for f in fits if f.fits]
    for f in fits:
        if not f.fits:
            print(f.name, f.reason)
    pruned = tfopt.pruning.prune_low_magnitude(
        model, sparsity_m_by_n=(2, 4), layers=names,
        pruning_schedule=tfopt.pruning.ConstantSparsity(0.5, 0))
    ```
    """
    _check_model(model, "pattern_support")
    block_size, sparsity_m_by_n = validate_pattern(block_size, sparsity_m_by_n)
    rows = []
    for layer in _api.iter_layers(model):
        if isinstance(layer, keras.Model) or not layer.weights:
            continue
        weights, reason = _layer_weights(layer)
        if weights is None:
            rows.append(LayerFit(layer, (), False, reason))
        elif not weights:
            rows.append(LayerFit(layer, (), False, "no prunable weights (passes through)"))
        else:
            reason = _misfit(layer, weights, block_size, sparsity_m_by_n)
            rows.append(LayerFit(layer, weights, reason is None, reason))
    return rows


def count_prunable(model):
    """The number of weight elements magnitude pruning would mask.

    Args:
        model: A built `keras.Model`.

    Returns:
        An int: the sum of the sizes of `prunable_weights(model)`.

    Raises:
        TypeError: If `model` is not a `keras.Model`.

    Example:

    ```python
    tfopt.pruning.count_prunable(model)  # e.g. 6464 for Dense(8->64->100)
    ```
    """
    total = 0
    for _, weights in prunable_weights(model):
        for weight in weights:
            size = 1
            for dim in weight.shape:
                size *= int(dim)
            total += size
    return total
