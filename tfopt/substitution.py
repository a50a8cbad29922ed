"""Calling a layer with some of its variables replaced by computed values.

Both the pruning and the quantization wrappers compute a layer with derived
weights (`w * mask`, `fake_quant(w)`) without writing them to the variables:
the substitution happens in a `keras.StatelessScope`, so gradients flow to the
real variables and nothing is assigned in-graph (which keeps wrappers valid
under `tf.distribute`).
"""

import keras


def call_with_values(layer, replacements, *args, **kwargs):
    """Calls `layer(*args, **kwargs)` reading `replacements` for variables.

    Args:
        layer: A built Keras layer.
        replacements: `(variable, value)` pairs for some of the layer's
            variables.
        *args, **kwargs: The call's arguments.

    Returns:
        `(outputs, losses)`: the layer's outputs and the losses it added
        during the call (the caller adds them with `add_loss`). State updates
        the layer makes to its other variables (e.g. a stateful RNN) are
        applied.
    """
    replaced = {id(variable) for variable, _ in replacements}
    mapping = {id(variable): (variable, value) for variable, value in replacements}
    # Every other variable maps to its current value so that an outer
    # stateless scope (JAX's trainer) is honoured inside ours.
    for variable in layer.variables:
        mapping.setdefault(id(variable), (variable, variable.value))
    # collect_losses: activity regularizers and add_loss() inside the layer
    # would otherwise vanish with the scope.
    scope = keras.StatelessScope(state_mapping=list(mapping.values()), collect_losses=True)
    given = dict(scope.state_mapping)
    with scope:
        outputs = layer(*args, **kwargs)
    for key, (variable, _) in mapping.items():
        updated = scope.state_mapping[key]
        if key not in replaced and updated is not given[key]:
            variable.assign(updated)
    return outputs, scope.losses


class SubstitutingWrapper(keras.layers.Wrapper):
    """Base of wrappers that compute their layer with substituted weights.

    Saves the inner layer's own build config, so that multi-input layers
    (e.g. cross-attention), which one input shape cannot rebuild, load from
    `.keras` files. Subclasses build their own variables in `build`.
    """

    def get_build_config(self):
        return {"layer": self.layer.get_build_config()}

    def build_from_config(self, config):
        inner = (config or {}).get("layer")
        if inner and not self.layer.built:
            self.layer.build_from_config(inner)
        self.build((inner or {}).get("input_shape"))
