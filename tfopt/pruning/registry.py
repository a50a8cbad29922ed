"""Which weights of which layer magnitude pruning masks: `PRUNE_TABLE`.

One table decides what `prune_low_magnitude` does with each layer type:
`PRUNE_TABLE` maps a Keras layer class to a `PruneRule` (the attribute
paths of the weights to prune, whether N:M sparsity applies, and what
tfmot 0.8.1 does with the same layer, for the README). A layer is looked up
by its class's MRO, so a subclass of `Dense` is pruned like `Dense`.
Supporting a new layer type is one entry here (plus one test).

Layers without an entry are resolved by rule: a layer defining
`get_prunable_weights()` (the `PrunableLayer` protocol) always wins; a
layer without weights, or whose weights are all scale/shift vectors (rank
0 or 1, e.g. a custom LayerScale), passes through unpruned; a custom layer
whose matrix weights all belong to layers it holds (a block of Dense,
LayerNormalization, ...) prunes those layers' weights by the table; anything
else is unknown (`prunable_weights` returns None and `prune_low_magnitude`
raises a clear error naming the layer and the way out).
"""

from typing import NamedTuple

import keras
from keras import layers

from tfopt import _compat


class PruneRule(NamedTuple):
    """What magnitude pruning does with one layer type.

    Attributes:
        weights: Attribute paths (from the layer) of the variables to prune,
            e.g. `("kernel",)` or `("cell.kernel", "cell.recurrent_kernel")`;
            empty for a layer that passes through unpruned.
        inner: Attribute names of wrapped sub-layers whose own prunable
            weights are pruned too (e.g. `("layer",)` for TimeDistributed).
        m_by_n: Whether N:M sparsity applies (kernels whose axis -2 is the
            input channel a dot product reduces over).
        tfmot: What tfmot 0.8.1 (`prune_registry.py`) does with this layer.
    """

    weights: tuple = ()
    inner: tuple = ()
    m_by_n: bool = False
    tfmot: str = ""


_PASS = "pass through (not pruned)"
_TFMOT_ERROR = "unsupported (ValueError)"
_TFMOT_PASS = "supported, not pruned"


def _rule(weights=(), inner=(), m_by_n=False, tfmot=_TFMOT_ERROR):
    return PruneRule(tuple(weights), tuple(inner), m_by_n, tfmot)


# Layer class -> PruneRule. Resolution walks the class's MRO, so the first
# entry met wins for subclasses. The order here is the README's order.
PRUNE_TABLE = {
    layers.Dense: _rule(["kernel"], m_by_n=True, tfmot="kernel"),
    layers.EinsumDense: _rule(["kernel"]),
    layers.Conv1D: _rule(["kernel"], m_by_n=True, tfmot="kernel"),
    layers.Conv2D: _rule(["kernel"], m_by_n=True, tfmot="kernel"),
    layers.Conv3D: _rule(["kernel"], m_by_n=True, tfmot="kernel"),
    layers.Conv1DTranspose: _rule(["kernel"]),
    layers.Conv2DTranspose: _rule(["kernel"], tfmot="kernel"),
    layers.Conv3DTranspose: _rule(["kernel"], tfmot="kernel"),
    layers.DepthwiseConv1D: _rule(["kernel"]),
    layers.DepthwiseConv2D: _rule(["kernel"], tfmot=_TFMOT_PASS),
    layers.SeparableConv1D: _rule(["depthwise_kernel", "pointwise_kernel"],
                                  tfmot="pointwise_kernel only"),
    layers.SeparableConv2D: _rule(["depthwise_kernel", "pointwise_kernel"],
                                  tfmot="pointwise_kernel only"),
    layers.Embedding: _rule(["embeddings"], tfmot="embeddings"),
    layers.SimpleRNN: _rule(["cell.kernel", "cell.recurrent_kernel"], m_by_n=True,
                            tfmot="kernel, recurrent_kernel"),
    layers.LSTM: _rule(["cell.kernel", "cell.recurrent_kernel"], m_by_n=True,
                       tfmot="kernel, recurrent_kernel"),
    layers.GRU: _rule(["cell.kernel", "cell.recurrent_kernel"], m_by_n=True,
                      tfmot="kernel, recurrent_kernel"),
    layers.ConvLSTM1D: _rule(["cell.kernel", "cell.recurrent_kernel"]),
    layers.ConvLSTM2D: _rule(["cell.kernel", "cell.recurrent_kernel"]),
    layers.ConvLSTM3D: _rule(["cell.kernel", "cell.recurrent_kernel"]),
    layers.SimpleRNNCell: _rule(["kernel", "recurrent_kernel"], tfmot="kernel, recurrent_kernel"),
    layers.LSTMCell: _rule(["kernel", "recurrent_kernel"], tfmot="kernel, recurrent_kernel"),
    layers.GRUCell: _rule(["kernel", "recurrent_kernel"], tfmot="kernel, recurrent_kernel"),
    layers.RNN: _rule(inner=["cell"], tfmot="its cell's weights if the cell is listed"),
    layers.MultiHeadAttention: _rule(
        ["query_dense.kernel", "key_dense.kernel", "value_dense.kernel", "output_dense.kernel"],
        tfmot="query/key/value/output kernels"),
    layers.TimeDistributed: _rule(inner=["layer"]),
    layers.Bidirectional: _rule(inner=["forward_layer", "backward_layer"]),
    # Scale/shift-only layers: their weights are per-channel vectors (or
    # statistics); pruning them would zero whole channels, so they pass
    # through and keep training.
    layers.BatchNormalization: _rule(tfmot=_TFMOT_PASS),
    layers.LayerNormalization: _rule(tfmot=_TFMOT_PASS),
    layers.GroupNormalization: _rule(),
    layers.RMSNormalization: _rule(),
    layers.UnitNormalization: _rule(),
    layers.Normalization: _rule(),
    layers.Rescaling: _rule(tfmot="unsupported (ValueError; its registry entry is broken)"),
    layers.PReLU: _rule(),
}
_LAYER_SCALE = _compat.keras_layer_scale_class()
if _LAYER_SCALE is not None:
    PRUNE_TABLE[_LAYER_SCALE] = _rule()


