"""The layers quantization-aware training inserts into a model."""

import keras
from keras import layers
from keras import ops

from tfopt.quantization import quantizers
from tfopt.substitution import SubstitutingWrapper
from tfopt.substitution import call_with_values

# Decay of the moving average of activation ranges. tfmot uses 0.999; QAT
# fine-tunes here run a few hundred steps, so the ranges follow faster.
RANGE_DECAY = 0.99

# TFLite's fixed int8 output ranges: LOGISTIC and SOFTMAX write scale 1/256,
# zero point -128; TANH scale 1/128, zero point 0 (whatever range follows,
# the converter then adds a requantizing QUANTIZE). QAT uses these ranges so
# that the Keras model rounds once, where the file does.
SIGMOID_RANGE = (0.0, 255.0 / 256.0)
TANH_RANGE = (-1.0, 127.0 / 128.0)


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeActivation(layers.Layer):
    """Fake-quantizes a tensor to int8 with a range learned in training.

    In training mode the range is a moving average of batch min/max
    (initialised from the first batch) and always contains 0; in inference
    it is frozen. The range variables are saved and checkpointed.

    Args:
        decay: Moving-average decay of the range.
        fixed_range: Optional `(min, max)` kept as is (not learned), e.g.
            the fixed output range of TFLite's int8 LOGISTIC `(0, 255/256)`
            and TANH `(-1, 127/128)`, so the file rounds exactly like QAT.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, decay=RANGE_DECAY, fixed_range=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # elementwise: a mask passes through
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay!r} must be in [0, 1).")
        if fixed_range is not None:
            fixed_range = tuple(float(v) for v in fixed_range)
            if len(fixed_range) != 2 or not fixed_range[0] <= 0.0 <= fixed_range[1]:
                raise ValueError(f"fixed_range={fixed_range!r} must be (min, max) with min <= 0 <= max.")
        self.decay = decay
        self.fixed_range = fixed_range

    def build(self, input_shape):
        def scalar(name, value):
            return self.add_weight(
                name=name, shape=(), initializer=keras.initializers.Constant(value),
                trainable=False, aggregation="only_first_replica",
            )

        # tfmot's initial range; replaced by the first training batch's.
        low, high = self.fixed_range or (-6.0, 6.0)
        self.range_min = scalar("range_min", low)
        self.range_max = scalar("range_max", high)
        self.range_seen = scalar("range_seen", 0.0)  # 0 until the first batch

    def call(self, inputs, training=None):
        if training and self.fixed_range is None:
            # Ranges are statistics, not trained: no gradient through them.
            # Min/max of the global batch (across tf.distribute replicas and
            # workers), so every replica keeps the same range.
            from tfopt.distribute import cross_replica_min_max

            low, high = cross_replica_min_max(inputs)
            batch_min = ops.stop_gradient(ops.minimum(low, 0.0))
            batch_max = ops.stop_gradient(ops.maximum(high, 0.0))
            first = ops.equal(self.range_seen, 0.0)
            new_min = ops.where(first, batch_min, self.decay * self.range_min + (1 - self.decay) * batch_min)
            new_max = ops.where(first, batch_max, self.decay * self.range_max + (1 - self.decay) * batch_max)
            self.range_min.assign(new_min)
            self.range_max.assign(new_max)
            self.range_seen.assign(1.0)
            return quantizers.fake_quant_activation(inputs, new_min, new_max)
        return quantizers.fake_quant_activation(inputs, self.range_min, self.range_max)

    def get_prunable_weights(self):
        # Ranges, not weights: supported by pruning, never pruned.
        return []

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "fixed_range": self.fixed_range}


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeWrapper(SubstitutingWrapper):
    """Computes a layer with per-channel int8 fake-quantized kernels.

    The kernels named by the layer's `QuantizeConfig` are replaced, inside
    the call only, by their fake-quantized values; the float variables keep
    training (straight-through gradients). A layer with one kernel and a
    bias adds the bias rounded to the int32 grid the file stores it on
    (`quantized_bias`), once the wrapper is called in a graph where its
    input's range is known. With `preserve_sparsity`, a mask
    of the kernel's zeros (taken when the wrapper is created) keeps them
    exactly zero through training and in the int8 file.

    Args:
        layer: The layer to quantize.
        quantize_config: A `QuantizeConfig` (default: tfopt's for the type).
        preserve_sparsity: Keep the kernels' zeros at zero.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, layer, quantize_config=None, preserve_sparsity=False, **kwargs):
        from tfopt.quantization import config as config_lib

        if isinstance(layer, QuantizeWrapper):
            raise ValueError(f"Layer {layer.name!r} is already quantized; quantize each layer once.")
        if isinstance(quantize_config, dict):
            quantize_config = keras.saving.deserialize_keras_object(quantize_config)
        if quantize_config is None:
            quantize_config = config_lib.default_config(layer)
            if quantize_config is None:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) has no default "
                    "QuantizeConfig; pass one (see tfopt.quantization.QuantizeConfig)."
                )
        if not isinstance(quantize_config, config_lib.QuantizeConfig):
            raise TypeError(f"quantize_config must be a QuantizeConfig, got {quantize_config!r}.")
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config
        self.preserve_sparsity = bool(preserve_sparsity)
        # A mask (Embedding(mask_zero=True), Masking) flows on as through the
        # layer alone (no "this layer will destroy the mask" warning).
        self.supports_masking = layer.supports_masking

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._kernels = self.quantize_config.checked_weights(self.layer)
        self.sparsity_masks = [
            self.add_weight(
                name=f"sparsity_mask_{i}", shape=kernel.shape, initializer="ones",
                trainable=False, aggregation="only_first_replica",
            )
            for i, (kernel, _) in enumerate(self._kernels)
        ] if self.preserve_sparsity else []
        self.built = True

    def get_prunable_weights(self):
        """The quantized kernels, so a QAT model can be pruned while it trains.

        Pruning wraps this wrapper: the mask applies first and the kernel is
        fake-quantized after, with ranges of the pruned values, as the int8
        file will hold them.
        """
        return [kernel for kernel, _ in self._kernels]

    def capture_sparsity(self):
        """Records the kernels' current zeros as the masks to preserve."""
        for (kernel, _), mask in zip(self._kernels, self.sparsity_masks):
            mask.assign(ops.cast(ops.not_equal(kernel, 0), mask.dtype))

    def _float_kernels(self):
        values = []
        for i, (kernel, _) in enumerate(self._kernels):
            value = ops.convert_to_tensor(kernel)
            if self.preserve_sparsity:
                value = value * ops.cast(self.sparsity_masks[i], value.dtype)
            values.append(value)
        return values

    def quantized_kernels(self):
        """The kernels as the int8 file will hold them (dequantized)."""
        return [quantizers.fake_quant_weight(value, granularity)
                for value, (_, granularity) in zip(self._float_kernels(), self._kernels)]

    def quantized_bias(self, float_kernel=None):
        """The bias as the int8 file holds it (int32, scale input x weight scale), or None.

        Only for a layer with one quantized kernel and a bias whose input is
        an int8 tensor with a known range (see `input_quantizer`); else None
        (the float bias is used, as before). The file computes
        `sum(x_q * w_q) + round(b / (s_x * s_w)) * s_x * s_w`: rounding the
        bias here removes the last systematic difference between a kernel
        layer of the QAT model and its int8 kernel in the file.
        """
        bias = getattr(self.layer, "bias", None)
        if bias is None or len(self._kernels) != 1 or len(bias.shape) > 1:
            return None
        if not any(bias is w for w in self.layer.weights):
            return None
        quantizer = input_quantizer(self)
        if quantizer is None:
            return None
        granularity = self._kernels[0][1]
        if float_kernel is None:
            float_kernel = self._float_kernels()[0]
        # From the float kernel (same ranges): a second reader of the
        # fake-quantized kernel would hide it from the converter, which then
        # requantizes the weights with ranges of its own.
        weight_scale = quantizers.weight_scales(float_kernel, granularity)
        if len(weight_scale.shape) and tuple(weight_scale.shape) != tuple(bias.shape):
            return None
        input_scale = (ops.maximum(quantizer.range_max, 0.0) - ops.minimum(quantizer.range_min, 0.0)) / 255.0
        return quantizers.fake_quant_bias(ops.convert_to_tensor(bias), input_scale, weight_scale)

    def call(self, inputs, *args, **kwargs):
        if _is_plain_conv1d(self.layer):
            return self._conv1d_as_conv2d(inputs)
        if _is_plain_depthwise1d(self.layer) and [(id(k), g) for k, g in self._kernels] == [
                (id(self.layer.kernel), "depthwise")]:
            return self._depthwise1d_as_2d(inputs)
        if not args and kwargs.get("mask") is None and _matmul_equation(self.layer, inputs):
            return self._as_matmul(inputs)
        replacements = [(k, q) for (k, _), q in zip(self._kernels, self.quantized_kernels())]
        bias = self.quantized_bias() if replacements else None
        if bias is not None:
            replacements.append((self.layer.bias, bias))
        outputs, losses = call_with_values(self.layer, replacements, inputs, *args, **kwargs)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def _as_matmul(self, inputs):
        # A Dense on rank > 2 inputs (or an EinsumDense that is a matmul
        # over its last axes) converts to RESHAPE + FULLY_CONNECTED +
        # RESHAPE + ADD: the bias is added after the reshape, so the
        # FULLY_CONNECTED output has no range and the converter leaves it
        # float. Computing it as a 2-D matmul with the bias before the
        # reshape gives the int8 FULLY_CONNECTED TFLite runs for rank 2.
        layer = self.layer
        kernel = self.quantized_kernels()[0]
        return matmul_apply(layer, inputs, kernel, self.quantized_bias())

    def _conv1d_as_conv2d(self, inputs):
        # Keras's Conv1D expands its kernel to 4-D after we would quantize
        # it, which moves the per-channel axis and breaks TFLite conversion
        # (why tfmot cannot quantize Conv1D). Quantizing the 4-D kernel of
        # the equivalent 1xk Conv2D gives the graph TFLite builds anyway.
        layer = self.layer
        kernel, bias = self._kernel_as_2d("per_channel")
        x = ops.expand_dims(inputs, 1)
        padding = layer.padding
        if padding == "causal":
            left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            x = ops.pad(x, [[0, 0], [0, 0], [left, 0], [0, 0]])
            padding = "valid"
        y = ops.conv(x, kernel, strides=(1, layer.strides[0]), padding=padding,
                     dilation_rate=(1, layer.dilation_rate[0]), data_format="channels_last")
        return _finish_as_1d(layer, y, bias)

    def _depthwise1d_as_2d(self, inputs):
        # As for Conv1D: Keras expands the 3-D depthwise kernel `(k, in, m)`
        # after it would be fake-quantized, so the converter meets a
        # per-channel range whose axis the expansion moved ("'tfl.reshape'
        # op requires 'output' type ..."). Quantizing the `(1, k, in, m)`
        # kernel of the equivalent 1xk DepthwiseConv2D (per `in * m` output
        # channel, as DepthwiseConv2D) is the graph TFLite builds anyway.
        layer = self.layer
        kernel, bias = self._kernel_as_2d("depthwise")
        y = ops.depthwise_conv(ops.expand_dims(inputs, 1), kernel, strides=(1, layer.strides[0]),
                               padding=layer.padding, dilation_rate=(1, layer.dilation_rate[0]),
                               data_format="channels_last")
        return _finish_as_1d(layer, y, bias)

    def _kernel_as_2d(self, granularity):
        """The 1-D layer's kernel as the `(1, k, ...)` kernel TFLite runs, fake-quantized, and its bias.

        The bias is the one the file holds (None: use the float bias).
        """
        kernel = ops.expand_dims(ops.convert_to_tensor(self.layer.kernel), 0)
        if self.preserve_sparsity:
            kernel = kernel * ops.expand_dims(ops.convert_to_tensor(self.sparsity_masks[0]), 0)
        bias = self.quantized_bias(kernel) if self.layer.use_bias else None
        return quantizers.fake_quant_weight(kernel, granularity), bias

    def get_config(self):
        return {
            **super().get_config(),
            "quantize_config": keras.saving.serialize_keras_object(self.quantize_config),
            "preserve_sparsity": self.preserve_sparsity,
        }


