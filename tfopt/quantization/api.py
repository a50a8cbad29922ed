"""Quantization-aware training: annotate, apply, quantize a whole model."""

import warnings

import keras
from keras import layers

from tfopt import _compat
from tfopt.graph import as_functional
from tfopt.graph import check_graph_model
from tfopt.graph import clone_with
from tfopt.graph import flatten_nested
from tfopt.quantization import config as config_lib
from tfopt.quantization import transforms
from tfopt.quantization.layers import ChannelAffine
from tfopt.quantization.layers import QuantizeActivation
from tfopt.quantization.layers import QuantizedBidirectional
from tfopt.quantization.layers import QuantizedLayerNormalization
from tfopt.quantization.layers import QuantizedMultiHeadAttention
from tfopt.quantization.layers import QuantizedPReLU
from tfopt.quantization.layers import QuantizedRecurrent
from tfopt.quantization.layers import QuantizedScaledResidual
from tfopt.quantization.layers import QuantizedSwish
from tfopt.quantization.layers import QuantizedTimeDistributed
from tfopt.quantization.layers import QuantizeWrapper
from tfopt.quantization.layers import SCORE_ATTENTION
from tfopt.quantization.layers import SIGMOID_RANGE
from tfopt.quantization.layers import SWISH_NAMES
from tfopt.quantization.layers import TANH_RANGE


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
        if not isinstance(layer, layers.Layer):
            return layer, None  # a raw keras.ops node
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, QuantizeAnnotate):
            return new, layer.get_weights()
        build_config = layer.get_build_config()
        if build_config:
            new.build_from_config(build_config)
        return QuantizeAnnotate(new), layer.get_weights()

    return clone_with(to_annotate, clone, target_of=_annotated_target)


def quantize_apply(model, preserve_sparsity=False, skip_unsupported=False, int8_recurrent=True):
    """Quantizes the annotated layers of a model for QAT.

    What happens to each layer is read from `config.QUANTIZE_TABLE` (and
    `config.OPS_TABLE` for raw `keras.ops` nodes): kernels are fake-quantized
    to int8 (symmetric, per channel or per tensor); activations between
    quantized layers get per-tensor int8 ranges learned during training.
    Conv/Dense followed by BatchNormalization are folded; a following
    ReLU/ReLU6 is fused (no range between them, as in the TFLite kernel);
    separable convolutions are split into depthwise + pointwise; per-channel
    affines (standalone BatchNormalization, Normalization, Rescaling) become
    1x1 depthwise convolutions. Nested models are flattened first. Layers
    that are not annotated stay float; raw ops nodes are quantized only when
    every layer is annotated.

    Args:
        model: A model from `quantize_annotate_model`, or one built with
            `quantize_annotate_layer`.
        preserve_sparsity: Keep the kernels' exact zeros (from pruning) at zero
            through training and in the int8 file.
        skip_unsupported: Leave annotated layers tfopt cannot quantize in
            float (with a warning) instead of raising.
        int8_recurrent: Run eligible LSTM/GRU/SimpleRNN layers (and
            Bidirectional layers of them) as unrolled int8 steps
            (`QuantizedRecurrent`, the default); False keeps them a float
            island (see README).

    Returns:
        A new Functional model to compile and fine-tune.

    Raises:
        ValueError: If nothing is annotated, the model is already quantized,
            or an annotated layer is unsupported (and not skipped).
        TypeError: If `model` is not a Sequential/Functional model.
    """
    _check_model(model, "quantize_apply")
    model = flatten_nested(model)
    # Keyed by the wrapped layer's name, which the stripped copy keeps.
    annotated = {l.layer.name: l for l in model.layers if isinstance(l, QuantizeAnnotate)}
    if not annotated:
        raise ValueError(
            f"Model {model.name!r} has no annotated layer; use quantize_model(model) "
            "to quantize everything, or quantize_annotate_layer/model first."
        )
    configs = {name: l.quantize_config for name, l in annotated.items()}
    plain = _strip_annotations(model)
    # Raw keras.ops nodes cannot be annotated: they are quantized (as their
    # table rows say) when every layer is.
    everything = all(isinstance(l, (QuantizeAnnotate, layers.InputLayer)) for l in model.layers)
    return _quantize(plain, set(annotated), configs, preserve_sparsity, skip_unsupported,
                     ops_selected=everything, int8_recurrent=int8_recurrent)


