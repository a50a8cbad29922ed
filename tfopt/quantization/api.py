"""Quantization-aware training: annotate, apply, quantize a whole model."""

import warnings

import keras
from keras import layers

from tfopt.graph import as_functional
from tfopt.graph import check_graph_model
from tfopt.graph import clone_with
from tfopt.graph import consumers
from tfopt.quantization import config as config_lib
from tfopt.quantization import transforms
from tfopt.quantization.layers import QuantizeActivation
from tfopt.quantization.layers import QuantizeWrapper


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeAnnotate(layers.Wrapper):
    """Marks a layer for `quantize_apply`; computes exactly like the layer.

    Args:
        layer: The layer to quantize later.
        quantize_config: Optional `QuantizeConfig` (needed for custom layers).
    """

    def __init__(self, layer, quantize_config=None, **kwargs):
        if isinstance(quantize_config, dict):
            quantize_config = keras.saving.deserialize_keras_object(quantize_config)
        if quantize_config is not None and not isinstance(quantize_config, config_lib.QuantizeConfig):
            raise TypeError(f"quantize_config must be a QuantizeConfig, got {quantize_config!r}.")
        kwargs.setdefault("name", f"annotated_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config

    def call(self, inputs, *args, **kwargs):
        return self.layer(inputs, *args, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "quantize_config": keras.saving.serialize_keras_object(self.quantize_config),
        }


def quantize_annotate_layer(to_annotate, quantize_config=None):
    """Marks one layer for quantization by `quantize_apply`.

    Args:
        to_annotate: A Keras layer (built-in, or custom with a config).
        quantize_config: A `QuantizeConfig`; required for layers tfopt has no
            default for.

    Returns:
        A `QuantizeAnnotate` layer to use in place of `to_annotate`.

    Raises:
        TypeError: If `to_annotate` is not a layer or the config is not a
            `QuantizeConfig`.

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    x = tfopt.quantization.quantize_annotate_layer(keras.layers.Conv2D(8, 3))(inputs)
    ```
    """
    if not isinstance(to_annotate, layers.Layer) or isinstance(to_annotate, keras.Model):
        raise TypeError(f"quantize_annotate_layer takes a layer, got {type(to_annotate).__name__}.")
    return QuantizeAnnotate(to_annotate, quantize_config)


def quantize_annotate_model(to_annotate):
    """Returns a copy of a model with every layer marked for quantization.

    Args:
        to_annotate: A built Sequential or Functional model.

    Returns:
        A model for `quantize_apply` (computes exactly like the original).

    Raises:
        TypeError: If `to_annotate` is not a Sequential/Functional model.
    """
    _check_model(to_annotate, "quantize_annotate_model")

    def clone(layer):
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, QuantizeAnnotate):
            return new, layer.get_weights()
        build_config = layer.get_build_config()
        if build_config:
            new.build_from_config(build_config)
        return QuantizeAnnotate(new), layer.get_weights()

    return clone_with(to_annotate, clone, target_of=_annotated_target)


def quantize_apply(model, preserve_sparsity=False, skip_unsupported=False):
    """Quantizes the annotated layers of a model for QAT.

    Kernels of annotated layers are fake-quantized per channel (int8,
    symmetric); activations between quantized layers get per-tensor int8
    ranges learned during training. Conv/Dense followed by
    BatchNormalization are folded; a following ReLU/ReLU6 is fused (no range
    between them, as in the TFLite kernel); separable convolutions are split
    into depthwise + pointwise. Layers that are not annotated stay float.

    Args:
        model: A model from `quantize_annotate_model`, or one built with
            `quantize_annotate_layer`.
        preserve_sparsity: Keep the kernels' exact zeros (from pruning) at zero
            through training and in the int8 file.
        skip_unsupported: Leave annotated layers tfopt cannot quantize in
            float (with a warning) instead of raising.

    Returns:
        A new Functional model to compile and fine-tune.

    Raises:
        ValueError: If nothing is annotated, the model is already quantized,
            or an annotated layer is unsupported (and not skipped).
        TypeError: If `model` is not a Sequential/Functional model.
    """
    _check_model(model, "quantize_apply")
    # Keyed by the wrapped layer's name, which the stripped copy keeps.
    annotated = {l.layer.name: l for l in model.layers if isinstance(l, QuantizeAnnotate)}
    if not annotated:
        raise ValueError(
            f"Model {model.name!r} has no annotated layer; use quantize_model(model) "
            "to quantize everything, or quantize_annotate_layer/model first."
        )
    configs = {name: l.quantize_config for name, l in annotated.items()}
    plain = _strip_annotations(model)
    return _quantize(plain, set(annotated), configs, preserve_sparsity, skip_unsupported)