def _matmul_equation(layer, inputs):
    """`(n_free, n_contracted)` if `layer` on `inputs` is a 2-D matmul in disguise, else None."""
    if not isinstance(inputs, keras.KerasTensor) and not hasattr(inputs, "shape"):
        return None
    rank = len(inputs.shape)
    if type(layer) is layers.Dense:
        if rank <= 2 or any(d is None for d in inputs.shape[1:]):
            return None
        return rank - 1, 1
    if isinstance(layer, layers.EinsumDense):
        equation = layer.equation.replace(" ", "")
        if "..." in equation or "->" not in equation:
            return None
        lhs, out = equation.split("->")
        a, k = lhs.split(",")
        contracted = "".join(c for c in a if c in k and c not in out)
        n = len(contracted)
        if (not n or a[len(a) - n:] != contracted or k[:n] != contracted
                or out != a[:len(a) - n] + k[n:] or len(a) != rank
                or any(d is None for d in inputs.shape[1:])):
            return None
        bias_axes = layer.bias_axes or ""
        if any(c not in k[n:] for c in bias_axes):
            return None
        return len(a) - n, n
    return None


def matmul_apply(layer, inputs, kernel, bias=None):
    """`layer(inputs)` (Dense or EinsumDense) with `kernel` (and `bias`, default the layer's), as one 2-D matmul."""
    n_free, n_con = _matmul_equation(layer, inputs)
    contracted = 1
    for d in inputs.shape[n_free:]:
        contracted *= d
    kernel_free = tuple(kernel.shape[n_con:])
    units = 1
    for d in kernel_free:
        units *= d
    x = ops.reshape(inputs, (-1, contracted))
    y = ops.matmul(x, ops.reshape(kernel, (contracted, units)))
    if bias is None:
        bias = getattr(layer, "bias", None)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        if isinstance(layer, layers.EinsumDense):
            # Bias axes are a subset of the kernel's free axes, in order.
            k = layer.equation.replace(" ", "").split("->")[0].split(",")[1][n_con:]
            shape = [kernel_free[i] if c in (layer.bias_axes or "") else 1 for i, c in enumerate(k)]
            bias = ops.broadcast_to(ops.reshape(bias, shape), kernel_free)
        y = y + ops.reshape(bias, (units,))
    y = ops.reshape(y, (-1,) + tuple(inputs.shape[1:n_free]) + kernel_free)
    activation = getattr(layer, "activation", None)
    return activation(y) if activation is not None else y


