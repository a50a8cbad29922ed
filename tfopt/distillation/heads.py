"""What a classifier's output is: logits or softmax probabilities.

Distillation softens *logits* with a temperature. Dividing probabilities by
T instead is the classic silent mistake (the loss still decreases, the
student learns a wrong target), so tfopt decides the head of each model from
its last layer and refuses to guess when it cannot tell.
"""

import keras
from keras import ops

from tfopt import _compat

# The operation classes behind keras.ops.softmax / log_softmax (no public
# name): a Functional model may end in the op instead of a layer.
_SoftmaxOp, _LogSoftmaxOp = _compat.softmax_op_classes()

LOGITS = "logits"
SOFTMAX = "softmax"
HEADS = ("auto", LOGITS, SOFTMAX)

# log() of probabilities that underflowed to 0 in float32 softmax: the
# smallest normal float32. It only differs from the true logit where the
# logit gap exceeds ~87, whose tempered probability is negligible.
_TINY = 1.1754944e-38


def detect_head(model):
    """Whether `model` ends in logits or in a softmax.

    Follows the model's output back through layers that pass values
    through (Dropout, Flatten, Reshape, linear Activation, QAT range
    quantizers) and through pruning and QAT wrappers and nested models, to
    the operation that computes it: a `Softmax` layer, `keras.ops.softmax`,
    `Activation("softmax")` or a layer with `activation="softmax"` is a
    softmax head; `keras.ops.log_softmax` or a layer with a linear
    activation (Dense, Conv...) is a logits head. Anything else is not
    guessed.

    Args:
        model: A Sequential or Functional `keras.Model` with one output.

    Returns:
        `"logits"` or `"softmax"`.

    Raises:
        ValueError: If the head cannot be determined (subclassed model,
            several outputs, a final operation that is neither, such as a
            sigmoid or a Lambda). Pass `student_head=`/`teacher_head=` to
            the `Distiller` to state it.

    Example:

    >>> detect_head(tfopt.models.digits_cnn(8))
    'logits'
    """
    tensor = _single_output(model)
    if tensor is None:
        raise ValueError(
            f"Cannot tell whether model {model.name!r} outputs logits or "
            "softmax probabilities (it is subclassed or has several outputs). "
            "Pass teacher_head=/student_head='logits' or 'softmax' to the "
            "Distiller."
        )
    return _head_of(tensor, model)


def _head_of(tensor, model):
    from tfopt.quantization.layers import QuantizeActivation

    name = None
    while True:
        op = _compat.producer(tensor)
        while isinstance(op, keras.layers.Wrapper):
            op = op.layer
        if isinstance(op, keras.Model):
            tensor = _single_output(op)
            if tensor is None:
                break
            continue
        name = _activation_name(getattr(op, "activation", None))
        if isinstance(op, (keras.layers.Softmax, _SoftmaxOp)) or name == "softmax":
            return SOFTMAX
        if isinstance(op, _LogSoftmaxOp) or name == "log_softmax":
            return LOGITS  # log-probabilities are logits
        passes_through = isinstance(op, _PASS_THROUGH + (QuantizeActivation,)) or (
            isinstance(op, keras.layers.Activation) and name == "linear")
        if passes_through:
            tensor = _input_of(tensor)
            continue
        if hasattr(op, "activation") and name in (None, "linear"):
            return LOGITS
        break
    what = getattr(op, "name", type(op).__name__)
    raise ValueError(
        f"Model {model.name!r} ends in {what!r} ({type(op).__name__}"
        + (f", activation {name!r}" if name else "") + "), which is neither logits nor a "
        "softmax that tfopt recognises. Distillation of class outputs needs one of them: "
        "end the model in logits (e.g. Dense without activation) or a softmax, or pass "
        "teacher_head=/student_head= explicitly."
    )


# Layers whose output carries their input's values (or a subset of them).
_PASS_THROUGH = (
    keras.layers.Dropout, keras.layers.Flatten, keras.layers.Reshape, keras.layers.Identity,
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


def _single_output(model):
    outputs = getattr(model, "outputs", None) if isinstance(model, keras.Model) else None
    if not outputs or len(outputs) != 1:
        return None
    return outputs[0]


def _input_of(tensor):
    """The (first) input of the node in this graph that produced `tensor`."""
    return _compat.input_tensors_of(tensor)[0]


def graph_output(model, layer):
    """`layer`'s output tensor in `model`'s own graph.

    A layer used in several graphs (a model reloaded from a file, a layer
    shared by two models) has several nodes; `layer.output` is the first,
    which may belong to another graph. Walking back from the model's outputs
    finds the one this model computes.

    Raises:
        ValueError: If `layer` does not produce a tensor of `model`'s graph.
    """
    stack, seen = list(model.outputs), set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if _compat.producer(tensor) is layer:
            return tensor
        stack.extend(_compat.input_tensors_of(tensor))
    raise ValueError(f"Layer {layer.name!r} is not part of model {model.name!r}'s graph.")


def _activation_name(activation):
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", type(activation).__name__)