def quantize_model(to_quantize, preserve_sparsity=False, skip_unsupported=False):
    """Prepares a whole model for quantization-aware training.

    Equivalent to `quantize_apply(quantize_annotate_model(model))`. A model
    still wrapped for pruning is stripped first and its zeros preserved.

    Args:
        to_quantize: A built Sequential or Functional Keras model.
        preserve_sparsity: Keep the kernels' zeros at zero (automatic for a
            pruning-wrapped model).
        skip_unsupported: Leave unsupported layers in float, with a warning.

    Returns:
        A new model to compile and train; export it with
        `tfopt.export.to_tflite(model, quantization="int8")` (no calibration
        data needed).

    Raises:
        ValueError: On an unsupported layer, an unbuilt or already quantized
            model.
        TypeError: If the model is not Sequential/Functional.

    Example:

    ```python
    qat = tfopt.quantization.quantize_model(model)
    qat.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    qat.fit(x, y, epochs=2)
    exported = tfopt.export.to_tflite(qat, "model.tflite", quantization="int8")
    ```
    """
    from tfopt import pruning

    _check_model(to_quantize, "quantize_model")
    if pruning.api.pruning_wrappers(to_quantize):
        to_quantize = pruning.strip_pruning(to_quantize)
        preserve_sparsity = True
    names = {l.name for l in to_quantize.layers}
    return _quantize(to_quantize, names, {}, preserve_sparsity, skip_unsupported)


def is_quantized(model):
    """Whether a model carries tfopt's fake-quantization layers."""
    from tfopt.pruning.api import iter_layers

    return any(isinstance(l, (QuantizeWrapper, QuantizeActivation)) for l in iter_layers(model))


# -- implementation ----------------------------------------------------------


def _check_model(model, what):
    check_graph_model(model, what, subclassed_hint="Build it functionally to quantize it.")
    if is_quantized(model):
        raise ValueError(f"Model {model.name!r} is already quantized; quantize a float model once.")


def _annotated_target(layer):
    return layer.layer if isinstance(layer, QuantizeAnnotate) else layer


def _strip_annotations(model):
    def clone(layer):
        inner = _annotated_target(layer)
        return inner.__class__.from_config(inner.get_config()), layer.get_weights()

    return clone_with(model, clone)


def _plan(model, selected, configs, skip_unsupported):
    """Decides, per layer name, what quantization does with it."""
    graph = consumers(model)
    plan = {}
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if layer.name not in selected:
            plan[layer.name] = "float"
        elif isinstance(layer, keras.Model):
            raise ValueError(
                f"Nested model {layer.name!r}: quantize its layers by building the "
                "model without nesting (quantization rewrites the whole graph)."
            )
        elif configs.get(layer.name) is not None or config_lib.default_config(layer) is not None:
            plan[layer.name] = "quantize"
        elif isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
            plan[layer.name] = "split"
        elif isinstance(layer, config_lib.PASS_THROUGH):
            plan[layer.name] = "pass"
        elif isinstance(layer, layers.BatchNormalization):
            plan[layer.name] = "batchnorm"
        elif not layer.weights:
            plan[layer.name] = "output"
        else:
            plan[layer.name] = "unsupported"
    # BatchNormalization right after a foldable kernel layer folds into it.
    folds = {}
    for layer in model.layers:
        if plan.get(layer.name) != "batchnorm":
            continue
        producers = [t._keras_history.operation for node in layer._inbound_nodes for t in node.input_tensors]
        producer = producers[0] if len(producers) == 1 else None
        if (producer is not None and plan.get(producer.name) == "quantize"
                and graph[producer.name] == [layer] and transforms.can_fold(producer, layer)):
            plan[layer.name] = "folded"
            folds[producer.name] = layer
        else:
            plan[layer.name] = "unsupported"
    for name, action in plan.items():
        if action != "unsupported":
            continue
        layer = model.get_layer(name)
        if not skip_unsupported:
            raise ValueError(
                f"Layer {name!r} ({type(layer).__name__}) cannot be quantized by tfopt. "
                "Pass skip_unsupported=True to keep it in float, give it a "
                "QuantizeConfig via quantize_annotate_layer, or leave it unannotated."
            )
        warnings.warn(f"Layer {name!r} ({type(layer).__name__}) stays float (skip_unsupported=True).",
                      stacklevel=3)
        plan[name] = "float"
    # A kernel layer's output range is only needed if something other than
    # a fusable ReLU/ReLU6 reads it (TFLite fuses those into the kernel).
    fused = set()
    for name, action in plan.items():
        if action not in ("quantize", "split"):
            continue
        readers = graph[folds[name].name] if name in folds else graph[name]
        if readers and all(config_lib.is_fusable_activation(r) and plan.get(r.name) == "output"
                           for r in readers):
            fused.add(name)
    return plan, folds, fused


