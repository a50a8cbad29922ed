"""The `Distiller`: trains a student on labels and on a frozen teacher.

Why not `keras.distillation.Distiller` itself: its temperature and weights
are Python floats baked into the compiled step (no schedules), it runs the
student twice per step when hints are used (a pruning wrapper would advance
two steps per batch), divides whatever the models output by T (probabilities
included), needs equal widths for hints and drops the student's
regularization losses. tfopt keeps its loss API (`DistillationLoss` is the
base of `FeatureDistillation`) and fixes those points.
"""

import keras
import numpy as np
from keras import ops

from tfopt._compat import scale_loss_for_distribution

from tfopt.distillation import heads
from tfopt.distillation.losses import FeatureDistillation
from tfopt.distillation.losses import feature_loss
from tfopt.distillation.losses import soft_target_loss

INPUTS = "inputs"
_CROSS_ENTROPY_FUNCTIONS = {
    keras.losses.sparse_categorical_crossentropy: keras.losses.SparseCategoricalCrossentropy,
    keras.losses.categorical_crossentropy: keras.losses.CategoricalCrossentropy,
}
TEACHER_LOGITS = "teacher_logits"
TEACHER_FEATURE = "teacher_feature_{}"


@keras.saving.register_keras_serializable(package="tfopt")
class Distiller(keras.Model):
    """Knowledge distillation inside `fit`: task loss + soft targets + hints.

    The loss per example is

        alpha * task(y, student) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)
        + sum_i weight_i * hint_i

    where `p^T = softmax(logits / T)`. Logits are taken from each model's
    head: a softmax head is detected and converted exactly (log of the
    probabilities), so the from_logits mismatch cannot happen silently; a
    head that is neither is an error. The teacher is frozen
    (`teacher.trainable = False`) and always runs in inference mode; the
    student runs once per step, hints included. `temperature` and `alpha`
    are variables: schedule them with `DistillationScheduler`; they are
    saved with the distiller and restored by `BackupAndRestore`.

    The student may be wrapped for pruning and/or QAT (train with
    `tfopt.pruning.UpdatePruningStep` as usual); `distiller.student` is the
    model to strip and export. Metrics given to `compile` are computed on
    the student's outputs; the logs also carry `task_loss`,
    `distillation_loss` and, with hints, `feature_loss`.

    Args:
        student: The `keras.Model` to train.
        teacher: A trained `keras.Model` with the same inputs and number of
            classes.
        temperature: Softening temperature T > 0.
        alpha: Weight of the task loss in [0, 1]; `1 - alpha` weighs the
            soft-target term.
        features: Optional `FeatureDistillation` hint or list of hints.
        student_head: `"auto"`, `"logits"` or `"softmax"`: what the
            student outputs (auto: read from its last layer).
        teacher_head: The same for the teacher.
        name: Model name.
        **kwargs: Passed to `keras.Model`.

    Raises:
        TypeError: If student or teacher is not a `keras.Model`, or a hint is
            not a `FeatureDistillation`.
        ValueError: For T <= 0, alpha outside [0, 1], teacher and student
            inputs or outputs of different shapes, an undetectable head, a
            hint layer that does not exist or whose spatial shape differs.

    Example:

    ```python
    distiller = tfopt.distillation.Distiller(student, teacher, temperature=4.0, alpha=0.1)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(x, y, epochs=10)
    tfopt.export.to_tflite(distiller.student, "student.tflite")
    ```
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.1, features=None,
                 student_head="auto", teacher_head="auto", name="distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        for role, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise TypeError(f"The {role} must be a keras.Model, got {type(model).__name__}.")
        check_temperature(temperature)
        check_alpha(alpha)
        self.student_head = heads.resolve_head(student, student_head, "student")
        self.teacher_head = heads.resolve_head(teacher, teacher_head, "teacher")
        _check_compatible(teacher, student)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.features = _as_hints(features)
        self._config = dict(temperature=float(temperature), alpha=float(alpha),
                            student_head=student_head, teacher_head=teacher_head)
        self.temperature = self._scalar("temperature", temperature)
        self.alpha = self._scalar("alpha", alpha)
        self._student_extractor = self._teacher_extractor = None
        self.adapters, self._adapter_of = [], []
        if self.features:
            self._build_hints()
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if self.features else None
        self._task_loss = None
        # Every variable exists now (student, adapters, T, alpha), so the
        # distiller is built: BackupAndRestore and saving work before a call.
        self.built = student.built

    # -- construction --------------------------------------------------------

    def _scalar(self, name, value):
        return self.add_weight(name=name, shape=(), initializer=keras.initializers.Constant(value),
                               trainable=False, aggregation="only_first_replica")

    def _build_hints(self):
        for role, model in (("student", self.student), ("teacher", self.teacher)):
            if not getattr(model, "inputs", None):
                raise ValueError(
                    f"Feature distillation needs a Sequential or Functional {role} with an "
                    f"Input; {model.name!r} has no symbolic inputs (subclassed or unbuilt)."
                )
        teacher_outputs, student_outputs = [], []
        for i, hint in enumerate(self.features):
            # The layer's node in this model's graph (a reloaded layer has
            # others): the extractor then shares the model's one pass.
            t = heads.graph_output(self.teacher, _find_layer(self.teacher, hint.teacher_layer_name, "teacher"))
            s = heads.graph_output(self.student, _find_layer(self.student, hint.student_layer_name, "student"))
            teacher_outputs.append(t)
            student_outputs.append(s)
            self._adapter_of.append(self._adapter(i, hint, tuple(t.shape), tuple(s.shape)))
        self._teacher_extractor = _extractor(self.teacher, teacher_outputs)
        self._student_extractor = _extractor(self.student, student_outputs)

    def _adapter(self, i, hint, teacher_shape, student_shape):
        pair = f"teacher {hint.teacher_layer_name!r} {teacher_shape} and student " \
               f"{hint.student_layer_name!r} {student_shape}"
        if len(teacher_shape) != len(student_shape) or teacher_shape[1:-1] != student_shape[1:-1]:
            raise ValueError(
                f"Feature hint {i}: {pair} differ in more than the channel width. Pick "
                "layers of equal spatial size (an adapter projects channels only)."
            )
        if teacher_shape[-1] == student_shape[-1] and hint.adapter != True:  # noqa: E712
            return None
        if hint.adapter is False:
            raise ValueError(
                f"Feature hint {i}: {pair} have different widths and adapter=False. "
                "Use adapter='auto' to learn a projection."
            )
        # A linear map on the channel axis: a Dense on (batch, ..., C) is
        # exactly a 1x1 convolution for image features.
        adapter = keras.layers.Dense(teacher_shape[-1], name=f"{self.name}_adapter_{i}")
        adapter.build(student_shape)
        self.adapters.append(adapter)
        return len(self.adapters) - 1

    # -- training ------------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures training; `loss` is the task loss on the student.

        Args:
            optimizer: Optimizer for the student (and adapters).
            loss: Task loss on `(y, student outputs)`; default sparse
                categorical cross-entropy. A cross-entropy given by name or
                function gets `from_logits` from the student's head; a loss
                object whose `from_logits` contradicts the head is an error.
            metrics: Metrics on the student's outputs, e.g. `["accuracy"]`.
            **kwargs: Passed to `keras.Model.compile`.

        Raises:
            ValueError: If `loss.from_logits` does not match the student head.
        """
        from_logits = self.student_head == heads.LOGITS
        if loss is None:
            loss = "sparse_categorical_crossentropy"
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if loss in _CROSS_ENTROPY_FUNCTIONS:
            # A cross-entropy by name or function states no from_logits (the
            # function's default is False): take the student head's.
            loss = _CROSS_ENTROPY_FUNCTIONS[loss](from_logits=from_logits)
        declared = getattr(loss, "from_logits", None)
        if declared is not None and bool(declared) != from_logits:
            raise ValueError(
                f"The task loss has from_logits={declared} but student {self.student.name!r} "
                f"outputs {self.student_head}. Set from_logits={from_logits} (or leave "
                "loss=None for the matching default)."
            )
        self._task_loss = loss
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self._task_loss is not None:
            config["loss"] = keras.saving.serialize_keras_object(self._task_loss)
        return config

    def compile_from_config(self, config):
        # Keras skips overridden compile() methods on load; ours is safe to
        # call with the saved arguments (task loss included). Student and
        # adapters are built in __init__, so the optimizer's slots can be
        # created now and restored from the file.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def call(self, inputs, training=None):
        inputs, _ = _unpack(inputs)
        if training and self._student_extractor is not None:
            # One student pass gives the output and the hinted features.
            outputs = self._student_extractor(inputs, training=True)
            return {"output": outputs[0], "features": list(outputs[1:])}
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        inputs, cached = _unpack(x)
        if y_pred is None:
            y_pred = self(x, training=training)
        student_out, student_features = _split(y_pred)
        if self.features and student_features is None:
            # evaluate(): the plain call gave no features; one more pass.
            student_features = list(self._student_extractor(inputs, training=False)[1:])
        teacher_logits, teacher_features = self._teacher_outputs(inputs, cached)
        student_logits = heads.as_logits(student_out, self.student_head)
        self._check_classes(teacher_logits, student_logits)

        per_example = []
        if y is not None:
            task = _per_example(self._task_loss, y, student_out)
            per_example.append(self.alpha * task)
            self.task_loss_tracker.update_state(_weighted_mean(task, sample_weight))
        soft = soft_target_loss(teacher_logits, student_logits, self.temperature)
        per_example.append((1.0 - self.alpha) * soft)
        self.distillation_loss_tracker.update_state(_weighted_mean(soft, sample_weight))
        if self.features:
            hints = 0.0
            for i, hint in enumerate(self.features):
                s = student_features[i]
                if self._adapter_of[i] is not None:
                    s = self.adapters[self._adapter_of[i]](s)
                hints = hints + hint.weight * feature_loss(teacher_features[i], s, hint.loss)
            per_example.append(hints)
            self.feature_loss_tracker.update_state(_weighted_mean(hints, sample_weight))
        total = _weighted_mean(sum(per_example[1:], per_example[0]), sample_weight)
        regularization = list(self.student.losses) + [l for a in self.adapters for l in a.losses]
        if regularization:
            total = total + ops.sum(ops.stack(regularization))
        # Replicas' gradients are summed under tf.distribute: each replica
        # contributes its share, as Keras's own losses do.
        return scale_loss_for_distribution(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, _split(y_pred)[0], sample_weight)

    def _teacher_outputs(self, inputs, cached):
        if cached is not None:
            logits = ops.convert_to_tensor(cached[TEACHER_LOGITS])
            features = [cached[TEACHER_FEATURE.format(i)] for i in range(len(self.features))]
            return logits, features
        if self._teacher_extractor is not None:
            outputs = self._teacher_extractor(inputs, training=False)
            out, features = outputs[0], list(outputs[1:])
        else:
            out, features = self.teacher(inputs, training=False), []
        logits = heads.as_logits(ops.stop_gradient(out), self.teacher_head)
        return logits, [ops.stop_gradient(f) for f in features]

    def _check_classes(self, teacher_logits, student_logits):
        t, s = teacher_logits.shape[-1], student_logits.shape[-1]
        if t is not None and s is not None and t != s:
            raise ValueError(
                f"Teacher {self.teacher.name!r} gives {t} classes, student "
                f"{self.student.name!r} gives {s}: distillation needs the same classes."
            )

    # -- teacher caching -----------------------------------------------------

    def cache_teacher(self, x, batch_size=256):
        """Runs the teacher once over `x`; returns inputs that carry its outputs.

        Pass the result to `fit` in place of `x`: each step then reads the
        teacher's logits (and hint features) instead of running the teacher.
        Valid only when the teacher would see exactly these inputs, i.e. no
        random augmentation in the pipeline.

        Args:
            x: Inputs: a NumPy array, a list of arrays, a `tf.data.Dataset`
                (batched or not; `(x, y)` elements are split and the labels
                returned) or a function returning an iterator of batches
                (see `tfopt.data.input_batches`). A dataset is read once, in
                order: it must be finite and unshuffled (or shuffled with a
                seed and `reshuffle_each_iteration=False`).
            batch_size: Batch size of the teacher's single pass.

        Returns:
            A dict `{"inputs": x, "teacher_logits": ..., "teacher_feature_i": ...}`
            that `fit`, `evaluate` and `predict` accept as `x`. For data that
            carries labels the result is `(cached, y)`, ready for
            `fit(*distiller.cache_teacher(dataset))`.

        Raises:
            TypeError: If `x` is a dict or none of the accepted forms (a
                one-shot generator object cannot be cached: pass the
                function that creates it).
            ValueError: If the examples do not fit the teacher's input.

        Example:

        ```python
        distiller.fit(distiller.cache_teacher(x), y, epochs=10)
        cached, y = distiller.cache_teacher(
            tf.data.Dataset.from_tensor_slices((x, y)).batch(64))
        ```
        """
        if isinstance(x, dict):
            raise TypeError(
                "cache_teacher takes inputs (an array, list, tf.data.Dataset or "
                "generator function), got a dict.")
        from tfopt.data import collect_inputs

        inputs = getattr(self.teacher, "inputs", None)
        shape = tuple(inputs[0].shape[1:]) if inputs and len(inputs) == 1 else None
        is_array = hasattr(x, "shape") and hasattr(x, "dtype")
        x, labels = collect_inputs(x, shape, name="cache_teacher's x")
        if is_array:
            labels = None
        if self._teacher_extractor is not None:
            outputs = self._teacher_extractor.predict(x, batch_size=batch_size, verbose=0)
            out, features = outputs[0], outputs[1:]
        else:
            out, features = self.teacher.predict(x, batch_size=batch_size, verbose=0), []
        logits = np.asarray(heads.as_logits(ops.convert_to_tensor(out), self.teacher_head))
        cached = {INPUTS: x, TEACHER_LOGITS: logits.astype("float32")}
        for i, feature in enumerate(features):
            cached[TEACHER_FEATURE.format(i)] = np.asarray(feature, dtype="float32")
        return cached if labels is None else (cached, labels)

    # -- serialization -------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(self._config)
        config.update(
            student=keras.saving.serialize_keras_object(self.student),
            teacher=keras.saving.serialize_keras_object(self.teacher),
            features=[keras.saving.serialize_keras_object(f) for f in self.features],
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        config["features"] = [keras.saving.deserialize_keras_object(f) for f in config["features"]]
        return cls(**config)


def check_temperature(value):
    """Raises ValueError unless `value` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"temperature must be a number > 0, got {value!r}.")


def check_alpha(value):
    """Raises ValueError unless `value` is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"alpha (the task loss weight) must be in [0, 1], got {value!r}.")


