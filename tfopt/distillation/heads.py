"""What a classifier's output is: logits or softmax probabilities.

Distillation softens *logits* with a temperature. Dividing probabilities by
T instead is the classic silent mistake (the loss still decreases, the
student learns a wrong target), so tfopt decides the head of each model from
its last layer and refuses to guess when it cannot tell.
"""

import keras
from keras import ops

LOGITS = "logits"
SOFTMAX = "softmax"
HEADS = ("auto", LOGITS, SOFTMAX)

# log() of probabilities that underflowed to 0 in float32 softmax: the
# smallest normal float32. It only differs from the true logit where the
# logit gap exceeds ~87, whose tempered probability is negligible.
_TINY = 1.1754944e-38


def detect_head(model):
    """Whether `model` ends in logits or in a softmax.

    Looks at the layer that produces the model's output (through pruning and
    quantization wrappers): a `Softmax` layer, `Activation("softmax")` or a
    layer with `activation="softmax"` is a softmax head; a layer with a
    linear activation (or one of the activations that logits may pass
    through, none) is a logits head.

    Args:
        model: A Sequential or Functional `keras.Model` with one output.

    Returns:
        `"logits"` or `"softmax"`.

    Raises:
        ValueError: If the head cannot be determined (subclassed model, an
            output activation such as sigmoid that is not a class
            distribution, several outputs). Pass `student_head=`/
            `teacher_head=` to the `Distiller` to state it.

    Example:

    >>> detect_head(tfopt.models.digits_cnn(8))
    'logits'
    """
    layer = _output_layer(model)
    if layer is None:
        raise ValueError(
            f"Cannot tell whether model {model.name!r} outputs logits or "
            "softmax probabilities (it is subclassed or has several outputs). "
            "Pass teacher_head=/student_head='logits' or 'softmax' to the "
            "Distiller."
        )
    layer = _unwrap(layer)
    if isinstance(layer, keras.layers.Softmax):
        return SOFTMAX
    activation = getattr(layer, "activation", None)
    name = _activation_name(activation)
    if name == "softmax":
        return SOFTMAX
    if name in (None, "linear"):
        return LOGITS
    raise ValueError(
        f"Model {model.name!r} ends in layer {layer.name!r} with activation "
        f"{name!r}, which is neither logits nor a softmax. Distillation of "
        "class outputs needs one of them: end the model in logits (no "
        "activation) or a softmax, or pass teacher_head=/student_head= "
        "explicitly."
    )


def resolve_head(model, head, role):
    """`head` if given explicitly, else `detect_head(model)`."""
    if head not in HEADS:
        raise ValueError(f"{role}_head must be one of {HEADS}, got {head!r}.")
    return detect_head(model) if head == "auto" else head


def as_logits(outputs, head):
    """Logits from a model's outputs (log of probabilities for a softmax).

    `log(softmax(z)) = z - logsumexp(z)`: logits up to a per-example constant,
    which softmax (tempered or not) ignores.
    """
    if head == LOGITS:
        return outputs
    return ops.log(ops.maximum(outputs, _TINY))


def _output_layer(model):
    if not isinstance(model, keras.Model):
        return None
    outputs = getattr(model, "outputs", None)
    if isinstance(model, keras.Sequential) and model.layers:
        return model.layers[-1]
    if not outputs or len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    return history.operation if history is not None else None


def _unwrap(layer):
    # Wrappers (pruning, QAT) compute their inner layer; QAT's range
    # quantizer passes its input through; a nested model's head is its own
    # last layer.
    from tfopt.quantization.layers import QuantizeActivation

    while True:
        if isinstance(layer, QuantizeActivation):
            layer = layer.input._keras_history.operation
        elif isinstance(layer, keras.layers.Wrapper):
            layer = layer.layer
        elif isinstance(layer, keras.Model):
            inner = _output_layer(layer)
            if inner is None:
                return layer
            layer = inner
        else:
            return layer


def _activation_name(activation):
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", type(activation).__name__)