def _quantize(model, selected, configs, preserve_sparsity, skip_unsupported):
    model = as_functional(model)
    plan, folds, fused = _plan(model, selected, configs, skip_unsupported)
    original_of = {}  # id(new layer) -> original name
    pointwise_of = {}  # id(depthwise wrapper) -> pointwise wrapper

    def clone(layer):
        action = plan.get(layer.name)
        if action in ("quantize", "split"):
            if action == "split":
                (depthwise, dw_weights), (pointwise, pw_weights) = transforms.split_separable(layer)
                new = QuantizeWrapper(depthwise, preserve_sparsity=preserve_sparsity)
                pointwise_wrapper = QuantizeWrapper(pointwise, preserve_sparsity=preserve_sparsity)
                _build_pointwise(pointwise, layer)
                pointwise_wrapper.build(None)
                pointwise_wrapper.layer.set_weights(pw_weights)
                pointwise_of[id(new)] = pointwise_wrapper
                weights = dw_weights
                inner = depthwise
            elif layer.name in folds:
                inner = layer.__class__.from_config(transforms.folded_config(layer))
                weights = transforms.folded_weights(layer, folds[layer.name])
            else:
                inner = layer.__class__.from_config(layer.get_config())
                weights = layer.get_weights()
            if action == "quantize":
                new = QuantizeWrapper(inner, configs.get(layer.name), preserve_sparsity=preserve_sparsity)
            build_config = layer.get_build_config()
            if build_config:
                inner.build_from_config(build_config)
        else:
            new = layer.__class__.from_config(layer.get_config())
            weights = layer.get_weights() if layer.weights and action != "folded" else None
        original_of[id(new)] = layer.name
        return new, weights

    quantized_tensors = set()  # ids of tensors that carry an int8 range
    raw_kernel_outputs = set()  # kernel outputs waiting for a fused ReLU
    input_quantizers = {}

    def quantized(tensor, name):
        if id(tensor) in quantized_tensors:
            return tensor
        if id(tensor) not in input_quantizers:
            result = QuantizeActivation(name=f"{name}_input_quant")(tensor)
            quantized_tensors.add(id(result))
            input_quantizers[id(tensor)] = result
        return input_quantizers[id(tensor)]

    def call_function(layer, *args, **kwargs):
        name = original_of.get(id(layer), layer.name)
        action = plan.get(name, "float")
        if action == "folded":
            return args[0]
        if action in ("quantize", "split", "output", "pass") and not (
                action == "output" and _reads_raw_kernel(args, raw_kernel_outputs)):
            args = keras.tree.map_structure(
                lambda t: quantized(t, name) if isinstance(t, keras.KerasTensor) else t, args)
        outputs = layer(*args, **kwargs)
        if action == "split":
            middle = QuantizeActivation(name=f"{name}_depthwise_quant")(outputs)
            outputs = pointwise_of[id(layer)](middle)
        if action in ("quantize", "split"):
            if name in fused:
                raw_kernel_outputs.add(id(outputs))
                return outputs
        if action in ("quantize", "split", "output"):
            outputs = QuantizeActivation(name=f"{name}_quant")(outputs)
            quantized_tensors.add(id(outputs))
        elif action == "pass" and all(id(a) in quantized_tensors for a in keras.tree.flatten(args)
                                      if isinstance(a, keras.KerasTensor)):
            quantized_tensors.add(id(outputs))
        return outputs

    def weights_target(new):
        return new.layer if isinstance(new, QuantizeWrapper) else new

    result = clone_with(model, clone, call_function=call_function, target_of=weights_target)
    if preserve_sparsity:
        for layer in result.layers:
            if isinstance(layer, QuantizeWrapper):
                layer.capture_sparsity()
        for wrapper in pointwise_of.values():
            wrapper.capture_sparsity()
    return result


def _reads_raw_kernel(args, raw_kernel_outputs):
    return any(id(t) in raw_kernel_outputs for t in keras.tree.flatten(args)
               if isinstance(t, keras.KerasTensor))


def _build_pointwise(pointwise, separable):
    """Builds the pointwise half of a split separable convolution."""
    channels = separable.depthwise_kernel.shape[-2] * separable.depthwise_kernel.shape[-1]
    rank = len(separable.depthwise_kernel.shape) - 2
    pointwise.build((None,) + (None,) * rank + (channels,))