def _check_compatible(teacher, student):
    for kind in ("inputs", "outputs"):
        t, s = getattr(teacher, kind, None), getattr(student, kind, None)
        if not t or not s:
            continue  # subclassed: checked on the first batch
        if len(t) != len(s) or any(not _same_shape(a.shape, b.shape) for a, b in zip(t, s)):
            raise ValueError(
                f"Teacher {teacher.name!r} and student {student.name!r} {kind} differ: "
                f"{[a.shape for a in t]} vs {[b.shape for b in s]}. Distillation needs "
                "the same inputs and the same classes."
            )


def _same_shape(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _as_hints(features):
    if features is None:
        return []
    if isinstance(features, FeatureDistillation):
        features = [features]
    hints = list(features)
    for hint in hints:
        if not isinstance(hint, FeatureDistillation):
            raise TypeError(
                "features takes tfopt.distillation.FeatureDistillation hints, got "
                f"{type(hint).__name__}.")
    return hints


def _extractor(model, features):
    """A model over `model`'s layers returning `[output, *features]`."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [model.outputs[0]] + features, name=f"{model.name}_hints")


def _find_layer(model, name, role):
    for layer in model.layers:
        if layer.name == name:
            return layer
        inner = getattr(layer, "layer", None)  # pruning / QAT wrappers
        if isinstance(layer, keras.layers.Wrapper) and inner.name == name:
            return layer
    raise ValueError(
        f"Hint layer {name!r} not found in the {role} {model.name!r}; its layers are "
        f"{[l.name for l in model.layers]}."
    )


def _unpack(x):
    if isinstance(x, dict) and TEACHER_LOGITS in x:
        return x[INPUTS], x
    return x, None


def _split(y_pred):
    if isinstance(y_pred, dict):
        return y_pred["output"], y_pred["features"]
    return y_pred, None


def _per_example(loss, y, y_pred):
    # Loss objects reduce; their `call` gives per-example values.
    values = loss.call(y, y_pred) if isinstance(loss, keras.losses.Loss) else loss(y, y_pred)
    values = ops.convert_to_tensor(values)
    while len(values.shape) > 1:
        values = ops.mean(values, axis=-1)
    return values


def _weighted_mean(values, sample_weight):
    # Keras's "sum_over_batch_size": weights scale examples, the divisor is
    # the batch size (so class_weight means what it means in Model.fit).
    if sample_weight is None:
        return ops.mean(values)
    weight = ops.reshape(ops.cast(sample_weight, values.dtype), ops.shape(values))
    return ops.mean(values * weight)