class _MatmulEinsumDense(layers.EinsumDense):
    """An EinsumDense computed as a 2-D matmul (see `matmul_apply`)."""

    def call(self, inputs, training=None):
        if _matmul_equation(self, inputs):
            return matmul_apply(self, inputs, self.kernel)
        return super().call(inputs, training=training)


def input_quantizer(layer):
    """The `QuantizeActivation` whose int8 tensor `layer` reads in its graph, or None.

    Follows the graph back through operations that keep their input's
    int8 scale (the table's pass-through rows: reshapes, padding, pooling
    by max, dropout; an average over a 1x1 map). None if the layer reads
    several tensors, is not yet called in a graph, or its nodes disagree.
    """
    from tfopt import _compat

    found = set()
    result = None
    nodes = _compat.inbound_nodes(layer)
    if not nodes:
        return None
    for node in nodes:
        tensors = node.input_tensors
        if len(tensors) != 1:
            return None
        quantizer = _range_of(tensors[0])
        if quantizer is None:
            return None
        found.add(id(quantizer))
        result = quantizer
    return result if len(found) == 1 else None


def _range_of(tensor):
    from tfopt import _compat
    from tfopt.quantization import config as config_lib

    for _ in range(32):
        if not _compat.has_producer(tensor):
            return None
        operation = _compat.producer(tensor)
        if isinstance(operation, QuantizeActivation):
            return operation
        inputs = [t for t in _compat.input_tensors_of(tensor) if isinstance(t, keras.KerasTensor)]
        if len(inputs) != 1:
            return None
        rule = config_lib.rule_for(operation)
        keeps = rule is not None and rule.io == config_lib.PASS
        if isinstance(operation, layers.Activation):
            keeps = config_lib.activation_name(operation) == "linear"
        elif isinstance(operation, (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D)):
            keeps = operation.data_format == "channels_last" and all(d == 1 for d in inputs[0].shape[1:-1])
        if not keeps:
            return None
        tensor = inputs[0]
    return None


def _finish_as_1d(layer, y, bias):
    """A 1-D conv layer's output from its 1xk 2-D conv `y`: squeezed, bias added, activated."""
    y = ops.squeeze(y, 1)
    if layer.use_bias:
        y = y + (layer.bias if bias is None else bias)
    return layer.activation(y)


def _is_plain_depthwise1d(layer):
    return isinstance(layer, layers.DepthwiseConv1D) and layer.data_format == "channels_last"


def _is_plain_conv1d(layer):
    return (isinstance(layer, layers.Conv1D) and not isinstance(layer, layers.Conv1DTranspose)
            and layer.data_format == "channels_last" and layer.groups == 1)


