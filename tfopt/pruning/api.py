"""Wrap a model for pruning, strip the wrappers, report sparsity."""

import warnings

import keras
import numpy as np

from tfopt import _compat
from tfopt.graph import check_graph_model
from tfopt.graph import clone_with
from tfopt.pruning.params import PruningParams
from tfopt.pruning.registry import prunable_weights
from tfopt.pruning.wrapper import PruneLowMagnitude


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    sparsity_m_by_n=None,
    scope="layer",
    layers=None,
    skip_unsupported=False,
):
    """Wraps a layer, a list of layers or a model for magnitude pruning.

    A model (Sequential or Functional, nested models included) is cloned:
    every prunable layer is wrapped in `PruneLowMagnitude`, every other layer
    is copied with its weights, and the original model is left untouched.
    A layer or list of layers is wrapped in place, for use while building a
    model (this is also the path for subclassed models: wrap the layers in
    `__init__`). Train the result with the `UpdatePruningStep` callback.

    Args:
        to_prune: A `keras.layers.Layer`, a list of layers, or a built
            Sequential/Functional `keras.Model`.
        pruning_schedule: A `PruningSchedule`; default
            `ConstantSparsity(0.5, begin_step=0)`.
        block_size: `(rows, cols)` blocks pruned together (2-D view of each
            weight, all axes but the last flattened). Default `(1, 1)`.
        block_pooling_type: `"AVG"` or `"MAX"`: how a block's magnitude is
            pooled.
        sparsity_m_by_n: `None` or `(m, n)`: at least `m` zeros in every `n`
            consecutive input-channel weights, e.g. `(2, 4)`.
        scope: `"layer"` (every weight reaches the target sparsity) or
            `"global"` (one magnitude threshold across all pruned weights, so
            the model's total sparsity hits the target while layers differ).
        layers: For a model, the names of the layers to prune (layers inside
            nested models included; a nested model's name selects all its
            layers); default all prunable layers.
        skip_unsupported: For a model, leave weighted layers that tfopt cannot
            prune unwrapped (with a warning) instead of raising.

    Returns:
        The wrapped layer, list of wrapped layers, or a new wrapped model.

    Raises:
        ValueError: On an invalid argument, an unbuilt model, a model that is
            already wrapped, an unknown layer name, or an unsupported layer.
        TypeError: If `to_prune` is not a layer, list of layers or model, or
            is a subclassed model.

    Example:

    ```python
    schedule = tfopt.pruning.PolynomialDecay(0.0, 0.8, 0, 1000, frequency=1)
    pruned = tfopt.pruning.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, callbacks=[tfopt.pruning.UpdatePruningStep()])
    final = tfopt.pruning.strip_pruning(pruned)
    ```
    """
    # Validated once, before any cloning; the wrappers take these values.
    options = PruningParams(pruning_schedule, block_size, block_pooling_type,
                            sparsity_m_by_n, scope)
    if isinstance(to_prune, (list, tuple)):
        return [_wrap_layer(layer, options) for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        return _wrap_model(to_prune, options, layers, skip_unsupported)
    if isinstance(to_prune, keras.layers.Layer):
        return _wrap_layer(to_prune, options)
    raise TypeError(
        "prune_low_magnitude takes a keras Layer, a list of layers or a "
        f"Sequential/Functional keras.Model, got {type(to_prune).__name__}."
    )


def strip_pruning(model):
    """Returns a plain Keras model with the masks baked into the weights.

    The result has the original architecture (no wrappers, no mask
    variables); pruned weights are exact zeros, and its outputs equal the
    wrapped model's in inference. A model from `prune_channels_gradually`
    (structured pruning) is also shrunk: its masked channels are removed by
    `strip_channels`, so the result is narrower than the original.

    Args:
        model: A Sequential or Functional model returned by
            `prune_low_magnitude` or `prune_channels_gradually` (possibly
            trained and reloaded).

    Returns:
        A new `keras.Model`.

    Raises:
        TypeError: If `model` is not a Sequential/Functional model (for a
            subclassed model, export the wrapped model directly: in inference
            the wrapper is a constant mask that the converter folds).

    Example:

    ```python
    final = tfopt.pruning.strip_pruning(pruned)
    final.save("pruned.keras")
    ```
    """
    _check_graph_model(model, "strip_pruning")
    from tfopt.pruning.channel_mask import has_channel_masks
    from tfopt.pruning.channel_strip import strip_channels

    _warn_if_never_pruned(model)

    if has_channel_masks(model) and not pruning_wrappers(model):
        return strip_channels(model)

    def clone(layer):
        if isinstance(layer, PruneLowMagnitude):
            inner = layer.layer
            new = inner.__class__.from_config(inner.get_config())
            masked = dict(zip(map(id, layer.prunable_weights), _masked_values(layer)))
            values = [masked.get(id(w), w.numpy()) for w in inner.weights]
            return new, values
        if not isinstance(layer, keras.layers.Layer):
            return layer, None  # a raw keras.ops node: stateless, reused as is
        return layer.__class__.from_config(layer.get_config()), layer.get_weights()

    stripped = _clone(model, clone)
    if has_channel_masks(stripped):
        # Structured masks too: remove the masked channels for real.
        return strip_channels(stripped)
    return stripped


def _warn_if_never_pruned(model):
    """Warns when every mask is still all ones (the wrapper never pruned)."""
    wrappers = [w for w in pruning_wrappers(model) if w.prunable_weights]
    if not wrappers or any(
            np.any(m.numpy() == 0) for w in wrappers for m in w.masks):
        return
    steps = sorted({int(w.pruning_step.numpy()) for w in wrappers})
    warnings.warn(
        f"strip_pruning: no weight of {model.name!r} is pruned (every mask is "
        f"all ones, pruning step {steps[-1]}), so the result has 0% sparsity. "
        "Train the wrapped model with `fit(..., callbacks="
        "[tfopt.pruning.UpdatePruningStep()])` past the schedule's begin_step "
        "before stripping.",
        stacklevel=3,
    )


def sparsity_report(model):
    """Per-layer and total sparsity of the prunable weights of a model.

    Works on wrapped models (the effective, masked weights are counted) and
    on plain models (exact zeros in the weights that tfopt would prune).

    Args:
        model: A Keras model.

    Returns:
        A dict: `{"layers": [{"layer", "weight", "size", "zeros",
        "sparsity"}...], "total": {"size", "zeros", "sparsity"}}`.

    Example:

    ```python
    report = tfopt.pruning.sparsity_report(final)
    print(report["total"]["sparsity"])
    ```
    """
    rows = []
    for layer in iter_layers(model):
        name = layer.name
        if isinstance(layer, PruneLowMagnitude):
            name = layer.layer.name  # the same row before and after stripping
            pairs = zip(layer.prunable_weights, _masked_values(layer))
        else:
            try:
                weights = prunable_weights(layer) if layer.built else None
            except ValueError:  # e.g. a LoRA-enabled layer: nothing tfopt prunes
                weights = None
            pairs = [(w, w.numpy()) for w in weights or []]
        for weight, value in pairs:
            zeros = int(np.count_nonzero(value == 0))
            rows.append(
                {
                    "layer": name,
                    "weight": _weight_label(layer, weight),
                    "size": int(value.size),
                    "zeros": zeros,
                    "sparsity": zeros / value.size,
                }
            )
    size = sum(r["size"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    total = {"size": size, "zeros": zeros, "sparsity": zeros / size if size else 0.0}
    return {"layers": rows, "total": total}


def _weight_label(layer, weight):
    # The weight's path below its layer: "kernel", or "query/kernel" for the
    # four kernels of a MultiHeadAttention, which share the name "kernel".
    inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
    prefix = inner.path + "/"
    return weight.path[len(prefix):] if weight.path.startswith(prefix) else weight.name


def iter_layers(model):
    """Yields every layer of `model`, descending into nested models."""
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)


def pruning_wrappers(model):
    """The `PruneLowMagnitude` layers of a model, nested models included."""
    return [l for l in iter_layers(model) if isinstance(l, PruneLowMagnitude)]


def _masked_values(wrapper):
    return [
        np.asarray(w.numpy() * m.numpy(), dtype=w.dtype)
        for w, m in zip(wrapper.prunable_weights, wrapper.masks)
    ]


def _wrap_layer(layer, options):
    if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.Model):
        raise TypeError(
            f"Expected a keras layer to wrap, got {type(layer).__name__}; "
            "pass models as a whole, not inside a list."
        )
    return PruneLowMagnitude(layer, **options.as_kwargs())


def _check_graph_model(model, what, require_built=False):
    check_graph_model(
        model, what, require_built=require_built,
        subclassed_hint="Wrap its layers with prune_low_magnitude(layer) inside __init__ "
                        "instead (see the README's 'Subclassed models').")


def _wrap_model(model, options, layer_names, skip_unsupported):
    _check_graph_model(model, "prune_low_magnitude", require_built=True)
    all_layers = list(iter_layers(model))
    wrapped = [l.name for l in all_layers if isinstance(l, PruneLowMagnitude)]
    if wrapped:
        raise ValueError(
            f"Model {model.name!r} is already wrapped for pruning (layers "
            f"{wrapped}); strip_pruning it first or prune the original."
        )
    if layer_names is not None:
        known = {l.name for l in all_layers}
        missing = [name for name in layer_names if name not in known]
        if missing:
            raise ValueError(
                f"layers={missing} not found in model {model.name!r}; its "
                f"layers are {sorted(known)}."
            )
    chosen = None
    if layer_names is not None:
        # A nested model's name selects every layer inside it.
        chosen = set()
        for layer in all_layers:
            if layer.name in layer_names:
                chosen.add(id(layer))
                if isinstance(layer, keras.Model):
                    chosen.update(id(inner) for inner in iter_layers(layer))
    selected = {}  # id(layer) -> number of prunable weights
    for layer in all_layers:
        if isinstance(layer, keras.Model):
            continue
        if chosen is not None and id(layer) not in chosen:
            continue
        try:
            weights = prunable_weights(layer)
            problem = (
                f"Layer {layer.name!r} ({type(layer).__name__}) holds weights "
                "tfopt cannot prune. Pass skip_unsupported=True to leave it "
                "unpruned, restrict pruning with layers=[...], or implement "
                "get_prunable_weights() on it (tfopt.pruning.PrunableLayer)."
            )
        except ValueError as error:  # a table entry that does not fit this layer
            weights, problem = None, str(error)
        if weights is None:
            if skip_unsupported:
                warnings.warn(
                    f"Layer {layer.name!r} ({type(layer).__name__}) cannot be "
                    "pruned and is left unwrapped (skip_unsupported=True).",
                    stacklevel=3,
                )
                continue
            raise ValueError(problem)
        if not weights:
            continue
        # Validate patterns now, before any cloning or training.
        options.check_weights(layer, weights)
        selected[id(layer)] = len(weights)
    if not selected:
        raise ValueError(
            f"Model {model.name!r} has no layer to prune (selected: "
            f"{layer_names if layer_names is not None else 'all'})."
        )

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer, None  # a raw keras.ops node: stateless, reused as is
        new = layer.__class__.from_config(layer.get_config())
        if id(layer) in selected:
            build_config = layer.get_build_config()
            if build_config:
                new.build_from_config(build_config)
            _check_rebuilt(layer, new, selected[id(layer)])
            return PruneLowMagnitude(new, **options.as_kwargs()), layer.get_weights()
        return new, layer.get_weights()

    return _clone(model, clone)


def _check_rebuilt(layer, new, count):
    # A custom layer without a build() that creates its sub-layers' weights
    # comes back from build_from_config with none: build it by a call on
    # zeros shaped like its input, or say so (never wrap it weightless).
    if len(new.weights) != len(layer.weights):
        nodes = _compat.inbound_nodes(layer)
        tensors = nodes[0].input_tensors if nodes else []
        if len(tensors) == 1:
            shape = tuple(1 if d is None else d for d in tensors[0].shape)
            new(keras.ops.zeros(shape, dtype=tensors[0].dtype))
    rebuilt = prunable_weights(new) if len(new.weights) == len(layer.weights) else None
    if rebuilt is None or len(rebuilt) != count:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt from its "
            "config with the same weights, so it cannot be wrapped for pruning. Give it a "
            "build() that builds its sub-layers, or leave it out with layers=[...] / "
            "skip_unsupported=True."
        )


def _clone(model, clone_layer):
    return clone_with(model, clone_layer, target_of=_weights_target)


def _weights_target(layer):
    return layer.layer if isinstance(layer, PruneLowMagnitude) else layer