def quantize_model(to_quantize, preserve_sparsity=False, skip_unsupported=False, int8_recurrent=True):
    """Prepares a whole model for quantization-aware training.

    Equivalent to `quantize_apply(quantize_annotate_model(model))`. A model
    still wrapped for pruning is stripped first and its zeros preserved.

    Args:
        to_quantize: A built Sequential or Functional Keras model.
        preserve_sparsity: Keep the kernels' zeros at zero (automatic for a
            pruning-wrapped model).
        skip_unsupported: Leave unsupported layers in float, with a warning.
        int8_recurrent: Run eligible LSTM/GRU/SimpleRNN layers (tanh/sigmoid,
            SimpleRNN tanh/relu; no mask, dropout or returned state; GRU with
            `reset_after=True`), and Bidirectional layers of them, as
            unrolled int8 steps (`QuantizedRecurrent`/`QuantizedBidirectional`:
            every compute op int8), the default. False keeps every recurrent
            layer a float island (float in and out, exact); ineligible ones
            are float islands either way.

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
    to_quantize = flatten_nested(to_quantize)
    names = {l.name for l in to_quantize.layers}
    return _quantize(to_quantize, names, {}, preserve_sparsity, skip_unsupported,
                     int8_recurrent=int8_recurrent)


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
        if not isinstance(layer, layers.Layer):
            return layer, None  # a raw keras.ops node
        inner = _annotated_target(layer)
        return inner.__class__.from_config(inner.get_config()), layer.get_weights()

    return clone_with(model, clone)


class _Step:
    """What quantization does with one operation of the graph."""

    __slots__ = ("action", "rule", "config", "fold", "fused", "split_activation")

    def __init__(self, action, rule=None, config=None):
        self.action = action
        self.rule = rule
        self.config = config
        self.fold = None  # the BatchNormalization folded into this kernel
        self.fused = False  # output read only by ReLU/ReLU6 fused into the kernel
        self.split_activation = None  # an activation TFLite does not fuse, applied after a range


_KERNEL_ACTIONS = ("kernel", "split", "affine", "attention", "recurrent")
_IO_TO_ACTION = {
    config_lib.KERNEL: "kernel", config_lib.PASS: "pass", config_lib.OUTPUT: "output",
    config_lib.FUSE: "fuse", config_lib.FOLD: "fold", config_lib.AFFINE: "affine",
    config_lib.GATHER: "gather", config_lib.ATTENTION: "attention", config_lib.RECURRENT: "recurrent",
    config_lib.NORM: "norm", config_lib.FLOAT: "island", config_lib.NO_KERNEL: "no_kernel",
}


def _operations(model):
    return [op for op in model.operations if not isinstance(op, layers.InputLayer)]


def _readers(model):
    """Maps id(operation) to the operations (layers and ops nodes) reading it."""
    ops_ = _operations(model)
    known = {id(op) for op in ops_}
    result = {id(op): [] for op in ops_}
    for op in ops_:
        for node in _compat.inbound_nodes(op):
            for tensor in node.input_tensors:
                source = _compat.producer(tensor)
                if id(source) in known and op not in result[id(source)]:
                    result[id(source)].append(op)
    return result


def _inputs_of(op):
    nodes = _compat.inbound_nodes(op)
    return list(nodes[0].input_tensors) if nodes else []


def _plan(model, selected, configs, skip_unsupported, ops_selected, int8_recurrent=False):
    """Decides, per operation (by id), what quantization does with it.

    Reads only `config.QUANTIZE_TABLE`/`OPS_TABLE` (via `rule_for`) and the
    user's `QuantizeConfig`s.
    """
    readers = _readers(model)
    plan = {}
    unsupported = []
    for op in _operations(model):
        is_layer = isinstance(op, layers.Layer)
        if (is_layer and op.name not in selected) or (not is_layer and not ops_selected):
            plan[id(op)] = _Step("float")
            continue
        if isinstance(op, keras.Model):  # flatten_nested ran first: cannot happen
            raise ValueError(f"Nested model {op.name!r} was not flattened.")
        user_config = configs.get(op.name) if is_layer else None
        if user_config is not None:
            plan[id(op)] = _Step("kernel", config=user_config)
            continue
        rule = config_lib.rule_for(op)
        if rule is None:
            unsupported.append((op, "it has weights and no row in tfopt's QUANTIZE_TABLE"))
            continue
        if rule.io == config_lib.NO_KERNEL:  # the row's note says why and the way out
            unsupported.append((op, rule.note))
            continue
        if rule.io == config_lib.ATTENTION and isinstance(op, layers.Attention):
            if type(op) not in SCORE_ATTENTION:
                # A user's subclass has its own call: quantize its inputs and output only.
                rule = config_lib.DEFAULT_WEIGHTLESS
            elif (reason := _attention_unsupported(op)) is not None:
                unsupported.append((op, reason))
                continue
        action = _IO_TO_ACTION[rule.io]
        if isinstance(op, layers.TimeDistributed):
            action, reason = _time_distributed_action(op)
            if reason:
                unsupported.append((op, reason))
                continue
        if action == "kernel" and isinstance(op, (layers.SeparableConv1D, layers.SeparableConv2D)):
            action = "split"
        step = plan[id(op)] = _Step(action, rule)
        if action == "kernel" and is_layer and not isinstance(op, layers.MultiHeadAttention):
            # A TimeDistributed's activation is its layer's.
            owner = op.layer if isinstance(op, layers.TimeDistributed) else op
            activation = config_lib.activation_name(owner)
            if activation not in (None, "linear") + config_lib.FUSABLE_ACTIVATIONS:
                step.split_activation = owner.activation
        if (action == "fuse" and isinstance(op, layers.Activation)
                and config_lib.activation_name(op) == "linear"):
            # An identity (ConvNeXt's drop-path stand-in): the converter drops
            # it, so a range of its own would only re-round its input.
            step.action = "pass"
        if action == "output" and _identity_reduction(op):
            # The converter rewrites it as a RESHAPE, which must keep its
            # input's scale: a range of its own cannot convert.
            step.action = "pass"
        if action == "recurrent" and not (int8_recurrent and _int8_recurrent(op)):
            step.action = "island"
        if action == "norm" and type(op) is not layers.LayerNormalization:
            # A user's subclass has its own call/config: QuantizedLayerNormalization
            # would drop them. Its output range is quantized instead.
            step.action = "output"
        if action == "affine":
            reason = transforms.affine_unsupported(op)
            if reason:
                unsupported.append((op, reason))
                del plan[id(op)]
    # BatchNormalization right after a foldable kernel layer folds into it;
    # anywhere else it is a per-channel affine.
    for op in _operations(model):
        step = plan.get(id(op))
        if step is None or step.action != "fold":
            continue
        sources = [_compat.producer(t) for t in _inputs_of(op)]
        source = sources[0] if len(sources) == 1 else None
        source_step = plan.get(id(source)) if source is not None else None
        if (source_step is not None and source_step.action == "kernel" and source_step.config is None
                and source_step.split_activation is None and readers[id(source)] == [op]
                and transforms.can_fold(source, op)):
            step.action = "folded"
            source_step.fold = op
        elif (source_step is not None and source_step.action == "island"
              and readers[id(source)] == [op] and _can_fold_into_float_conv(source, op)):
            # A float island's conv (Conv3D): fold it in float, exact, rather
            # than an int8 affine between two float ops.
            step.action = "folded"
            source_step.fold = op
        else:
            reason = transforms.affine_unsupported(op)
            if reason:
                unsupported.append((op, reason))
                del plan[id(op)]
            else:
                step.action = "affine"
    for op, reason in unsupported:
        if not skip_unsupported:
            # A reason from the table may name its own way out.
            way_out = "." if "skip_unsupported" in reason else (
                ". Pass skip_unsupported=True to keep it in float, give it a "
                "QuantizeConfig via quantize_annotate_layer, or leave it unannotated.")
            raise ValueError(
                f"Layer {op.name!r} ({type(op).__name__}) cannot be quantized by tfopt: {reason}{way_out}"
            )
        warnings.warn(f"Layer {op.name!r} ({type(op).__name__}) stays float (skip_unsupported=True): "
                      f"{reason}.", stacklevel=4)
        plan[id(op)] = _Step("float")
    # A kernel's output range is only needed if something other than a
    # fusable ReLU/ReLU6 reads it (TFLite fuses those into the kernel).
    by_id = {id(op): op for op in _operations(model)}
    for key, step in plan.items():
        if step.action not in ("kernel", "split", "affine") or step.split_activation is not None:
            continue
        op = by_id[key]
        if config_lib.activation_name(op) not in (None, "linear") or isinstance(op, layers.TimeDistributed):
            continue  # (a TimeDistributed's output is reshaped: nothing fuses into its kernel)
        outs = readers[id(step.fold)] if step.fold is not None else readers[key]
        if outs and all(config_lib.is_fusable_activation(r) and plan.get(id(r)) is not None
                        and plan[id(r)].action == "fuse" for r in outs):
            step.fused = True
    return plan


def _quantize(model, selected, configs, preserve_sparsity, skip_unsupported, ops_selected=True,
              int8_recurrent=False):
    model = as_functional(model)
    plan = _plan(model, selected, configs, skip_unsupported, ops_selected, int8_recurrent)
    original_of = {}  # id(new operation) -> id(original operation)
    pointwise_of = {}  # id(depthwise wrapper) -> pointwise wrapper
    copies = []  # (new layer, original) whose weights are copied sublayer by sublayer

    def clone(layer):
        step = plan.get(id(layer))
        if not isinstance(layer, layers.Layer):
            return layer, None  # a raw keras.ops node: stateless, reused as is
        action = step.action if step is not None else "float"
        weights = None
        if isinstance(layer, layers.TimeDistributed) and action in ("kernel", "pass", "output"):
            # Its layer on the (batch * steps) batch: the inner op in the file.
            config = layer.get_config()
            if step.split_activation is not None:  # applied after a range, as for a Dense
                config["layer"] = {**config["layer"], "config": {**config["layer"]["config"],
                                                                 "activation": "linear"}}
            inner = QuantizedTimeDistributed.from_config(config)
            inner.build(_inputs_of(layer)[0].shape)
            inner.set_weights(layer.get_weights())
            new = QuantizeWrapper(inner, config_lib.TimeDistributedQuantizeConfig(),
                                  preserve_sparsity=preserve_sparsity) if action == "kernel" else inner
        elif action in ("kernel", "split", "gather"):
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
            elif step.fold is not None:
                inner = layer.__class__.from_config(transforms.folded_config(layer))
                weights = transforms.folded_weights(layer, step.fold)
            else:
                config = layer.get_config()
                if step.split_activation is not None:
                    config["activation"] = "linear"
                inner = layer.__class__.from_config(config)
                weights = layer.get_weights()
            build_config = layer.get_build_config()
            if build_config:
                inner.build_from_config(build_config)
            if action != "split":
                new = QuantizeWrapper(inner, step.config, preserve_sparsity=preserve_sparsity)
        elif action == "affine":
            scale, shift = transforms.affine_scale_shift(layer)
            inner = ChannelAffine(name=f"{layer.name}_affine", trainable=bool(layer.trainable_weights))
            inner.build(_inputs_of(layer)[0].shape)
            new = QuantizeWrapper(inner, preserve_sparsity=preserve_sparsity)
            weights = [scale.reshape(1, 1, -1, 1).astype("float32"), shift.astype("float32")]
        elif action == "recurrent":
            if isinstance(layer, layers.Bidirectional):
                inner = QuantizedBidirectional(
                    _recurrent_config(layer.forward_layer, layer.return_sequences),
                    _recurrent_config(layer.backward_layer, layer.return_sequences),
                    merge_mode=layer.merge_mode, name=layer.name)
            else:
                inner = QuantizedRecurrent.from_config(
                    {**_recurrent_config(layer, layer.return_sequences), "name": layer.name})
            inner.build(_inputs_of(layer)[0].shape)
            new = QuantizeWrapper(inner, preserve_sparsity=preserve_sparsity)
            copies.append((inner, layer))
        elif action == "output" and type(layer) is layers.PReLU:
            new = QuantizedPReLU.from_config(layer.get_config())
            new.build(_inputs_of(layer)[0].shape)
            new.alpha.assign(layer.alpha)
        elif action == "norm":
            new = QuantizedLayerNormalization.from_config(layer.get_config())
            new.build(_inputs_of(layer)[0].shape)
            copies.append((new, layer))
        elif action == "attention" and type(layer) in SCORE_ATTENTION:
            new = SCORE_ATTENTION[type(layer)].from_config(layer.get_config())
            copies.append((new, layer))  # its scale/concat_score_weight, once built
        elif action == "attention":
            inner = QuantizedMultiHeadAttention.from_config(layer.get_config())
            inner.build_from_config(layer.get_build_config())
            new = QuantizeWrapper(inner, preserve_sparsity=preserve_sparsity)
            copies.append((inner, layer))
        elif action in ("fuse", "output") and _is_swish(layer):
            new = QuantizedSwish(name=layer.name)
        elif action == "output" and type(layer) is _compat.keras_custom_scale_class():
            new = QuantizedScaledResidual(layer.scale, name=layer.name)
        elif action == "island" and step.fold is not None:
            new = layer.__class__.from_config(transforms.folded_config(layer))
            weights = transforms.folded_weights(layer, step.fold)
        else:
            config = layer.get_config()
            if action == "island" and isinstance(layer, layers.RNN) and _static_steps(layer):
                # Unrolled, a float RNN converts to builtin ops; rolled, it
                # becomes a while loop over TensorLists the converter rejects.
                config["unroll"] = True
            if action == "island" and isinstance(layer, layers.Bidirectional) and _static_steps(layer):
                for key in ("layer", "backward_layer"):
                    if isinstance(config.get(key), dict) and "unroll" in config[key].get("config", {}):
                        config[key] = {**config[key], "config": {**config[key]["config"], "unroll": True}}
            new = layer.__class__.from_config(config)
            weights = layer.get_weights() if layer.weights and action != "folded" else None
        original_of[id(new)] = id(layer)
        return new, weights

    quantized_tensors = set()  # ids of tensors that carry an int8 range
    raw_kernel_outputs = set()  # kernel outputs waiting for a fused ReLU
    input_quantizers = {}
    range_names = set()

    def unique(name):
        # One range per tensor: an op with several outputs (ops.split,
        # ops.unstack) or several unquantized inputs gets numbered ranges.
        candidate, i = name, 0
        while candidate in range_names:
            i += 1
            candidate = f"{name}_{i}"
        range_names.add(candidate)
        return candidate

    def quantized(tensor, name):
        if id(tensor) in quantized_tensors or not _is_float(tensor):
            return tensor
        if id(tensor) not in input_quantizers:
            result = QuantizeActivation(name=unique(f"{name}_input_quant"))(tensor)
            quantized_tensors.add(id(result))
            input_quantizers[id(tensor)] = result
        return input_quantizers[id(tensor)]

    def range_after(tensor, name, source=None):
        result = QuantizeActivation(name=unique(name), fixed_range=_fixed_output_range(source))(tensor)
        quantized_tensors.add(id(result))
        return result

    def call_function(op, *args, **kwargs):
        step = plan.get(original_of.get(id(op), id(op)))
        action = step.action if step is not None else "float"
        name = op.name
        if action == "folded":
            return args[0]
        if action in ("float", "island"):
            return op(*args, **kwargs)
        if action in ("affine", "recurrent"):
            args, kwargs = args[:1], {}  # training/mask do not apply (masked RNNs are islands)
        if not (action == "fuse" and _reads_raw_kernel(args, raw_kernel_outputs)):
            args = keras.tree.map_structure(
                lambda t: quantized(t, name) if isinstance(t, keras.KerasTensor) else t, args)
            kwargs = keras.tree.map_structure(
                lambda t: quantized(t, name) if isinstance(t, keras.KerasTensor) else t, kwargs)
        if (not isinstance(op, layers.Layer) and action == "output"
                and type(op).__name__ in _CONSTANT_ROUNDING_OPS):
            # The converter stores a float constant operand (a position
            # embedding added as a tensor, `x * weights`) as int8 over its
            # own range: the QAT model adds the rounded values it will hold.
            args = keras.tree.map_structure(_as_int8_constant, args)
        if _plain_resizing(op):
            # Keras's Resizing layer traces to a graph whose following
            # fake-quant nodes the converter cannot place; the bare op
            # converts to an int8 RESIZE_BILINEAR/RESIZE_NEAREST_NEIGHBOR.
            outputs = keras.ops.image.resize(args[0], (op.height, op.width), interpolation=op.interpolation)
        elif not isinstance(op, layers.Layer) and _is_swish(op):
            outputs = QuantizedSwish(name=f"{name}_swish")(args[0])
        else:
            outputs = op(*args, **kwargs)
        if action == "split":
            middle = range_after(outputs, f"{name}_depthwise_quant")
            outputs = pointwise_of[id(op)](middle)
        if action in _KERNEL_ACTIONS:
            if step.fused:
                raw_kernel_outputs.add(id(outputs))
                return outputs
            if step.split_activation is not None:
                outputs = range_after(outputs, f"{name}_preact_quant")
                activation = _activation_layer(step.split_activation, f"{name}_activation")
                outputs = activation(outputs)
                op = activation  # the output range is the activation's
        if action in _KERNEL_ACTIONS + ("output", "fuse", "norm"):
            outputs = keras.tree.map_structure(
                lambda t: range_after(t, f"{name}_quant", op) if _is_float(t) else t, outputs)
        elif action == "gather":
            quantized_tensors.add(id(outputs))  # GATHER keeps the int8 table's scale
        elif action == "pass" and all(id(a) in quantized_tensors for a in keras.tree.flatten(args)
                                      if isinstance(a, keras.KerasTensor)):
            keras.tree.map_structure(lambda t: quantized_tensors.add(id(t)), outputs)
        return outputs

    def weights_target(new):
        return new.layer if isinstance(new, QuantizeWrapper) else new

    result = clone_with(model, clone, call_function=call_function, target_of=weights_target)
    for new, old in copies:
        if isinstance(new, QuantizedBidirectional):
            _copy_recurrent_weights(new.forward, old.forward_layer)
            _copy_recurrent_weights(new.backward, old.backward_layer)
        elif isinstance(new, QuantizedRecurrent):
            _copy_recurrent_weights(new, old)
        elif isinstance(new, QuantizedLayerNormalization):
            for attr in ("gamma", "beta"):
                if getattr(old, attr, None) is not None:
                    getattr(new, attr).assign(getattr(old, attr))
        elif isinstance(new, layers.Attention):
            for attr in ("scale", "concat_score_weight"):
                if getattr(old, attr, None) is not None:
                    getattr(new, attr).assign(getattr(old, attr))
        else:
            _copy_attention_weights(new, old)
    if preserve_sparsity:
        for layer in result.layers:
            if isinstance(layer, QuantizeWrapper):
                layer.capture_sparsity()
        for wrapper in pointwise_of.values():
            wrapper.capture_sparsity()
    return result


# Activations whose int8 TFLite kernel has a fixed output range
# (`layers.SIGMOID_RANGE`/`TANH_RANGE`).
_FIXED_RANGES = {"sigmoid": SIGMOID_RANGE, "softmax": SIGMOID_RANGE, "tanh": TANH_RANGE}
_FIXED_OPS = {"Sigmoid": "sigmoid", "Softmax": "softmax", "Tanh": "tanh"}


def _fixed_output_range(op):
    """TFLite's fixed int8 output range of `op`'s kernel, or None."""
    if op is None:
        return None
    if isinstance(op, layers.Softmax):
        return SIGMOID_RANGE
    if isinstance(op, layers.Activation):
        return _FIXED_RANGES.get(config_lib.activation_name(op))
    if not isinstance(op, layers.Layer):
        return _FIXED_RANGES.get(_FIXED_OPS.get(type(op).__name__))
    return None


# The ops nodes whose float constant operand the converter stores as int8
# as it is (config.py's `_op_const` rows). Not Divide/TrueDivide: the file
# multiplies by the rounded reciprocal, not by a rounded divisor.
_CONSTANT_ROUNDING_OPS = ("Add", "Subtract", "Multiply")


def _as_int8_constant(value):
    """A float constant operand as the int8 file holds it (tensors only, not graph tensors).

    The converter quantizes it over its own range (widened to contain 0),
    asymmetric, as `FakeQuantWithMinMaxVars` rounds; a scalar is exact.
    """
    if (isinstance(value, (keras.KerasTensor, keras.Variable)) or not hasattr(value, "shape")
            or not hasattr(value, "dtype")):
        return value  # a graph tensor, a variable (it may change), or a Python number
    array = keras.ops.convert_to_numpy(value)
    if array.dtype.kind != "f" or array.size <= 1:
        return value
    low, high = min(float(array.min()), 0.0), max(float(array.max()), 0.0)
    if low == high:
        return value
    from tfopt.quantization import quantizers

    return keras.ops.convert_to_numpy(quantizers.fake_quant_activation(array, low, high)).astype(array.dtype)


def _is_swish(op):
    """Whether `op` is swish (an Activation layer or a raw `ops.silu` node)."""
    if isinstance(op, layers.Activation):
        return config_lib.activation_name(op) in SWISH_NAMES
    return not isinstance(op, layers.Layer) and type(op).__name__ == "Silu"


def _activation_layer(activation, name):
    """The layer computing a kernel's split-out activation as the int8 file does."""
    if getattr(activation, "__name__", None) in SWISH_NAMES:
        return QuantizedSwish(name=name)
    return layers.Activation(activation, name=name)


