"""Keras graph models: the one model-kind check, flattening, cloning.

Every technique (pruning, structured pruning, QAT, export, the search)
checks the kind of model it is given with `check_graph_model`, which raises
one error type, `UnsupportedModelError`; nested models are entered through
`flatten_nested`.
"""

import keras

from tfopt import _compat


class UnsupportedModelError(TypeError, ValueError):
    """A model tfopt cannot trace: not a model, subclassed, or not built.

    Both a `TypeError` (the wrong kind of object) and a `ValueError` (what
    callers that only catch bad arguments, such as a tuner, expect).
    """


def is_graph_model(model):
    """Whether `model` is a Sequential or Functional `keras.Model`."""
    return isinstance(model, keras.Sequential) or _compat.is_functional(model)


def check_graph_model(model, what, subclassed_hint=None, require_built=True):
    """Raises unless `model` is a (built) Sequential or Functional model.

    Args:
        model: The object a public function was given.
        what: The function's name, for the message (e.g. "quantize_model").
        subclassed_hint: What a user of a subclassed model should do instead;
            default: rebuild it with the Functional API.
        require_built: Also require a defined input (a `keras.Input`).

    Raises:
        UnsupportedModelError: For a non-model, a subclassed model, or (with
            `require_built`) a model without a defined input.

    Example:

    ```python
    check_graph_model(model, "quantize_model")
    ```
    """
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"{what} takes a keras.Model (Sequential or Functional), got "
            f"{type(model).__name__}."
        )
    if not is_graph_model(model):
        hint = subclassed_hint or "Rebuild it with the Functional API (keras.Input -> layers -> keras.Model)."
        raise UnsupportedModelError(
            f"{what} supports Sequential and Functional models; {model.name!r} is a "
            f"subclassed {type(model).__name__}, whose graph cannot be traced. {hint}"
        )
    if require_built:
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not model.built or not inputs:
            raise UnsupportedModelError(
                f"{what}: model {model.name!r} is not built; start it with keras.Input "
                "(or call model.build(input_shape)) first."
            )


def flatten_nested(model):
    """A Functional copy of `model` with nested models inlined.

    Nested Sequential/Functional models (e.g. a Keras application used as a
    backbone, or ConvNeXt's stem) are replaced by their layers, so a
    technique that rewrites the graph sees every layer. Layers are cloned
    (`from_config`) with their weights copied; a layer or nested model used
    twice stays shared; raw `keras.ops` nodes are kept as they are. Names of
    inlined layers that collide get the nested model's name as a prefix.

    Args:
        model: A built Sequential or Functional model.

    Returns:
        The same model if nothing is nested (a Sequential model comes back as
        its Functional view), else a new Functional model computing the
        same outputs.

    Raises:
        UnsupportedModelError: For a subclassed model, inside or outside.

    Example:

    ```python
    backbone = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, include_top=False)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10)(backbone(inputs)))
    flat = tfopt.graph.flatten_nested(model)    # no keras.Model among flat.layers
    ```
    """
    check_graph_model(model, "flatten_nested")
    model = as_functional(model)
    if not any(isinstance(layer, keras.Model) for layer in model.layers):
        return model
    clones = {}
    pending = []
    taken = set()

    def unique(name, prefix):
        candidate = name if name not in taken else f"{prefix}_{name}"
        index = 1
        while candidate in taken:
            candidate = f"{prefix}_{name}_{index}"
            index += 1
        taken.add(candidate)
        return candidate

    def operation_fn(prefix):
        def mapped(operation):
            if isinstance(operation, keras.Model):
                check_graph_model(operation, "flatten_nested")
                inner = as_functional(operation)

                def inline(*args, **kwargs):
                    flat_inputs = keras.tree.flatten(args[0] if len(args) == 1 else list(args))
                    return _compat.run_through_graph(inner, flat_inputs, operation_fn(operation.name))

                return inline
            if not isinstance(operation, keras.layers.Layer):
                return operation  # a raw keras.ops node: stateless, reused as is
            if id(operation) not in clones:
                config = operation.get_config()
                config["name"] = unique(operation.name, prefix)
                clone = operation.__class__.from_config(config)
                clones[id(operation)] = clone
                pending.append((clone, operation))
            return clones[id(operation)]

        return mapped

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=_compat.producer(t).name)
              for t in model.inputs]
    for tensor in inputs:
        taken.add(_compat.producer(tensor).name)
    outputs = _compat.run_through_graph(model, inputs, operation_fn(model.name))
    flat = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=model.name)
    for clone, original in pending:
        if original.weights:
            clone.set_weights(original.get_weights())
    return flat


def clone_with(model, clone_layer, call_function=None, target_of=None):
    """Clones a Sequential/Functional model, copying weights afterwards.

    Args:
        model: The model to clone (nested models are cloned recursively).
        clone_layer: `(layer) -> (new_layer, weights)`; `weights` (a list of
            arrays, or None to leave the new layer's own) are set once every
            new layer is built.
        call_function: Optional `(layer, *args, **kwargs) -> outputs`, as in
            `keras.models.clone_model`, to insert or skip operations.
        target_of: Optional `(new_layer) -> layer` that receives the weights
            (e.g. the layer inside a wrapper).

    Returns:
        The new model.
    """
    pending = []

    def clone_function(layer):
        new, weights = clone_layer(layer)
        pending.append((new, weights))
        return new

    cloned = keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function, recursive=True
    )
    for new, weights in pending:
        if weights is not None:
            (target_of(new) if target_of else new).set_weights(weights)
    return cloned


def consumers(model):
    """Maps each layer name of a functional graph to the layers consuming it.

    Keras 3 keeps the graph in each layer's inbound nodes and each tensor's
    `_keras_history`; there is no public accessor for consumers.
    """
    result = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for node in _compat.inbound_nodes(layer):
            for tensor in node.input_tensors:
                producer = _compat.producer(tensor)
                if producer.name in result and layer not in result[producer.name]:
                    result[producer.name].append(layer)
    return result


def as_functional(model):
    """A Functional view of a built Sequential model (same layer objects)."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model
