"""The few Keras private APIs tfopt relies on, behind one small module.

Keras 3 keeps a Functional graph in each tensor's `_keras_history` and each
layer's `_inbound_nodes`, and has no public `Functional` class or graph
walker. Everything of that kind that tfopt reads goes through here, so a
Keras upgrade that moves them is mended in one place.
"""

import keras


def functional_class():
    """Keras's `Functional` model class (not exported publicly)."""
    from keras.src.models.functional import Functional

    return Functional


def is_functional(model):
    """Whether `model` is a Functional model (Sequential is not)."""
    return isinstance(model, functional_class())


def producer(tensor):
    """The operation (layer or ops node) that produced a symbolic tensor."""
    return tensor._keras_history.operation


def has_producer(tensor):
    """Whether `tensor` is a symbolic tensor with a recorded producer."""
    return getattr(tensor, "_keras_history", None) is not None


def history(tensor):
    """`(operation, node_index, tensor_index)` of a symbolic tensor."""
    return tuple(tensor._keras_history)


def input_tensors_of(tensor):
    """The input tensors of the node (in this graph) that produced `tensor`."""
    operation, node_index, _ = tensor._keras_history
    return list(operation._inbound_nodes[node_index].input_tensors)


def nodes_by_depth(model):
    """`{depth: [nodes]}` of a Functional model (depth 0 at the outputs)."""
    return model._nodes_by_depth


def inbound_nodes(operation):
    """The nodes at which `operation` was called in any graph."""
    return list(getattr(operation, "_inbound_nodes", None) or [])


def run_through_graph(model, inputs, operation_fn):
    """Re-runs a Functional graph on new `inputs`, mapping each operation.

    Args:
        model: A Functional model.
        inputs: A flat list of tensors, one per `model.inputs`.
        operation_fn: `(operation) -> callable` used in place of each
            operation (layer or ops node) of the graph.

    Returns:
        The model's outputs, in its output structure.
    """
    return model._run_through_graph(inputs, operation_fn=operation_fn)


def get_input_signature(model):
    """Keras's own input signature rule for `model.export` (Functional
    models take one nested argument, subclassed ones their first call's
    shapes); the public `inputs` if that private rule moves.

    Raises:
        ValueError: If the model has no defined inputs.
    """
    try:
        from keras.src.export.export_utils import get_input_signature as signature
    except ImportError:  # pragma: no cover - moved in a future Keras
        if not hasattr(model, "inputs"):
            raise ValueError("it has no `inputs`.") from None
        return [model.inputs[0] if len(model.inputs) == 1 else model.inputs]
    return signature(model)


def is_keras_tensor(value):
    return isinstance(value, keras.KerasTensor)


def keras_layer_scale_class():
    """The `LayerScale` layer of Keras's ConvNeXt application, or None."""
    try:
        from keras.src.applications.convnext import LayerScale
    except ImportError:  # moved in a future Keras: the rank <= 1 rule still applies
        return None
    return LayerScale


def keras_custom_scale_class():
    """The `CustomScaleLayer` of Keras's InceptionResNetV2 application
    (`inputs[0] + inputs[1] * scale`), or None."""
    try:
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    except ImportError:  # moved in a future Keras: the default weightless rule applies
        return None
    return CustomScaleLayer


