"""Training tfopt models on several machines (`MultiWorkerMirroredStrategy`).

Keras 3's `model.fit` does not run under
`tf.distribute.MultiWorkerMirroredStrategy` with two or more workers
(keras-team/keras#20585; still so in Keras 3.15). Two places of
`keras/src/backend/tensorflow/trainer.py` fail, both on bookkeeping, not on
training itself:

1. before the first epoch, `_maybe_symbolic_build` all-reduces a whole
   `(x, y)` batch eagerly just to learn its shapes, and the collective
   strategy's `reduce` does not take a nested structure ("Attempt to convert
   a value (PerReplica...) ... to a Tensor");
2. after each step, `reduce_per_replica` averages the scalar logs (loss,
   metrics) with `strategy.reduce("MEAN", v, axis=0)`, which fails on a
   scalar ("Invalid reduction dimension 0 for input with 0 dimensions").

`enable_multi_worker_fit(model)` fixes both on that one model object (no
global patch of Keras): it builds from one worker-local batch and hands the
logs over with a leading axis of length 1, which the same reduce then
averages over the replicas. The training step itself, the gradient
all-reduce, the optimizer, callbacks and tfopt's wrappers are Keras's and
tfopt's own, unchanged.

tfopt's state stays identical on every worker: pruning masks and
thresholds are computed from the all-reduced (hence identical) weights and
the step counts batches; quantization ranges take the batch min/max over
all replicas (`cross_replica_min_max`), so they equal a one-process run on
the same global batch.
"""

import json
import os

import keras
from keras import ops

from tfopt import _compat

__all__ = ["enable_multi_worker_fit", "cross_replica_min_max", "is_chief",
           "num_workers_from_tf_config"]


def num_workers_from_tf_config(tf_config=None):
    """Number of workers in `TF_CONFIG` (1 when it is unset).

    Args:
        tf_config: The JSON text; default: the `TF_CONFIG` environment
            variable.

    Returns:
        The number of `worker` (plus `chief`) tasks of the cluster.

    Raises:
        ValueError: If `TF_CONFIG` is not valid JSON with a `cluster` dict.

    Example:

    ```python
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": ["host1:12345", "host2:12345"]},
        "task": {"type": "worker", "index": 0}})
    tfopt.distribute.num_workers_from_tf_config()  # 2
    ```
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text:
        return 1
    try:
        config = json.loads(text)
        cluster = config.get("cluster", {})
        if not isinstance(cluster, dict):
            raise TypeError
    except (ValueError, TypeError, AttributeError):
        raise ValueError(
            f"TF_CONFIG={text!r} is not valid: it must be JSON like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}.'
        ) from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief(strategy=None):
    """Whether this process should write files (checkpoints, `.keras`, `.tflite`).

    The chief is worker 0 (or the `chief` task when the cluster has one).
    Every worker must run the same training steps; only the chief saves
    and exports.

    Args:
        strategy: A `tf.distribute` strategy; default: the current one.

    Returns:
        `True` on the chief or in a one-process run.

    Example:

    ```python
    if tfopt.distribute.is_chief(strategy):
        tfopt.export.to_tflite(final, "model.tflite")
    ```
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def cross_replica_min_max(x):
    """`(min(x), max(x))` over the whole global batch, across replicas.

    Outside a distribution strategy (or with one replica) these are
    `ops.min(x)` and `ops.max(x)`. Inside `strategy.run` with several
    replicas (MirroredStrategy devices, MultiWorkerMirroredStrategy
    workers) each replica's min and max are gathered and reduced, so every
    replica gets the same values as one process would on the global batch.
    Used by QAT's activation ranges.

    Args:
        x: A tensor (this replica's part of the batch).

    Returns:
        Two scalar tensors.

    Example:

    ```python
    low, high = tfopt.distribute.cross_replica_min_max(activations)
    ```
    """
    low, high = ops.min(x), ops.max(x)
    if keras.backend.backend() != "tensorflow":
        return low, high
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return low, high
    # One gather of [-min, max] per replica, then the max of each column.
    both = tf.reshape(tf.stack([-tf.cast(low, tf.float32), tf.cast(high, tf.float32)]), (1, 2))
    gathered = context.all_gather(both, axis=0)
    top = tf.reduce_max(gathered, axis=0)
    return ops.cast(-top[0], low.dtype), ops.cast(top[1], high.dtype)