def _identity_reduction(op):
    """Whether `op` averages/sums only axes of static size 1 (a reshape in the file)."""
    inputs = _inputs_of(op)
    if len(inputs) != 1 or not isinstance(inputs[0], keras.KerasTensor):
        return False
    shape = inputs[0].shape
    if isinstance(op, (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
                       layers.GlobalAveragePooling3D)):
        spatial = shape[2:] if op.data_format == "channels_first" else shape[1:-1]
        return all(d == 1 for d in spatial)
    if not isinstance(op, layers.Layer) and type(op).__name__ in ("Mean", "Sum"):
        axis = getattr(op, "axis", None)
        if axis is None:  # over the batch too
            return False
        return all(shape[a] == 1 for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    return False


def _can_fold_into_float_conv(conv, bn):
    """Whether `bn` folds into `conv`, a float-island Conv3D (kernel `(d, h, w, in, out)`)."""
    if type(conv) is not layers.Conv3D or not isinstance(bn, layers.BatchNormalization):
        return False
    axis = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
    return (config_lib.activation_name(conv) in (None, "linear") and conv.data_format == "channels_last"
            and conv.groups == 1 and axis in (-1, len(bn.input.shape) - 1))


def _int8_recurrent(layer):
    """Whether an LSTM/GRU/SimpleRNN (or a Bidirectional of them) can run as
    `QuantizedRecurrent`/`QuantizedBidirectional` (else a float island)."""
    inputs = _inputs_of(layer)
    if len(inputs) != 1 or not _static_steps(layer):
        return False
    if getattr(inputs[0], "_keras_mask", None) is not None:
        return False
    if isinstance(layer, layers.Bidirectional):
        return (layer.merge_mode in QuantizedBidirectional.MERGE_MODES and not layer.return_state
                and _int8_cell(layer.forward_layer) and _int8_cell(layer.backward_layer))
    return _int8_cell(layer)


def _int8_cell(layer):
    """Whether one recurrent layer's cell and options are what `QuantizedRecurrent` computes."""
    if not isinstance(layer, (layers.LSTM, layers.GRU, layers.SimpleRNN)):
        return False
    activation = config_lib.activation_name(layer)
    if isinstance(layer, layers.SimpleRNN):
        if activation not in ("tanh", "relu"):
            return False
    elif (activation, getattr(layer.recurrent_activation, "__name__", None)) != ("tanh", "sigmoid"):
        return False
    return (not layer.stateful and not layer.return_state and layer.dropout == 0
            and layer.recurrent_dropout == 0 and getattr(layer, "reset_after", True))


def _recurrent_config(layer, return_sequences):
    """The `QuantizedRecurrent` config computing the Keras recurrent `layer`."""
    cell = ("lstm" if isinstance(layer, layers.LSTM) else
            "gru" if isinstance(layer, layers.GRU) else "simple_rnn")
    return {"cell": cell, "units": layer.units, "return_sequences": return_sequences,
            "use_bias": layer.use_bias, "reset_after": getattr(layer, "reset_after", True),
            "go_backwards": layer.go_backwards, "activation": config_lib.activation_name(layer),
            "name": layer.name}


def _copy_recurrent_weights(new, old):
    for variable, value in zip((new.kernel, new.recurrent_kernel, getattr(new, "bias", None)),
                               old.get_weights()):
        variable.assign(value)


def _time_distributed_action(layer):
    """`(action, None)` for a TimeDistributed QAT can quantize, else `(None, reason)`.

    Its layer must have a kernel row (Dense, Conv2D, ...: quantized like the
    layer, on the reshaped batch) or be weightless with a pass/output row.
    """
    inner = layer.layer
    rule = config_lib.rule_for(inner)
    # A mask (Embedding(mask_zero=True), Masking) arrives as the `mask`
    # argument: not an input. Keras only hands it to a layer that takes
    # masks and passes it on to the layers after (as the QAT layer does).
    nodes = _compat.inbound_nodes(layer)
    mask = nodes[0].arguments.kwargs.get("mask") if nodes else None
    inputs = [t for t in _inputs_of(layer) if t is not mask]
    way_out = ("; wrap a Dense/Conv/DepthwiseConv (or a weightless layer) in TimeDistributed, "
               "or apply the layer to a reshaped (batch * steps, ...) tensor yourself")
    if len(inputs) != 1 or any(d is None for d in inputs[0].shape[1:]):
        return None, "TimeDistributed needs one input with static time and feature dimensions"
    if mask is not None and inner._call_has_mask_arg:
        return None, (f"it receives a mask (from Embedding(mask_zero=True) or Masking) and its layer "
                      f"{inner.name!r} ({type(inner).__name__}) takes masks, which the int8 layer on "
                      "the (batch * steps) batch cannot apply; drop the mask before it (e.g. "
                      "Embedding(mask_zero=False)), or pass skip_unsupported=True to keep it float")
    if (rule is not None and rule.io == config_lib.KERNEL and rule.weights
            and config_lib.default_config(inner) is not None
            and not isinstance(inner, (layers.SeparableConv1D, layers.SeparableConv2D,
                                       layers.MultiHeadAttention, layers.Conv1D))):
        return "kernel", None
    if rule is not None and not inner.weights and rule.io in (config_lib.PASS, config_lib.OUTPUT):
        return _IO_TO_ACTION[rule.io], None
    return None, f"its layer {inner.name!r} ({type(inner).__name__}) is not supported inside TimeDistributed" + way_out


def _plain_resizing(op):
    return (type(op) is layers.Resizing and op.data_format == "channels_last" and not op.antialias
            and not op.crop_to_aspect_ratio and not op.pad_to_aspect_ratio)


def _static_steps(layer):
    inputs = _inputs_of(layer)
    return bool(inputs) and len(inputs[0].shape) == 3 and inputs[0].shape[1] is not None


def _is_float(tensor):
    return isinstance(tensor, keras.KerasTensor) and "float" in str(tensor.dtype)


def _attention_unsupported(layer):
    """Why `layer` (Attention/AdditiveAttention) cannot run int8, or None."""
    for node in _compat.inbound_nodes(layer):
        kwargs = node.arguments.kwargs
        masked = kwargs.get("mask") is not None or any(
            getattr(t, "_keras_mask", None) is not None for t in node.input_tensors)
        if masked or kwargs.get("use_causal_mask"):
            return ("its masks (query/value masks or use_causal_mask) are applied as `scores - 1e9` "
                    "before the softmax, which an int8 range on the scores cannot hold; drop the mask "
                    "(e.g. Embedding(mask_zero=False), no use_causal_mask), or pass "
                    "skip_unsupported=True to keep this layer float")
    return None


def _copy_attention_weights(new, old):
    for attr in ("_query_dense", "_key_dense", "_value_dense", "_output_dense", "_gate_dense"):
        source = getattr(old, attr, None)
        if source is not None and source.weights:
            getattr(new, attr).set_weights(source.get_weights())


def _reads_raw_kernel(args, raw_kernel_outputs):
    return any(id(t) in raw_kernel_outputs for t in keras.tree.flatten(args)
               if isinstance(t, keras.KerasTensor))


def _build_pointwise(pointwise, separable):
    """Builds the pointwise half of a split separable convolution."""
    channels = separable.depthwise_kernel.shape[-2] * separable.depthwise_kernel.shape[-1]
    rank = len(separable.depthwise_kernel.shape) - 2
    pointwise.build((None,) + (None,) * rank + (channels,))
