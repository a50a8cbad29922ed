"""Rebuilding Keras graph models layer by layer (shared by the transforms)."""

import keras


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
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if producer.name in result and layer not in result[producer.name]:
                    result[producer.name].append(layer)
    return result


def as_functional(model):
    """A Functional view of a built Sequential model (same layer objects)."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model