def _multi_worker(strategy):
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and _compat.in_multi_worker_mode(strategy))


def _with_leading_axis(step):
    # Keras averages logs under MultiWorkerMirroredStrategy with
    # strategy.reduce("MEAN", v, axis=0): give scalars that axis.
    def wrapped(data):
        logs = step(data)
        return keras.tree.map_structure(
            lambda v: ops.reshape(v, (1,)) if len(getattr(v, "shape", (0,))) == 0 else v,
            logs,
        )

    wrapped._tfopt_wrapped = step
    return wrapped


def enable_multi_worker_fit(model):
    """Lets `model.fit` / `evaluate` run under `MultiWorkerMirroredStrategy`.

    Call it on the model (a pruned, QAT or plain model, or a `Distiller`)
    after creating and compiling it inside `strategy.scope()`; then call
    `fit` as usual on every worker. With one worker, another strategy or
    none, the model is returned untouched, so the same script runs on one
    machine. Calling it twice is harmless.

    Args:
        model: A `keras.Model` created under a `MultiWorkerMirroredStrategy`
            scope.

    Returns:
        `model` (the same object).

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If `TF_CONFIG` names several workers but the model was
            not created under a `MultiWorkerMirroredStrategy` scope (each
            worker would train its own copy), or if it is compiled
            with `steps_per_execution > 1` (Keras's multi-step loop fails
            under this strategy).
        RuntimeError: If the installed Keras no longer has the trainer
            internals this fix replaces.

    Example:

    ```python
    strategy = tf.distribute.MultiWorkerMirroredStrategy()   # reads TF_CONFIG
    with strategy.scope():
        model = tfopt.pruning.prune_low_magnitude(build_model(), pruning_schedule=schedule)
        model.compile(optimizer="adam", loss=loss)
    tfopt.distribute.enable_multi_worker_fit(model)
    model.fit(dataset, epochs=2, callbacks=[tfopt.pruning.UpdatePruningStep()])
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"enable_multi_worker_fit takes a keras.Model, got {type(model).__name__}."
        )
    import tensorflow as tf

    strategy = _compat.model_strategy(model)
    if strategy is None or not _multi_worker(strategy):
        workers = num_workers_from_tf_config()
        if workers > 1:
            raise ValueError(
                f"TF_CONFIG names {workers} workers, but model {model.name!r} was "
                "not created under a MultiWorkerMirroredStrategy scope: each "
                "worker would train its own copy. Create the strategy first, "
                "then build, wrap (prune_low_magnitude, quantize_model, "
                "Distiller) and compile the model inside `with strategy.scope():`."
            )
        return model
    if getattr(model, "steps_per_execution", 1) != 1:
        # Keras's multi-step loop (a tf.while_loop over the distributed
        # iterator) fails at run time under this strategy ("You must feed a
        # value for placeholder tensor ..."), plain Keras models included.
        raise ValueError(
            f"Model {model.name!r} is compiled with steps_per_execution="
            f"{model.steps_per_execution}; under MultiWorkerMirroredStrategy "
            "Keras 3's multi-step loop fails. Compile with steps_per_execution=1."
        )
    if getattr(model, "_tfopt_multi_worker", False):
        return model
    if not _compat.has_symbolic_build(model):
        raise RuntimeError(
            f"Keras {keras.__version__} has changed the trainer this fix is made "
            "for (its symbolic build before the first epoch); check whether model.fit runs under "
            "MultiWorkerMirroredStrategy without tfopt.distribute."
        )

    def build_from_batch(data_batch, symbolic_build):
        # Shapes only: this worker's first replica's part of the batch.
        data_batch = tf.nest.map_structure(
            lambda v: (strategy.experimental_local_results(v)[0]
                       if isinstance(v, tf.distribute.DistributedValues) else v),
            data_batch,
        )
        with strategy.scope():
            symbolic_build(data_batch)

    _compat.replace_symbolic_build(model, build_from_batch)
    model.train_step = _with_leading_axis(model.train_step)
    model.test_step = _with_leading_axis(model.test_step)
    # Compiled functions made before this call would keep the old steps.
    model.train_function = model.test_function = None
    model._tfopt_multi_worker = True
    return model