def sublayers(layer):
    """The layers `layer` holds directly (attributes, lists), not itself."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def all_sublayers(layer):
    """Every layer inside `layer`, recursively (nested models included), not itself."""
    return list(layer._flatten_layers(include_self=False, recursive=True))


def softmax_op_classes():
    """`(Softmax, LogSoftmax)`: the operation classes behind `keras.ops.softmax`
    and `keras.ops.log_softmax` (no public name), so a Functional model that
    ends in the op instead of a layer is recognised."""
    from keras.src.ops.nn import LogSoftmax
    from keras.src.ops.nn import Softmax

    return Softmax, LogSoftmax


def scale_loss_for_distribution(loss):
    """Keras's own scaling of a loss under `tf.distribute` (no public name):
    each replica contributes its share of the summed gradients."""
    from keras.src.losses.loss import scale_loss_for_distribution as scale

    return scale(loss)


def in_xla_context():
    """Whether TensorFlow is tracing inside an XLA-compiled function
    (`jit_compile=True`); None if this TensorFlow does not say."""
    import tensorflow as tf

    try:  # TensorFlow marks the graphs of jit_compile functions this way
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without it
        return None
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def atomic_keras_tuner_json():
    """Makes KerasTuner's JSON state writes atomic on local disks (once).

    KerasTuner writes `oracle.json`, `trial.json` and the tuner's state in
    place (`keras_tuner.src.utils.save_json`, no public hook): a search
    killed while writing leaves an empty file, and resuming it then fails in
    `json.loads`. The replacement writes a temporary file beside the target
    and renames it over (`os.replace`), so a reader sees the old state or
    the new one. Remote paths (`gs://...`) keep KerasTuner's own writer.
    """
    import json
    import os
    import tempfile

    from keras_tuner.src import utils

    if getattr(utils.save_json, "_tfopt_atomic", False):
        return
    original = utils.save_json

    def save_json(path, obj):
        if "://" in str(path):
            return original(path, obj)
        text = json.dumps(obj)
        directory = os.path.dirname(os.path.abspath(path))
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(text)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 -> a normal file's mode
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        return text

    save_json._tfopt_atomic = True
    utils.save_json = save_json


# -- tf.distribute and Keras's trainer (tfopt.distribute) ---------------------------

def forget_finished_keras_tuner_retries(oracle):
    """Keeps a reloaded search from running a finished trial again.

    KerasTuner's `end_trial` writes the trial's `trial.json` (COMPLETED),
    then `oracle.json`, and only then drops the trial from its ongoing
    trials: a search killed after those writes and before the next trial
    starts reloads the finished trial as interrupted and queues it for a
    retry. A trial whose own file says it ended is not retried.
    """
    import keras_tuner

    if not isinstance(oracle, keras_tuner.Oracle) or not getattr(oracle, "_retry_queue", None):
        return
    ended = {keras_tuner.engine.trial.TrialStatus.COMPLETED,
             keras_tuner.engine.trial.TrialStatus.FAILED}
    oracle._retry_queue = [trial_id for trial_id in oracle._retry_queue
                           if getattr(oracle.trials.get(trial_id), "status", None) not in ended]


def model_strategy(model):
    """The `tf.distribute` strategy `model` was created under, or None.

    Keras keeps it as `Model._distribute_strategy` (no public name).
    """
    return getattr(model, "_distribute_strategy", None)


def in_multi_worker_mode(strategy):
    """Whether a `MultiWorkerMirroredStrategy` spans several workers."""
    return bool(strategy.extended._in_multi_worker_mode())


def has_symbolic_build(model):
    """Whether Keras's trainer still builds the model symbolically before
    `fit` with `Model._symbolic_build` (the step `tfopt.distribute` replaces)."""
    return hasattr(model, "_symbolic_build")


def replace_symbolic_build(model, build_from_batch):
    """Makes `model.fit` build the model with `build_from_batch(data_batch)`.

    Keras calls `Model._maybe_symbolic_build(iterator=..., data_batch=...)`
    before the first epoch; its version all-reduces a whole batch, which
    `MultiWorkerMirroredStrategy` cannot do. The replacement takes the first
    batch of the iterator and hands it to `build_from_batch`.

    Args:
        model: A compiled `keras.Model`.
        build_from_batch: `fn(data_batch, symbolic_build)`, where
            `symbolic_build(data_batch)` is Keras's own build.
    """
    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break
        build_from_batch(data_batch, lambda batch: model._symbolic_build(data_batch=batch))

    model._maybe_symbolic_build = maybe_symbolic_build