class PrunableLayer:
    """Protocol for custom layers: say which weights to prune.

    A layer is prunable by tfopt if it defines `get_prunable_weights()`
    returning a list of its own `keras.Variable`s (usually kernels, never
    biases). Subclassing this class is optional; the method is what counts,
    and it wins over `PRUNE_TABLE`.

    Example:

    ```python
    class MyDense(keras.layers.Layer, tfopt.pruning.PrunableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 4))
        def call(self, x):
            return x @ self.w
        def get_prunable_weights(self):
            return [self.w]
    ```
    """

    def get_prunable_weights(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_prunable_weights()."
        )


def rule_for(layer):
    """The `PruneRule` of `layer`'s class (first match along its MRO), or None.

    Args:
        layer: A Keras layer (or a layer class).

    Returns:
        A `PruneRule`, or None when no class of the MRO is in `PRUNE_TABLE`.
    """
    cls = layer if isinstance(layer, type) else type(layer)
    for base in cls.__mro__:
        rule = PRUNE_TABLE.get(base)
        if rule is not None:
            return rule
    return None


def prunable_weights(layer):
    """The variables of a built `layer` that pruning masks.

    Order of decision: the layer's `get_prunable_weights()` (the
    `PrunableLayer` protocol), then `PRUNE_TABLE` (by MRO), then: no
    weights or only rank-0/1 weights (scale/shift vectors) -> nothing to
    prune; a custom layer whose matrix weights all belong to the layers it
    holds -> their prunable weights; anything else -> None (unknown).

    Args:
        layer: A built Keras layer.

    Returns:
        A list of variables (empty for a layer that passes through
        unpruned), or None when the layer holds weights tfopt does not know
        how to prune.

    Raises:
        ValueError: If `get_prunable_weights()` returns foreign variables,
            or a table entry's weight is missing or not a variable of the
            layer (e.g. a LoRA-enabled or quantized layer), naming the layer.

    Example:

    ```python
    prunable_weights(keras.layers.Dense(4))  # after build: [kernel]
    ```
    """
    custom = getattr(layer, "get_prunable_weights", None)
    if callable(custom):
        weights = list(custom())
        _check_own(layer, weights, f"{layer.name}.get_prunable_weights() returned a weight")
        return weights
    rule = rule_for(layer)
    if rule is not None:
        weights = []
        for path in rule.weights:
            weight = _resolve(layer, path)
            _check_own(layer, [weight], f"Layer {layer.name!r} ({type(layer).__name__}): "
                                        f"its {path!r} is",
                       " (a LoRA-enabled or quantized layer computes it)")
            weights.append(weight)
        for name in rule.inner:
            sub = getattr(layer, name, None)
            if sub is None:
                continue
            inner = prunable_weights(sub)
            if inner is None:
                return None
            weights.extend(inner)
        return weights
    if all(len(w.shape) <= 1 for w in layer.weights):
        return []  # weightless, or scale/shift vectors only
    return _from_sublayers(layer)