@keras.saving.register_keras_serializable(package="tfopt")
class ChannelAffine(layers.Layer):
    """`x * scale + shift` per channel (last axis), run as a 1x1 depthwise conv.

    QAT replaces standalone BatchNormalization (pre-activation, as in
    DenseNet), Normalization, Rescaling and ConvNeXt's LayerScale by this
    layer: TFLite has no int8 kernel for a per-channel affine except
    DEPTHWISE_CONV_2D, so the file runs it int8 (inputs of rank 2 or 3 are
    reshaped to rank 4 around it). `kernel` has shape `(1, 1, channels, 1)`
    (the scale) and `bias` shape `(channels,)` (the shift).

    Args:
        **kwargs: Passed to `keras.layers.Layer` (`trainable=False` freezes
            a preprocessing affine).

    Example:

    ```python
    affine = ChannelAffine()
    affine.build((None, 8, 8, 3))
    affine.set_weights([scale.reshape(1, 1, 3, 1), shift])
    ```
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"ChannelAffine {self.name!r} needs a defined last axis, got {input_shape}.")
        self.kernel = self.add_weight(name="kernel", shape=(1, 1, channels, 1), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        rank = len(inputs.shape)
        x = inputs
        if rank != 4:
            middle = 1
            for dim in inputs.shape[1:-1]:
                if dim is None:
                    raise ValueError(
                        f"ChannelAffine {self.name!r}: input shape {inputs.shape} has an undefined "
                        "inner dimension; give the model a fixed input shape."
                    )
                middle *= dim
            x = ops.reshape(inputs, (-1, 1, middle, inputs.shape[-1]))
        y = ops.depthwise_conv(x, self.kernel, strides=1, padding="valid") + self.bias
        if rank != 4:
            y = ops.reshape(y, (-1,) + tuple(inputs.shape[1:]))
        return y

    def compute_output_shape(self, input_shape):
        return input_shape


SWISH_NAMES = ("silu", "swish")


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedScaledResidual(layers.Layer):
    """`inputs[0] + scale * inputs[1]` with an int8 range on the scaled branch, for QAT.

    QAT's stand-in for InceptionResNetV2's `CustomScaleLayer`. The converter
    lowers it to MUL (by the constant `scale`) and ADD; with a range only on
    the sum, the product has none and both ops stay float. Here the product
    gets its own learned range, so both run int8 (the sum's range is added
    after the layer, as for any weightless layer).

    Args:
        scale: The branch's scale (a Python float).
        **kwargs: Passed to `keras.layers.Layer`.

    Example:

    ```python
    y = QuantizedScaledResidual(0.17)([x, branch])
    ```
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self._branch_range = QuantizeActivation(name="branch_quant")

    def build(self, input_shape):
        if not self._branch_range.built:
            self._branch_range.build(None)

    def call(self, inputs, training=None):
        residual, branch = inputs
        return residual + self._branch_range(branch * self.scale, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedSwish(layers.Layer):
    """Swish `x * sigmoid(x)` as TFLite's int8 file computes it, for QAT.

    The converter lowers swish (`keras.activations.silu`) to LOGISTIC and
    MUL. The int8 LOGISTIC writes its output with TFLite's fixed range
    (scale 1/256, zero point -128), so the file multiplies `x` by a sigmoid
    rounded to 1/256 and capped at 255/256: for a large `x` that is up to
    `x / 256` less than Keras's float swish, several int8 steps of the
    output. This layer rounds the sigmoid the same way (its output range is
    added after it by QAT, as for any activation). No weights.

    Example:

    ```python
    y = QuantizedSwish()(x)  # == x * fake_quant(sigmoid(x), 0, 255/256)
    ```
    """

    def call(self, inputs):
        gate = quantizers.fake_quant_activation(ops.sigmoid(inputs), *SIGMOID_RANGE)
        return inputs * gate

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedMultiHeadAttention(layers.MultiHeadAttention):
    """MultiHeadAttention with int8 ranges inside, for QAT.

    Same config and weights as `keras.layers.MultiHeadAttention`; the
    projected query, key and value, the query-key products, the scaled
    attention scores, the softmax probabilities and the combined heads
    (the output projection's input) each get a `QuantizeActivation`, so the
    converter runs the projections (FULLY_CONNECTED) and both attention
    matmuls (BATCH_MATMUL) in int8. Its kernels are fake-quantized by the
    `QuantizeWrapper` around it. Always takes the explicit attention path
    (no fused/flash kernel), which is what TFLite converts.
    """

    _RANGES = ("query", "key", "value", "products", "scores", "probs", "heads")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in self._RANGES:  # attributes, so their variables are tracked and saved
            # int8 SOFTMAX writes scale 1/256, zero point -128: the file rounds there.
            fixed = SIGMOID_RANGE if name == "probs" else None
            setattr(self, f"_{name}_range", QuantizeActivation(name=f"{name}_quant", fixed_range=fixed))

    @property
    def _ranges(self):
        return {name: getattr(self, f"_{name}_range") for name in self._RANGES}

    def build(self, query_shape, value_shape, key_shape=None):
        # MultiHeadAttention's own signature: Keras records the shapes by
        # argument name, which `.keras` loading needs.
        super().build(query_shape, value_shape, key_shape)
        for attr in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
            dense = getattr(self, attr, None)
            if type(dense) is layers.EinsumDense:
                dense.__class__ = _MatmulEinsumDense  # same state, converter-friendly call
        for layer in self._ranges.values():
            if not layer.built:
                layer.build(None)

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, **kwargs):
        q = self._ranges
        # The 1/sqrt(key_dim) scale goes after the first matmul: before it,
        # the converter folds it into the query projection's weights, which
        # then stay float.
        query = q["query"](query, training=training)
        key = q["key"](key, training=training)
        value = q["value"](value, training=training)
        products = q["products"](ops.einsum(self._dot_product_equation, key, query), training=training)
        scores = q["scores"](ops.multiply(products, ops.cast(self._inverse_sqrt_key_dim, products.dtype)),
                             training=training)
        # SOFTMAX's int8 output has TFLite's fixed range (see `__init__`).
        probs = q["probs"](self._masked_softmax(scores, attention_mask), training=training)
        dropped = self._dropout_layer(probs, training=training) if self._dropout > 0.0 else probs
        output = ops.einsum(self._combine_equation, dropped, value)
        return q["heads"](output, training=training), probs


