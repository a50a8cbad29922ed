"""Distillation losses: tempered soft targets (Hinton) and feature hints.

All functions return one value per example, so that sample weights apply
to distillation terms as to the task loss; the `Distiller` takes the mean.
"""

import keras
from keras import ops

FEATURE_LOSSES = ("mse", "cosine")


def soft_target_loss(teacher_logits, student_logits, temperature):
    """`T^2 * KL(softmax(teacher/T) || softmax(student/T))` per example.

    The `T^2` factor keeps the gradient scale of the soft term independent
    of the temperature (Hinton et al., 2015), so `alpha` means the same at
    every T. Computed with log-softmax for stability at high confidence.

    Args:
        teacher_logits: `(batch, classes)` teacher logits.
        student_logits: `(batch, classes)` student logits.
        temperature: A positive scalar (float or variable).

    Returns:
        A `(batch,)` tensor.

    Example:

    >>> soft_target_loss(np.zeros((1, 3)), np.zeros((1, 3)), 4.0)  # equal: 0
    """
    teacher_log_p = ops.log_softmax(ops.divide(teacher_logits, temperature), axis=-1)
    student_log_p = ops.log_softmax(ops.divide(student_logits, temperature), axis=-1)
    kl = ops.sum(ops.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1)
    return ops.square(temperature) * kl


def feature_loss(teacher_features, student_features, kind="mse"):
    """Distance between two feature tensors of equal shape, per example.

    Args:
        teacher_features: `(batch, ...)` teacher activations.
        student_features: Student activations of the same shape (after the
            adapter, if widths differ).
        kind: `"mse"` (mean squared difference over all positions and
            channels) or `"cosine"` (1 - cosine similarity of the channel
            vectors, averaged over positions).

    Returns:
        A `(batch,)` tensor.

    Raises:
        ValueError: For an unknown `kind`.
    """
    if kind not in FEATURE_LOSSES:
        raise ValueError(f"Feature loss must be one of {FEATURE_LOSSES}, got {kind!r}.")
    teacher_features = ops.convert_to_tensor(teacher_features, "float32")
    student_features = ops.convert_to_tensor(student_features, "float32")
    axes = tuple(range(1, len(teacher_features.shape)))
    if kind == "mse":
        return ops.mean(ops.square(teacher_features - student_features), axis=axes)
    t = teacher_features / ops.maximum(ops.norm(teacher_features, axis=-1, keepdims=True), 1e-12)
    s = student_features / ops.maximum(ops.norm(student_features, axis=-1, keepdims=True), 1e-12)
    distance = 1.0 - ops.sum(t * s, axis=-1)
    return ops.mean(distance, axis=axes[:-1]) if len(axes) > 1 else distance


@keras.saving.register_keras_serializable(package="tfopt")
class FeatureDistillation(keras.distillation.DistillationLoss):
    """A hint: match a student layer's activations to a teacher layer's.

    Unlike `keras.distillation.FeatureDistillation`, the widths may differ:
    the `Distiller` then inserts a learnable linear adapter (a 1x1
    convolution for image features) on the student side. The adapter trains
    with the student and is not part of `distiller.student`, so it never
    reaches the exported model. Spatial sizes must match.

    Args:
        teacher_layer_name: Name of a layer of the teacher.
        student_layer_name: Name of a layer of the student (a pruning or
            QAT wrapper may be named by its inner layer's name).
        loss: `"mse"` or `"cosine"`.
        weight: Weight of this term in the total loss.
        adapter: `"auto"` (add one when the channel widths differ), `True`
            (always) or `False` (never; mismatched widths are an error).

    Raises:
        ValueError: For an unknown loss, a negative weight or a bad adapter.

    Example:

    ```python
    hint = tfopt.distillation.FeatureDistillation("conv2d_1", "conv2d", loss="cosine")
    distiller = tfopt.distillation.Distiller(student, teacher, features=[hint])
    ```
    """

    def __init__(self, teacher_layer_name, student_layer_name, loss="mse", weight=1.0,
                 adapter="auto"):
        if loss not in FEATURE_LOSSES:
            raise ValueError(f"FeatureDistillation loss must be one of {FEATURE_LOSSES}, got {loss!r}.")
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"FeatureDistillation weight must be a number >= 0, got {weight!r}.")
        if adapter not in ("auto", True, False):
            raise ValueError(f"adapter must be 'auto', True or False, got {adapter!r}.")
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.loss = loss
        self.weight = float(weight)
        self.adapter = adapter

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """Mean feature distance over the batch (Keras `DistillationLoss` API)."""
        return ops.mean(feature_loss(teacher_outputs, student_outputs, self.loss))

    def get_config(self):
        return {
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "loss": self.loss,
            "weight": self.weight,
            "adapter": self.adapter,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