def _from_sublayers(layer):
    # A custom layer built from known layers (e.g. a transformer block that
    # holds Dense and LayerNormalization layers): their prunable weights.
    if isinstance(layer, keras.Model):
        return None  # nested models are entered by the API, not wrapped whole
    subs = _compat.sublayers(layer)
    if not subs:
        return None
    held = {id(w) for sub in subs for w in sub.weights}
    if any(len(w.shape) > 1 and id(w) not in held for w in layer.weights):
        return None  # a matrix of its own: unknown
    weights = []
    for sub in subs:
        try:
            found = prunable_weights(sub)
        except ValueError:
            return None
        if found is None:
            return None
        weights.extend(found)
    return weights


def _resolve(layer, path):
    value = layer
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no {path!r}, "
                "which tfopt prunes for this layer type (is it built?). Define "
                "get_prunable_weights() on it (tfopt.pruning.PrunableLayer) or "
                "leave it out with layers=[...] / skip_unsupported=True."
            )
    return value


def _check_own(layer, weights, what, why=""):
    own = {id(v) for v in layer.weights}
    for weight in weights:
        if id(weight) not in own:
            label = getattr(weight, "path", None)
            raise ValueError(
                f"{what}{' ' + repr(label) + ',' if label else ''} not one of the "
                f"layer's own variables{why}. Define get_prunable_weights() returning variables "
                "of the layer, or leave it out with layers=[...] / skip_unsupported=True."
            )


def supports_m_by_n(layer):
    """Whether N:M sparsity applies to `layer` (`PruneRule.m_by_n`).

    Args:
        layer: A Keras layer.

    Returns:
        True for Dense, Conv1D/2D/3D and SimpleRNN/LSTM/GRU (and their
        subclasses), whose kernels' axis -2 is the input channel.
    """
    rule = rule_for(layer)
    return bool(rule and rule.m_by_n)


def is_supported(layer):
    """Whether tfopt can wrap `layer` (built) for pruning."""
    return isinstance(layer, keras.Model) or prunable_weights(layer) is not None


def describe_table():
    """The pruning table as README rows, one per layer type (plus the rules).

    Returns:
        A list of `(layer_type_name, what_tfopt_does, tfmot_0_8_1)` string
        triples: `PRUNE_TABLE` in order, then the rules for layers not in it.

    Example:

    ```python
    for layer_type, tfopt_does, tfmot_does in describe_table():
        print(layer_type, tfopt_does, tfmot_does)
    ```
    """
    rows = []
    for cls, rule in PRUNE_TABLE.items():
        parts = []
        if rule.weights:
            parts.append(", ".join(path.rsplit(".", 1)[-1] if path.startswith("cell.") else path
                                   for path in rule.weights))
        if rule.inner:
            parts.append("the prunable weights of the wrapped " + " and ".join(rule.inner))
        what = "prunes " + "; ".join(parts) if parts else _PASS
        if rule.m_by_n:
            what += " (N:M allowed)"
        name = cls.__name__
        if cls is _LAYER_SCALE:
            name = "LayerScale (keras.applications ConvNeXt)"
        rows.append((name, what, rule.tfmot))
    rows += [
        ("layer with `get_prunable_weights()`", "prunes the weights it returns",
         "same (PrunableLayer)"),
        ("other layer with only vector weights (rank <= 1, e.g. a custom LayerScale)",
         _PASS, _TFMOT_ERROR),
        ("other layer without weights (activations, pooling, reshapes, merges, ...)",
         _PASS, "pass through if listed in its registry, else unsupported"),
        ("other layer built from layers of this table (a custom block holding Dense, "
         "LayerNormalization, ... as attributes)", "prunes its sub-layers' weights by this table",
         _TFMOT_ERROR),
        ("other layer with matrix weights", "clear ValueError naming the layer (way out: "
         "`skip_unsupported=True`, `layers=[...]` or `get_prunable_weights()`)",
         _TFMOT_ERROR),
        ("raw `keras.ops` node (`x + 3`, `ops.mean`, ...)", _PASS,
         "unsupported: tf_keras makes it a TFOpLambda layer, not in its registry (ValueError)"),
        ("nested Sequential/Functional model", "entered: its layers are pruned by this table",
         "entered (cloned recursively)"),
    ]
    return rows