class _QuantizedScoresMixin:
    """int8 ranges inside Keras's `Attention`/`AdditiveAttention`, for QAT.

    The layer's own call runs unchanged (same config and weights); its
    `_calculate_scores` and `_apply_scores` add a `QuantizeActivation` on
    every intermediate the converter turns into an op: the query-key
    products (BATCH_MATMUL, or the ADD/TANH/SUM of the additive scores), the
    scaled scores and the softmax probabilities (TFLite's fixed SOFTMAX
    range). The query, value and key arrive quantized (QAT puts ranges on
    the layer's inputs) and the output gets its range after the layer, so
    both matmuls run int8. Masks are refused by `quantize_model` before
    this layer is built (`api._attention_unsupported`), and here if the
    layer is called with one.
    """

    _RANGES = ("sum", "scaled", "tanh", "products", "scores", "probs")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in self._RANGES:  # attributes, so their variables are tracked and saved
            fixed = {"probs": SIGMOID_RANGE, "tanh": TANH_RANGE}.get(name)
            setattr(self, f"_{name}_range", QuantizeActivation(name=f"{name}_quant", fixed_range=fixed))

    def build(self, input_shape):
        super().build(input_shape)
        for name in self._RANGES:
            layer = getattr(self, f"_{name}_range")
            if not layer.built:
                layer.build(None)

    def _range(self, name, tensor):
        return getattr(self, f"_{name}_range")(tensor, training=self._qat_training)

    def _additive_scores(self, query, key, scale, weight=None):
        # tanh(scale * (q + k)) summed over the features: every op's output
        # rounded where the int8 file rounds it.
        total = self._range("sum", ops.expand_dims(query, axis=-2) + ops.expand_dims(key, axis=-3))
        if scale is not None and len(scale.shape) == 0:  # concat mode: scale before tanh
            total = self._range("scaled", total * scale)
            scale = None
        gated = self._range("tanh", ops.tanh(total))
        if scale is not None:  # AdditiveAttention: a per-feature scale after tanh
            gated = self._range("scaled", gated * scale)
        scores = ops.sum(gated, axis=-1)
        if weight is not None:
            scores = self._range("products", scores) * weight
        return self._range("scores", scores)

    def _apply_scores(self, scores, value, scores_mask=None, training=False):
        if scores_mask is not None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} was called with a mask (query/value mask or "
                "use_causal_mask): masked scores (scores - 1e9) have no int8 range. Call it without "
                "masks, or keep a float keras.layers.Attention."
            )
        weights = self._range("probs", ops.softmax(scores, axis=-1))
        if training and self.dropout > 0:
            weights = keras.random.dropout(weights, self.dropout, seed=self.seed_generator)
        return ops.matmul(weights, value), weights

    def call(self, inputs, mask=None, training=False, return_attention_scores=False,
             use_causal_mask=False):
        self._qat_training = training
        return super().call(inputs, mask=mask, training=training,
                            return_attention_scores=return_attention_scores,
                            use_causal_mask=use_causal_mask)


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedAttention(_QuantizedScoresMixin, layers.Attention):
    """`keras.layers.Attention` (Luong dot-product) with int8 ranges inside, for QAT.

    Same config and weights as `keras.layers.Attention`. `score_mode="dot"`:
    ranges on the query-key products and the scaled scores (BATCH_MATMUL and
    MUL int8); `"concat"`: on `q + k`, its scaling, the tanh, the sum and the
    weighted scores. The softmax probabilities get TFLite's fixed SOFTMAX
    range, so the probabilities x value BATCH_MATMUL runs int8 too.

    Args:
        **kwargs: `keras.layers.Attention`'s arguments.

    Raises:
        ValueError: When called with a query/value mask or `use_causal_mask`.

    Example:

    ```python
    inner = QuantizedAttention.from_config(keras.layers.Attention().get_config())
    ```
    """

    def _calculate_scores(self, query, key):
        if self.score_mode == "concat":
            return self._additive_scores(query, key, self.scale, self.concat_score_weight)
        scores = ops.matmul(query, ops.swapaxes(key, -2, -1))
        if self.scale is not None:
            scores = self._range("products", scores) * self.scale
        return self._range("scores", scores)


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedAdditiveAttention(_QuantizedScoresMixin, layers.AdditiveAttention):
    """`keras.layers.AdditiveAttention` (Bahdanau) with int8 ranges inside, for QAT.

    Same config and weights as `keras.layers.AdditiveAttention`: ranges on
    `q + k`, the tanh (TFLite's fixed TANH range), the per-feature scaled
    tanh, the summed scores and the softmax probabilities.

    Args:
        **kwargs: `keras.layers.AdditiveAttention`'s arguments.

    Raises:
        ValueError: When called with a query/value mask.

    Example:

    ```python
    inner = QuantizedAdditiveAttention.from_config(keras.layers.AdditiveAttention().get_config())
    ```
    """

    def _calculate_scores(self, query, key):
        return self._additive_scores(query, key, self.scale if self.use_scale else None)


# Keras's Luong/Bahdanau attention layers and the QAT layers that replace them.
SCORE_ATTENTION = {layers.Attention: QuantizedAttention,
                   layers.AdditiveAttention: QuantizedAdditiveAttention}




@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedRecurrent(layers.Layer):
    """An LSTM, GRU or SimpleRNN unrolled with an int8 range on every step's tensors.

    QAT's stand-in for `keras.layers.LSTM`/`GRU`/`SimpleRNN` (same weights
    and gate layout, `tanh`/`sigmoid` activations; SimpleRNN `tanh` or
    `relu`). Each step is a few int8 TFLite kernels: two FULLY_CONNECTED
    (input and recurrent projections), LOGISTIC/TANH for the gates,
    MUL/ADD/SUB for the state update (SimpleRNN: ADD and TANH/RELU). The
    ranges (one per role, shared by all steps) are learned in training,
    updated once per batch from the min/max over every step (as the file's
    steps share them: a value rare at any one step is not averaged away);
    the kernels are fake-quantized per tensor by the `QuantizeWrapper`
    around this layer. The cell state is int8 too (TFLite's fused int8 LSTM keeps
    it in 16 bits, but the converter only emits that kernel from calibrated
    float models), which is what the fine-tuning adapts to.

    Args:
        cell: `"lstm"`, `"gru"` or `"simple_rnn"`.
        units: State size.
        return_sequences: Return every step's output, not only the last.
        use_bias: Whether the layer has a bias.
        reset_after: GRU only; must be True (Keras's default: bias of
            shape `(2, 3 * units)`).
        go_backwards: Process the sequence from its last step to its first
            (as Keras: with `return_sequences`, the outputs come in that
            reversed order).
        activation: SimpleRNN only: `"tanh"` (TANH's fixed int8 output
            range) or `"relu"` (a learned range).
        **kwargs: Passed to `keras.layers.Layer`.

    Raises:
        ValueError: For another cell or activation, a GRU with
            `reset_after=False`, or (when called) a sequence without a
            static length.

    Example:

    ```python
    # What quantize_model(model) puts in place of an eligible LSTM(32):
    rnn = QuantizedRecurrent("lstm", 32, name="lstm")
    ```
    """

    # LSTM's "gates" is the pre-activation sum (a learned range); GRU's "z"
    # and "r" are sigmoid outputs (LOGISTIC's fixed range).
    _LSTM_RANGES = ("xw", "hu", "gates", "i", "f", "g", "o", "fc", "ig", "c", "tc", "h")
    _GRU_RANGES = ("xw", "hu", "zs", "rs", "z", "r", "rh", "hs", "hh", "zh", "zc", "zhh", "h")
    # SimpleRNN: h = act(x W + b + h U); "hs" is the pre-activation sum.
    _RNN_RANGES = ("xw", "hu", "hs", "h")
    CELLS = ("lstm", "gru", "simple_rnn")

    def __init__(self, cell, units, return_sequences=False, use_bias=True, reset_after=True,
                 go_backwards=False, activation="tanh", **kwargs):
        super().__init__(**kwargs)
        if cell not in self.CELLS:
            raise ValueError(f"cell={cell!r} must be one of {self.CELLS}.")
        if cell == "gru" and not reset_after:
            raise ValueError("QuantizedRecurrent supports GRU with reset_after=True (Keras's default).")
        if activation not in ("tanh", "relu") or (cell != "simple_rnn" and activation != "tanh"):
            raise ValueError(f"activation={activation!r}: LSTM/GRU run tanh, SimpleRNN tanh or relu.")
        self.cell, self.units = cell, int(units)
        self.return_sequences, self.use_bias, self.reset_after = return_sequences, use_bias, reset_after
        self.go_backwards, self.activation = bool(go_backwards), activation
        self._range_names = {"lstm": self._LSTM_RANGES, "gru": self._GRU_RANGES,
                             "simple_rnn": self._RNN_RANGES}[cell]
        for name in self._range_names:
            fixed = SIGMOID_RANGE if name in ("i", "f", "o", "z", "r") else (
                TANH_RANGE if name in ("g", "tc", "hh") else None)
            if cell == "simple_rnn" and name == "h" and activation == "tanh":
                fixed = TANH_RANGE
            setattr(self, f"_{name}_range", QuantizeActivation(name=f"{name}_quant", fixed_range=fixed))

    def build(self, input_shape):
        gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[self.cell]
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], gates * self.units))
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(self.units, gates * self.units))
        if self.use_bias:
            shape = (2, 3 * self.units) if self.cell == "gru" and self.reset_after else (gates * self.units,)
            self.bias = self.add_weight(name="bias", shape=shape, initializer="zeros")
        for name in self._range_names:
            getattr(self, f"_{name}_range").build(None)

    def _q(self, name, x, training):
        quantizer = getattr(self, f"_{name}_range")
        if not training or quantizer.fixed_range is not None:
            return quantizer(x, training=False)
        # Training: every step is quantized with the range held before this
        # batch (the first batch: the step's own), and the range is updated
        # once, after the sequence, from the min/max over all steps (see
        # `_update_ranges`).
        from tfopt.distribute import cross_replica_min_max

        low, high = cross_replica_min_max(x)
        low = ops.stop_gradient(ops.minimum(low, 0.0))
        high = ops.stop_gradient(ops.maximum(high, 0.0))
        seen = self._batch_ranges.get(name)
        self._batch_ranges[name] = (low, high) if seen is None else (
            ops.minimum(seen[0], low), ops.maximum(seen[1], high))
        first = ops.equal(quantizer.range_seen, 0.0)
        return quantizers.fake_quant_activation(
            x, ops.where(first, low, quantizer.range_min), ops.where(first, high, quantizer.range_max))

    def _update_ranges(self):
        """Moves each learned range towards this batch's min/max over all steps.

        One update per batch over every step, as a layer's range is updated
        once per batch over every position: an update per step would
        average per-step maxima instead, and a value that is rare at any
        one step (the keyword of a token sequence) would be clipped at
        every step.
        """
        for name, (low, high) in self._batch_ranges.items():
            quantizer = getattr(self, f"_{name}_range")
            first = ops.equal(quantizer.range_seen, 0.0)
            decay = quantizer.decay
            quantizer.range_min.assign(ops.where(first, low, decay * quantizer.range_min + (1 - decay) * low))
            quantizer.range_max.assign(ops.where(first, high, decay * quantizer.range_max + (1 - decay) * high))
            quantizer.range_seen.assign(1.0)

    def call(self, inputs, training=None):
        outputs = self.step_outputs(inputs, training)
        return ops.stack(outputs, axis=1) if self.return_sequences else outputs[-1]

    def step_outputs(self, inputs, training=None):
        """Every step's output, in the order the steps run (reversed with `go_backwards`)."""
        steps = inputs.shape[1]
        if steps is None:
            raise ValueError(f"{self.name!r}: the sequence length must be fixed to unroll.")
        step = {"lstm": self._lstm_step, "gru": self._gru_step, "simple_rnn": self._rnn_step}[self.cell]
        # This batch's per-role min/max (tensors, not tracked state).
        object.__setattr__(self, "_batch_ranges", {})
        state, outputs = None, []
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        for t in order:
            state, h = step(inputs[:, t, :], state, training)
            outputs.append(h)
        if training:
            self._update_ranges()
        object.__setattr__(self, "_batch_ranges", {})
        return outputs

    def _rnn_step(self, x, state, training):
        q = self._q
        xw = self._input_projection(x, self.bias if self.use_bias else None, training)
        if self.activation == "relu":
            # TFLite fuses the RELU into the ADD (or the FULLY_CONNECTED of
            # step 0): no range before it, the output's range is the sum's.
            hs = xw if state is None else xw + q("hu", ops.matmul(state, self.recurrent_kernel), training)
            h = q("h", ops.relu(hs), training)
        else:
            hs = xw if state is None else q(
                "hs", xw + q("hu", ops.matmul(state, self.recurrent_kernel), training), training)
            h = q("h", ops.tanh(hs), training)
        return h, h

    def _input_projection(self, x, bias, training):
        xw = ops.matmul(x, self.kernel)
        if bias is not None:
            xw = xw + bias
        return self._q("xw", xw, training)

    def _lstm_step(self, x, state, training):
        u, q = self.units, self._q
        z = self._input_projection(x, self.bias if self.use_bias else None, training)
        if state is not None:
            h, c = state
            z = q("gates", z + q("hu", ops.matmul(h, self.recurrent_kernel), training), training)
        i = q("i", ops.sigmoid(z[:, :u]), training)
        f = q("f", ops.sigmoid(z[:, u:2 * u]), training)
        g = q("g", ops.tanh(z[:, 2 * u:3 * u]), training)
        o = q("o", ops.sigmoid(z[:, 3 * u:]), training)
        ig = q("ig", i * g, training)
        # Step 0: c = i * g, already on ig's grid. A second fake-quant there
        # (c's range) is one the converter folds away: the file keeps ig's
        # scale, so the Keras model must too.
        c = ig if state is None else q("c", q("fc", f * state[1], training) + ig, training)
        h = q("h", o * q("tc", ops.tanh(c), training), training)
        return (h, c), h

    def _gru_step(self, x, state, training):
        u, q = self.units, self._q
        if self.use_bias and self.reset_after:
            input_bias, recurrent_bias = self.bias[0], self.bias[1]
        else:
            input_bias, recurrent_bias = (self.bias if self.use_bias else None), None
        xw = self._input_projection(x, input_bias, training)
        if state is None:
            hu = recurrent_bias  # h0 = 0: only the recurrent bias (a constant vector)
        else:
            hu = ops.matmul(state, self.recurrent_kernel)
            if recurrent_bias is not None:
                hu = hu + recurrent_bias
            hu = q("hu", hu, training)
        zs = xw[:, :u] if hu is None else q("zs", xw[:, :u] + hu[..., :u], training)
        rs = xw[:, u:2 * u] if hu is None else q("rs", xw[:, u:2 * u] + hu[..., u:2 * u], training)
        z = q("z", ops.sigmoid(zs), training)
        r = q("r", ops.sigmoid(rs), training)
        if hu is None:
            hs = xw[:, 2 * u:]
        else:
            hs = q("hs", xw[:, 2 * u:] + q("rh", r * hu[..., 2 * u:], training), training)
        hh = q("hh", ops.tanh(hs), training)
        # Keras: h = z * h_prev + (1 - z) * hh.
        zhh = q("zhh", q("zc", 1.0 - z, training) * hh, training)
        h = zhh if state is None else q("h", q("zh", z * state, training) + zhh, training)
        return h, h

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "units": self.units,
                "return_sequences": self.return_sequences, "use_bias": self.use_bias,
                "reset_after": self.reset_after, "go_backwards": self.go_backwards,
                "activation": self.activation}


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedBidirectional(layers.Layer):
    """A Bidirectional LSTM/GRU/SimpleRNN as two unrolled int8 directions, for QAT.

    QAT's stand-in for `keras.layers.Bidirectional` around an eligible
    recurrent layer: a forward and a backward `QuantizedRecurrent` (the
    backward one runs the steps from last to first, as Keras's
    `go_backwards`), each with its own ranges, and the merge computed as
    int8 kernels: CONCATENATION, ADD (`"sum"`), MUL (`"mul"`) or ADD with a
    range then MUL by 0.5 (`"ave"`). With `return_sequences`, the backward
    outputs are put back in time order by the unrolled graph itself (no
    REVERSE op in the file). The kernels of both directions are
    fake-quantized per tensor by the `QuantizeWrapper` around this layer;
    the merged output gets its range from QAT after the wrapper.

    Args:
        forward: `QuantizedRecurrent` config dict of the forward direction.
        backward: `QuantizedRecurrent` config dict of the backward direction
            (`go_backwards=True`).
        merge_mode: `"concat"`, `"sum"`, `"mul"` or `"ave"`.
        **kwargs: Passed to `keras.layers.Layer`.

    Raises:
        ValueError: For another merge mode, directions that disagree on
            `return_sequences`, or a backward direction without
            `go_backwards`.

    Example:

    ```python
    # What quantize_model(model) puts in place of Bidirectional(LSTM(8)):
    fwd = QuantizedRecurrent("lstm", 8, name="forward_lstm").get_config()
    bwd = QuantizedRecurrent("lstm", 8, go_backwards=True, name="backward_lstm").get_config()
    bi = QuantizedBidirectional(fwd, bwd, merge_mode="concat", name="bidirectional")
    ```
    """

    MERGE_MODES = ("concat", "sum", "mul", "ave")

    def __init__(self, forward, backward, merge_mode="concat", **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in self.MERGE_MODES:
            raise ValueError(f"merge_mode={merge_mode!r} must be one of {self.MERGE_MODES}.")
        self.forward = QuantizedRecurrent.from_config(dict(forward))
        self.backward = QuantizedRecurrent.from_config(dict(backward))
        if self.forward.return_sequences != self.backward.return_sequences:
            raise ValueError("Both directions must agree on return_sequences.")
        if self.forward.go_backwards or not self.backward.go_backwards:
            raise ValueError("The forward direction runs forwards, the backward one with go_backwards=True.")
        self.merge_mode = merge_mode
        self.return_sequences = self.forward.return_sequences
        self._merge_range = QuantizeActivation(name="merge_quant") if merge_mode == "ave" else None

    def build(self, input_shape):
        self.forward.build(input_shape)
        self.backward.build(input_shape)
        if self._merge_range is not None:
            self._merge_range.build(None)

    def call(self, inputs, training=None):
        y = self.forward.step_outputs(inputs, training)
        y_rev = self.backward.step_outputs(inputs, training)
        if self.return_sequences:
            # Step t of the backward direction saw inputs t..T-1: the list in
            # time order is the reversed run order.
            y, y_rev = ops.stack(y, axis=1), ops.stack(y_rev[::-1], axis=1)
        else:
            y, y_rev = y[-1], y_rev[-1]
        if self.merge_mode == "concat":
            return ops.concatenate([y, y_rev], axis=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "mul":
            return y * y_rev
        return self._merge_range(y + y_rev, training=training) * 0.5

    def compute_output_shape(self, input_shape):
        units = self.forward.units + (self.backward.units if self.merge_mode == "concat" else 0)
        if self.return_sequences:
            return (input_shape[0], input_shape[1], units)
        return (input_shape[0], units)

    def get_config(self):
        return {**super().get_config(), "forward": self.forward.get_config(),
                "backward": self.backward.get_config(), "merge_mode": self.merge_mode}


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedTimeDistributed(layers.TimeDistributed):
    """TimeDistributed computed as its layer on the batch of all time steps, for QAT.

    Keras's `TimeDistributed` calls its layer once per time step (a loop
    the converter turns into many small ops, or a WHILE). This layer
    reshapes `(batch, steps, ...)` to `(batch * steps, ...)`, calls the
    inner layer once and reshapes back: the file runs RESHAPE, the inner
    layer's int8 kernel (FULLY_CONNECTED, CONV_2D, ...), RESHAPE. Same
    config and weights as `keras.layers.TimeDistributed`; its `bias`
    is the inner layer's, so the `QuantizeWrapper` rounds it to the int32
    grid the file stores.

    A mask (from `Embedding(mask_zero=True)` or `Masking`) is handled as
    Keras's `TimeDistributed` handles it for a layer that takes no mask
    (Dense, Conv2D, ...): the layer runs on every step, and the mask passes
    on to the layers after it, which apply it.

    Raises:
        ValueError: When called on an input whose time and feature
            dimensions are not static, or with a mask around a layer that
            takes masks (`quantize_model` refuses such a layer up front).

    Example:

    ```python
    td = QuantizedTimeDistributed(keras.layers.Dense(8))
    ```
    """

    @property
    def bias(self):
        return getattr(self.layer, "bias", None)

    def call(self, inputs, training=None, mask=None):
        shape = tuple(inputs.shape)
        if len(shape) < 3 or any(d is None for d in shape[1:]):
            raise ValueError(
                f"{self.name!r}: TimeDistributed needs static time and feature dimensions to run its "
                f"layer on the reshaped batch, got input shape {shape}; give keras.Input a fixed shape."
            )
        if mask is not None and self.layer._call_has_mask_arg:
            raise ValueError(
                f"{self.name!r}: its layer {self.layer.name!r} ({type(self.layer).__name__}) takes a "
                "mask, which this layer cannot apply on the reshaped batch; drop the mask, or keep a "
                "float keras.layers.TimeDistributed.")
        x = ops.reshape(inputs, (-1,) + shape[2:])
        y = self.layer(x, training=training) if self.layer._call_has_training_arg else self.layer(x)
        return ops.reshape(y, (-1, shape[1]) + tuple(y.shape[1:]))


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedPReLU(layers.PReLU):
    """PReLU computed as int8 RELU, MINIMUM, MUL and ADD, for QAT.

    TFLite has an int8 PRELU kernel, but from a fake-quant graph the
    converter fuses Keras's `relu(x) - alpha * relu(-x)` into a float PRELU
    (its alpha, folded from a negation, loses any range) between a
    DEQUANTIZE and a QUANTIZE. This layer computes the same function as
    `relu(x) + alpha * min(x, 0)` with an int8 range on each branch
    (`pos_quant`, `neg_quant`), and alpha rounded as the converter stores a
    MUL's constant operand (int8 over its own range): the file runs RELU,
    MINIMUM, MUL and ADD, all int8, and rounds where QAT does. Same config
    and weights as `keras.layers.PReLU`; the output range is QAT's
    `QuantizeActivation` after it.

    Example:

    ```python
    prelu = QuantizedPReLU.from_config(keras.layers.PReLU().get_config())
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pos_range = QuantizeActivation(name="pos_quant")
        self._neg_range = QuantizeActivation(name="neg_quant")

    def build(self, input_shape):
        super().build(input_shape)
        for quantizer in (self._pos_range, self._neg_range):
            if not quantizer.built:
                quantizer.build(None)

    def call(self, inputs, training=None):
        alpha = ops.convert_to_tensor(self.alpha)
        low = ops.stop_gradient(ops.minimum(ops.min(alpha), 0.0))
        high = ops.stop_gradient(ops.maximum(ops.max(alpha), 0.0))
        alpha = quantizers.fake_quant_activation(alpha, low, high)
        pos = self._pos_range(ops.relu(inputs), training=training)
        neg = self._neg_range(alpha * ops.minimum(inputs, 0.0), training=training)
        return pos + neg


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizedLayerNormalization(layers.LayerNormalization):
    """LayerNormalization with the int8 mean the TFLite file computes, for QAT.

    TFLite has no LayerNorm kernel: the converter lowers it to MEAN,
    SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, MUL, ADD. From a QAT graph its
    int8 input makes the first MEAN (the mean over the normalized axes) an
    int8 kernel, rounded to a grid, while the rest stays float: Keras's own
    LayerNormalization computes that mean in float, so the file drifted
    from the QAT model (a mean off by half a step, divided by a small
    standard deviation, moves every output). This layer rounds the mean as
    the file does, with its own learned int8 range (`mean_quant`), and
    computes the rest as Keras does. Same config and weights as
    `keras.layers.LayerNormalization`.

    Example:

    ```python
    ln = QuantizedLayerNormalization.from_config(layer.get_config())
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._mean_range = QuantizeActivation(name="mean_quant")

    def build(self, input_shape):
        super().build(input_shape)
        if not self._mean_range.built:
            self._mean_range.build(None)

    def call(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        axis = [self.axis] if isinstance(self.axis, int) else list(self.axis)
        rank = len(x.shape)
        axis = sorted(a % rank for a in axis)
        shape = [1] * rank
        for a in axis:
            shape[a] = x.shape[a]
        mean = self._mean_range(ops.mean(x, axis=axis, keepdims=True), training=training)
        variance = ops.mean(ops.square(x - ops.stop_gradient(mean)), axis=axis, keepdims=True)
        inv = ops.rsqrt(variance + self.epsilon)

        def broadcast(v):
            v = ops.cast(v, x.dtype)
            return v if axis == [rank - 1] else ops.reshape(v, shape)

        if self.rms_scaling:
            outputs = x * inv
            if self.gamma is not None:
                outputs = outputs * broadcast(self.gamma)
            return ops.cast(outputs, self.compute_dtype)
        if self.gamma is not None:
            inv = inv * broadcast(self.gamma)
        shift = -mean * inv
        if self.beta is not None:
            shift = shift + broadcast(self.beta)
        return ops.cast(x * inv + shift, self.compute_dtype)
