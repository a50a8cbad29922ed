"""What QAT does with each layer: `QUANTIZE_TABLE`, `OPS_TABLE`, `QuantizeConfig`.

Every per-layer decision of quantization-aware training lives in one table:
`QUANTIZE_TABLE` maps a Keras layer type to a `Rule` (which kernels are
fake-quantized and at which granularity, and what happens to the layer's
inputs and outputs); `OPS_TABLE` does the same for raw `keras.ops` nodes of
a Functional graph (`x + 3`, `ops.mean`, ...), keyed by the op's class
name. `tfopt.quantization.api` reads them and nothing else, so supporting a
layer is one entry (and one test). `describe_table()` renders them for the
README, next to what tfmot 0.8.1 does for the same layer.
"""

import dataclasses

import keras
from keras import layers

from tfopt import _compat
from tfopt.quantization import quantizers

# What a rule does with a layer's inputs and outputs.
KERNEL = "kernel"        # weights fake-quantized; int8 inputs; a new output range
PASS = "pass"            # int8 inputs; the output keeps the input's range
OUTPUT = "output"        # int8 inputs; a new output range
FUSE = "fuse"            # ReLU/ReLU6: fused into the kernel before it, else OUTPUT
FOLD = "fold"            # BatchNormalization: folded into the kernel before it, else AFFINE
AFFINE = "affine"        # per-channel x * a + b: rewritten as a 1x1 depthwise kernel
GATHER = "gather"        # Embedding: int8 table; the output has the table's range
ATTENTION = "attention"  # MultiHeadAttention/Attention: int8 projections and attention matmuls
RECURRENT = "recurrent"  # LSTM/GRU: unrolled, int8 ranges on every step (else a float island)
NORM = "norm"            # LayerNormalization: int8 in and out, its mean int8 as the file computes it
FLOAT = "float"          # a float island: no range in or out (the reason is in the rule)
NO_KERNEL = "no_kernel"  # refused up front: TFLite has no builtin kernel, no file can be built
IO_MODES = (KERNEL, PASS, OUTPUT, FUSE, FOLD, AFFINE, GATHER, ATTENTION, RECURRENT, NORM, FLOAT, NO_KERNEL)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of the quantization table.

    Args:
        io: One of `IO_MODES`: what happens to the layer's inputs/outputs.
        weights: Attribute names of the kernels fake-quantized to int8.
        granularity: One of `quantizers.GRANULARITIES` for those kernels.
        note: What tfopt does, in words (README column).
        tfmot: What tfmot 0.8.1's default 8-bit registry does with the layer.
    """

    io: str
    weights: tuple = ()
    granularity: str = "per_channel"
    note: str = ""
    tfmot: str = ""

    def __post_init__(self):
        if self.io not in IO_MODES:
            raise ValueError(f"Rule io={self.io!r} is not one of {IO_MODES}.")
        if self.granularity not in quantizers.GRANULARITIES:
            raise ValueError(
                f"Rule granularity={self.granularity!r} is not one of {quantizers.GRANULARITIES}."
            )


_TFMOT_KERNEL = "quantized (kernel per channel, activation range)"
_TFMOT_OUT = "output range"
_TFMOT_PASS = "no quantization (passes through)"
_TFMOT_NO = "refused: not in the registry"

_conv = Rule(KERNEL, ("kernel",), "per_channel",
             "kernel int8 per output channel; BatchNormalization after it folded, ReLU/ReLU6 fused, "
             "other activations split out with their own range", _TFMOT_KERNEL)
_pass = Rule(PASS, note="int8 in, same range out", tfmot=_TFMOT_NO)
_out = Rule(OUTPUT, note="int8 in, own output range", tfmot=_TFMOT_NO)
_gap = Rule(OUTPUT, note="own output range; over a 1x1 map (a RESHAPE in the file) the input's range",
           tfmot=_TFMOT_NO)
# TFLite has no 3-D pooling builtin: even the float file fails to convert
# (the converter asks for select TF ops), so QAT refuses before training.
_no_kernel_pool = Rule(
    NO_KERNEL, note="refused before training: TFLite has no 3-D pooling kernel, so no int8 (or float) "
    "file can be built from it; use GlobalAveragePooling3D, a strided Conv3D, or reshape to 2-D pooling "
    "(skip_unsupported=True keeps it float, for a file with select TF ops only)", tfmot=_TFMOT_NO)
_resize = Rule(OUTPUT, note="int8 in, own output range (RESIZE_* int8)", tfmot=_TFMOT_NO)

QUANTIZE_TABLE = {
    layers.Conv1D: dataclasses.replace(_conv, tfmot="refused (per-channel axis moves when Keras expands it)",
                                       note=_conv.note + "; run as the 1xk Conv2D TFLite builds"),
    layers.Conv2D: _conv,
    layers.DepthwiseConv1D: Rule(KERNEL, ("kernel",), "depthwise",
                                 "kernel int8 per (input channel x multiplier); BN folded, ReLU fused; "
                                 "run as the 1xk DepthwiseConv2D TFLite builds", _TFMOT_NO),
    layers.DepthwiseConv2D: Rule(KERNEL, ("kernel",), "depthwise",
                                 "kernel int8 per (input channel x multiplier); BN folded, ReLU fused",
                                 _TFMOT_KERNEL),
    # Per tensor: with a per-channel range on the kernel's axis -2 the
    # converter fails ("tfl.transpose op has mismatched quantized axes").
    layers.Conv1DTranspose: Rule(KERNEL, ("kernel",), "per_tensor",
                                 "kernel int8 per tensor; run as the 1xk TRANSPOSE_CONV TFLite builds",
                                 _TFMOT_NO),
    layers.Conv2DTranspose: Rule(KERNEL, ("kernel",), "per_tensor",
                                 "kernel int8 per tensor (TRANSPOSE_CONV; the converter rejects "
                                 "per-channel ranges on its transposed kernel)",
                                 "quantized (kernel per tensor)"),
    # Float islands: the TF 2.21 converter emits CONV_3D/CONV_3D_TRANSPOSE in
    # float only, from fake-quant nodes (per tensor: tried, the kernel is
    # dequantized) and from PTQ calibration alike; per-channel fake quant of
    # a rank-5 kernel does not even train (TF's per-channel gradient stops at
    # rank 4); ai_edge_quantizer has no CONV_3D either. Older TFLite kernels
    # (lite/kernels/conv3d.cc) are float32 only; recent ones add an int8
    # reference kernel that no converter here produces.
    layers.Conv3D: Rule(FLOAT, note="float island: the converter emits CONV_3D in float only (from "
                        "fake-quant nodes or calibration); float in and out, BatchNormalization after it "
                        "folded in float, the layers around it int8", tfmot=_TFMOT_NO),
    layers.Conv3DTranspose: Rule(FLOAT, note="float island: the converter emits CONV_3D_TRANSPOSE in float "
                                 "only; float in and out, the layers around it int8", tfmot=_TFMOT_NO),
    layers.Dense: Rule(KERNEL, ("kernel",), "per_tensor",
                       "kernel int8 per tensor (the converter transposes it); BN folded, ReLU fused, "
                       "GELU/swish/... split out with their own range", "quantized (kernel per tensor)"),
    layers.EinsumDense: Rule(KERNEL, ("kernel",), "per_tensor",
                             "kernel int8 per tensor (FULLY_CONNECTED/BATCH_MATMUL)", _TFMOT_NO),
    layers.SeparableConv1D: Rule(KERNEL, ("kernel",), note="split into depthwise + 1x1 conv, both int8",
                                 tfmot=_TFMOT_NO),
    layers.SeparableConv2D: Rule(KERNEL, ("kernel",), note="split into depthwise + 1x1 conv, both int8",
                                 tfmot="quantized (split into depthwise + conv)"),
    layers.BatchNormalization: Rule(
        FOLD, note="folded into the conv/dense before it; standalone (pre-activation): a per-channel "
        "affine run as an int8 1x1 DEPTHWISE_CONV_2D", tfmot="folded after Conv2D/Depthwise; standalone: "
        "output range only (float MUL/ADD island in the file)"),
    layers.Normalization: Rule(AFFINE, note="per-channel affine: int8 1x1 DEPTHWISE_CONV_2D (frozen)",
                               tfmot=_TFMOT_NO),
    layers.Rescaling: Rule(AFFINE, note="per-channel affine: int8 1x1 DEPTHWISE_CONV_2D (frozen)",
                           tfmot=_TFMOT_NO),
    layers.LayerNormalization: Rule(
        NORM, note="int8 in and out; TFLite has no LayerNorm kernel: the converter decomposes it "
        "into MEAN/SQUARED_DIFFERENCE/MEAN/ADD/RSQRT/MUL/ADD; the first MEAN runs int8 (QAT simulates "
        "its rounding with its own range), the rest is a float island (ranges on every op of the "
        "lowering crash the converter)", tfmot=_TFMOT_NO),
    layers.MultiHeadAttention: Rule(
        ATTENTION, note="query/key/value/output EinsumDense kernels int8 per tensor; ranges on the "
        "projections, scores and softmax, so FULLY_CONNECTED and BATCH_MATMUL run int8",
        tfmot=_TFMOT_NO),
    layers.Attention: Rule(
        ATTENTION, note="dot: ranges on the inputs, the query-key products, the scaled scores, the "
        "softmax (TFLite's fixed range) and the output, so both BATCH_MATMULs run int8; concat: also on "
        "q + k, its scaling, the tanh and the sum; return_attention_scores: the scores output int8 too. "
        "Refused before training (a ValueError naming the way out): query/value masks and use_causal_mask",
        tfmot=_TFMOT_NO),
    layers.AdditiveAttention: Rule(
        ATTENTION, note="ranges on the inputs, q + k, the tanh (TFLite's fixed range), the scaled tanh, "
        "the summed scores, the softmax and the output; the probabilities x value BATCH_MATMUL int8. "
        "Refused before training: query/value masks", tfmot=_TFMOT_NO),
    layers.Embedding: Rule(GATHER, ("embeddings",), "per_tensor",
                           "table int8 per tensor (GATHER int8); the output keeps the table's range",
                           tfmot=_TFMOT_NO),
    layers.LSTM: Rule(
        RECURRENT, note="unrolled int8 steps (FULLY_CONNECTED, LOGISTIC/TANH, MUL/ADD, int8 cell state; "
        "ranges shared by all steps), every compute op int8, for tanh/sigmoid LSTMs without mask, dropout "
        "or returned state (go_backwards: the steps run last to first); otherwise, or with int8_recurrent=False, a float island (unrolled, "
        "float in and out, exact): the converter emits TFLite's fused int8 LSTM only from calibrated float "
        "models, not from fake-quant nodes",
        tfmot=_TFMOT_NO),
    layers.GRU: Rule(
        RECURRENT, note="unrolled int8 steps like LSTM (reset_after=True); otherwise, or with "
        "int8_recurrent=False, a float island (TFLite has no fused GRU kernel)", tfmot=_TFMOT_NO),
    layers.SimpleRNN: Rule(
        RECURRENT, note="unrolled int8 steps like LSTM (FULLY_CONNECTED, ADD, TANH or fused RELU per step), "
        "for tanh/relu SimpleRNNs without mask, dropout or returned state; otherwise, or with "
        "int8_recurrent=False, a float island (unrolled, float in and out)", tfmot=_TFMOT_NO),
    layers.Bidirectional: Rule(
        RECURRENT, note="two unrolled int8 directions (the backward one runs the steps last to first), "
        "merged int8 (concat: CONCATENATION, sum: ADD, mul: MUL, ave: ADD then MUL by 0.5), when both "
        "directions are eligible LSTM/GRU/SimpleRNN layers (as above) and nothing is masked or returned "
        "as state; otherwise, or with int8_recurrent=False, a float island (unrolled)", tfmot=_TFMOT_NO),
    layers.TimeDistributed: Rule(
        KERNEL, note="its layer on the (batch * steps) batch (RESHAPE, the layer's int8 kernel, RESHAPE): "
        "Dense/Conv2D/DepthwiseConv2D/... quantized like the layer; a weightless layer as its own row; "
        "other layers refused with the way out. A mask (Embedding(mask_zero=True), Masking) passes on to "
        "the layers after it, as in Keras; a masked TimeDistributed around a layer that takes masks is refused", tfmot=_TFMOT_NO),
    layers.ReLU: Rule(FUSE, note="fused into the kernel before it (no range between), else own range",
                      tfmot="fused after Conv/Dense, else output range"),
    layers.Activation: Rule(
        FUSE, note="relu/relu6: fused into the kernel before it; sigmoid/softmax/tanh: TFLite's fixed "
        "int8 output range (scale 1/256, 1/256, 1/128); swish: x * sigmoid(x) with the sigmoid rounded as "
        "int8 LOGISTIC writes it (scale 1/256), own output range; hard_swish/gelu/hard_sigmoid: own output "
        "range; linear: passes its input's range", tfmot="relu/relu6/softmax/sigmoid/tanh: output "
        "range; swish/gelu: refused"),
    layers.Softmax: Rule(OUTPUT, note="TFLite's fixed int8 SOFTMAX output range (scale 1/256)",
                         tfmot=_TFMOT_OUT),
    layers.LeakyReLU: Rule(OUTPUT, note="own output range", tfmot=_TFMOT_NO),
    layers.PReLU: Rule(OUTPUT, note="run as int8 RELU + MINIMUM * alpha (MUL, alpha int8) + ADD, each "
                       "branch with its range, own output range (from fake-quant graphs the converter "
                       "fuses Keras's PReLU into a float PRELU)", tfmot=_TFMOT_NO),
    layers.GroupNormalization: Rule(
        FLOAT, note="float island (int8 ranges before and after it, the kernels around it int8): "
        "TFLite has no GroupNorm kernel and the converter lowers it to MEAN, SUB, SQUARE, MEAN, ADD, "
        "RSQRT, MUL, ADD over the groups, which stay float (ranges inside are not verified)",
        tfmot=_TFMOT_NO),
    layers.ELU: Rule(OUTPUT, note="own output range", tfmot=_TFMOT_NO),
    layers.Add: _out, layers.Subtract: _out, layers.Multiply: _out, layers.Average: _out,
    layers.Maximum: _out, layers.Minimum: _out, layers.Concatenate: _out,
    layers.GlobalAveragePooling1D: _gap, layers.GlobalAveragePooling2D: _gap,
    layers.AveragePooling1D: _pass, layers.AveragePooling2D: _pass,
    layers.MaxPooling1D: _pass, layers.MaxPooling2D: _pass,
    layers.AveragePooling3D: _no_kernel_pool, layers.MaxPooling3D: _no_kernel_pool,
    layers.GlobalMaxPooling1D: _pass, layers.GlobalMaxPooling2D: _pass,
    layers.Flatten: _pass, layers.Reshape: _pass, layers.Permute: _pass, layers.Dropout: _pass,
    layers.SpatialDropout1D: _pass, layers.SpatialDropout2D: _pass, layers.Identity: _pass,
    layers.ZeroPadding1D: _pass, layers.ZeroPadding2D: _pass,
    layers.Cropping1D: _pass, layers.Cropping2D: _pass,
    layers.UpSampling1D: _resize, layers.UpSampling2D: _resize,
    layers.Resizing: Rule(OUTPUT, note="own output range; run as keras.ops.image.resize (the Resizing "
                          "layer's traced graph leaves the next fake-quant nodes unconvertible): int8 "
                          "RESIZE_BILINEAR/RESIZE_NEAREST_NEIGHBOR", tfmot=_TFMOT_NO),
}
# tfmot 0.8.1's default 8-bit registry (default_8bit_quantize_registry.py):
# output ranges for these; pass-through for the no-quantize list; Concatenate
# through a graph transform; Subtract/Multiply/Average/Maximum/Minimum,
# MaxPooling1D, Identity, UpSampling1D and Cropping are as set above.
for _cls in (layers.Add, layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
             layers.AveragePooling1D, layers.AveragePooling2D, layers.UpSampling2D):
    QUANTIZE_TABLE[_cls] = dataclasses.replace(QUANTIZE_TABLE[_cls], tfmot=_TFMOT_OUT)
for _cls in (layers.MaxPooling2D, layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.Flatten,
             layers.Reshape, layers.Permute, layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D,
             layers.ZeroPadding1D, layers.ZeroPadding2D, layers.Cropping1D, layers.Cropping2D):
    QUANTIZE_TABLE[_cls] = dataclasses.replace(QUANTIZE_TABLE[_cls], tfmot=_TFMOT_PASS)
for _cls in (layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum,
             layers.MaxPooling1D, layers.Identity, layers.UpSampling1D):
    QUANTIZE_TABLE[_cls] = dataclasses.replace(QUANTIZE_TABLE[_cls], tfmot=_TFMOT_NO)
QUANTIZE_TABLE[layers.Concatenate] = dataclasses.replace(
    QUANTIZE_TABLE[layers.Concatenate], tfmot="output range (a graph transform shares it with the inputs)")


def _add_keras_layer_scale():
    # ConvNeXt's LayerScale (x * gamma per channel) lives in keras.src only.
    LayerScale = _compat.keras_layer_scale_class()
    if LayerScale is None:  # pragma: no cover - moved in a future Keras
        return
    QUANTIZE_TABLE[LayerScale] = Rule(AFFINE, note="per-channel scale: int8 1x1 DEPTHWISE_CONV_2D",
                                      tfmot=_TFMOT_NO)
    # InceptionResNetV2's residual `x + scale * branch`, also keras.src only.
    CustomScaleLayer = _compat.keras_custom_scale_class()
    if CustomScaleLayer is not None:
        QUANTIZE_TABLE[CustomScaleLayer] = Rule(
            OUTPUT, note="InceptionResNetV2's `x + scale * branch`: the scaled branch and the sum each "
            "get an int8 range (MUL and ADD int8; with the output range alone both stayed float)",
            tfmot="refused (tf_keras builds it as a Lambda)")


_add_keras_layer_scale()


def _internal_rows():
    # Layers QAT itself puts in a model; not README rows.
    from tfopt.quantization.layers import ChannelAffine
    from tfopt.quantization.layers import QuantizedBidirectional
    from tfopt.quantization.layers import QuantizedMultiHeadAttention
    from tfopt.quantization.layers import QuantizedRecurrent

    return {
        ChannelAffine: Rule(KERNEL, ("kernel",), "depthwise", "per-channel affine"),
        QuantizedRecurrent: Rule(KERNEL, ("kernel", "recurrent_kernel"), "per_tensor", "recurrent"),
        QuantizedBidirectional: Rule(
            KERNEL, ("forward.kernel", "forward.recurrent_kernel", "backward.kernel",
                     "backward.recurrent_kernel"), "per_tensor", "bidirectional recurrent"),
        QuantizedMultiHeadAttention: Rule(
            KERNEL, ("_query_dense.kernel", "_key_dense.kernel", "_value_dense.kernel",
                     "_output_dense.kernel"), "per_tensor", "attention"),
    }


INTERNAL_TABLE = _internal_rows()

_op_out = Rule(OUTPUT, note="own output range", tfmot="TFOpLambda: refused")
_op_const = Rule(OUTPUT, note="own output range; a float constant operand (e.g. a position embedding) "
                 "rounded to the int8 the converter stores", tfmot="TFOpLambda: refused")
_op_swish = Rule(OUTPUT, note="x * sigmoid(x), the sigmoid rounded as int8 LOGISTIC writes it "
                 "(scale 1/256); own output range", tfmot="TFOpLambda: refused")
_op_fixed = Rule(OUTPUT, note="TFLite's fixed int8 output range (LOGISTIC/SOFTMAX 1/256, TANH 1/128)",
                 tfmot="TFOpLambda: refused")
_op_mean = Rule(OUTPUT, note="own output range; over axes of size 1 (a RESHAPE in the file) the "
                "input's range", tfmot="TFOpLambda: refused")
_op_pass = Rule(PASS, note="same range out", tfmot="TFOpLambda: refused")
# Raw keras.ops nodes, by the op's class name (keras.src.ops.*).
OPS_TABLE = {
    "Add": _op_const, "Subtract": _op_const, "Multiply": _op_const, "TrueDivide": _op_out,
    "Divide": _op_out, "Mean": _op_mean, "Sum": _op_mean, "Maximum": _op_out, "Minimum": _op_out,
    "Concatenate": _op_out, "Relu": Rule(FUSE, note="fused into the kernel before it, else own range",
                                         tfmot="TFOpLambda: refused"),
    "Relu6": Rule(FUSE, note="fused into the kernel before it, else own range", tfmot="TFOpLambda: refused"),
    "Sigmoid": _op_fixed, "HardSigmoid": _op_out, "Silu": _op_swish, "HardSilu": _op_out,
    "Gelu": _op_out, "Tanh": _op_fixed, "Softmax": _op_fixed, "Square": _op_out, "Sqrt": _op_out,
    "Reshape": _op_pass, "ExpandDims": _op_pass, "Squeeze": _op_pass, "Transpose": _op_pass,
    "GetItem": _op_pass, "Max": _op_pass, "Min": _op_pass, "Pad": _op_pass,
    "Split": Rule(PASS, note="every output keeps the input's range (SPLIT/SPLIT_V int8 require one "
                  "scale in and out)", tfmot="TFOpLambda: refused"),
    "Unstack": Rule(PASS, note="every output keeps the input's range (UNPACK int8 requires one scale "
                    "in and out)", tfmot="TFOpLambda: refused"),
}
# A weightless layer or op missing from the tables gets its own range:
# TFLite runs it int8 if it has an int8 kernel, else float between ranges.
DEFAULT_WEIGHTLESS = Rule(OUTPUT, note="own output range (default for weightless layers and ops)")


def rule_for(layer):
    """The `Rule` for a layer or raw ops node, or None if none applies.

    Looks up the exact type, then its Keras base classes (so Keras's own
    subclasses inherit their parent's row; a user's subclass of a Keras layer
    only does when it adds no weights). Weightless layers and ops missing
    from the tables get `DEFAULT_WEIGHTLESS`.
    """
    if not isinstance(layer, layers.Layer):
        return OPS_TABLE.get(type(layer).__name__, DEFAULT_WEIGHTLESS)
    if type(layer) in INTERNAL_TABLE:
        return INTERNAL_TABLE[type(layer)]
    if type(layer) in QUANTIZE_TABLE:
        return QUANTIZE_TABLE[type(layer)]
    for cls in type(layer).__mro__[1:]:
        if cls in QUANTIZE_TABLE and cls.__module__.startswith("keras."):
            rule = QUANTIZE_TABLE[cls]
            own = {id(w) for w in layer.weights}
            parent_weights = {id(_resolve(layer, name)) for name in rule.weights}
            if own <= parent_weights | _bias_ids(layer):
                return rule
            break
    if not layer.weights:
        return DEFAULT_WEIGHTLESS
    return None


def _resolve(layer, path):
    """`layer.a.b` for the path `"a.b"` (None if missing)."""
    value = layer
    for part in path.split("."):
        value = getattr(value, part, None)
    return value


def _bias_ids(layer):
    return {id(w) for w in layer.weights if len(w.shape) <= 1}


def describe_table():
    """The table as README rows.

    Returns:
        A list of `(layer type, what tfopt does, what tfmot 0.8.1 does)`
        string tuples: first the layer types, then raw `keras.ops` nodes
        (as `ops.<Name>`), then the default for anything else weightless.

    Example:

    ```python
    for layer, ours, tfmot in tfopt.quantization.config.describe_table():
        print(f"| {layer} | {ours} | {tfmot} |")
    ```
    """
    rows = []
    for cls, rule in QUANTIZE_TABLE.items():
        rows.append((cls.__name__, _describe(rule), rule.tfmot or _TFMOT_NO))
    for name, rule in OPS_TABLE.items():
        rows.append((f"ops.{name}", _describe(rule), rule.tfmot))
    rows.append(("other weightless layer/op", DEFAULT_WEIGHTLESS.note,
                 "refused unless in the registry"))
    rows.append(("custom layer", "QuantizeConfig via quantize_annotate_layer: its kernels int8, "
                 "own output range", "QuantizeConfig via quantize_annotate_layer"))
    return rows


def _describe(rule):
    return rule.note or rule.io


class QuantizeConfig:
    """Says which kernels of a layer are fake-quantized to int8.

    Subclass it for a custom layer and pass an instance to
    `quantize_annotate_layer`. Register the subclass with
    `keras.saving.register_keras_serializable()` so models load.

    Methods to implement:
        get_weights(layer): the kernels to quantize per output channel, a
            list of `keras.Variable`s of the layer (never biases: TFLite
            keeps biases int32 and derives their scale).
        get_config(): a JSON-able dict (default: empty).

    Example:

    ```python
    @keras.saving.register_keras_serializable()
    class MyDenseConfig(tfopt.quantization.QuantizeConfig):
        def get_weights(self, layer):
            return [layer.w]
    ```
    """

    def get_weights(self, layer):
        raise NotImplementedError(f"{type(self).__name__} must implement get_weights(layer).")

    def granularity(self, layer):
        """`"per_channel"` (default), `"per_tensor"`, `"depthwise"` or `"transpose"`."""
        return "per_channel"

    def checked_weights(self, layer):
        """`get_weights` validated: `(variable, granularity)` pairs.

        Raises:
            ValueError: If a returned object is not one of the layer's own
                float variables of rank >= 2, or the granularity is unknown.
        """
        own = {id(v) for v in layer.weights}
        granularity = self.granularity(layer)
        if granularity not in quantizers.GRANULARITIES:
            raise ValueError(
                f"{type(self).__name__}.granularity({layer.name!r}) returned {granularity!r}; "
                f"use one of {quantizers.GRANULARITIES}."
            )
        result = []
        for weight in self.get_weights(layer):
            if id(weight) not in own:
                raise ValueError(
                    f"{type(self).__name__}.get_weights({layer.name!r}) returned "
                    f"{getattr(weight, 'path', weight)!r}, which is not one of the "
                    "layer's weights; return the layer's own kernel variables."
                )
            if len(weight.shape) < 2:
                raise ValueError(
                    f"{type(self).__name__}.get_weights({layer.name!r}) returned "
                    f"{weight.path!r} of shape {tuple(weight.shape)}; per-channel "
                    "quantization needs a kernel (rank >= 2), not a bias or scale."
                )
            result.append((weight, granularity))
        return result

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfopt")
class TableQuantizeConfig(QuantizeConfig):
    """Quantizes the kernels `QUANTIZE_TABLE` names for the layer's type."""

    def _rule(self, layer):
        rule = rule_for(layer)
        if rule is None or not rule.weights:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no kernels in "
                "tfopt's QUANTIZE_TABLE; pass a QuantizeConfig."
            )
        return rule

    def get_weights(self, layer):
        return [_resolve(layer, name) for name in self._rule(layer).weights]

    def granularity(self, layer):
        return self._rule(layer).granularity


@keras.saving.register_keras_serializable(package="tfopt")
class TimeDistributedQuantizeConfig(QuantizeConfig):
    """Quantizes the kernels of a TimeDistributed's layer as that layer's row says."""

    def get_weights(self, layer):
        return TableQuantizeConfig().get_weights(layer.layer)

    def granularity(self, layer):
        return TableQuantizeConfig().granularity(layer.layer)


# Kept for models saved before the table (their configs name these classes).
@keras.saving.register_keras_serializable(package="tfopt")
class KernelQuantizeConfig(QuantizeConfig):
    """Quantizes the `kernel` of convolutions per output channel."""

    def get_weights(self, layer):
        return [layer.kernel]


@keras.saving.register_keras_serializable(package="tfopt")
class DenseQuantizeConfig(KernelQuantizeConfig):
    """Quantizes a Dense/EinsumDense kernel per tensor (see quantizers)."""

    def granularity(self, layer):
        return "per_tensor"


@keras.saving.register_keras_serializable(package="tfopt")
class DepthwiseQuantizeConfig(QuantizeConfig):
    """Quantizes a depthwise kernel per (input channel x multiplier)."""

    def get_weights(self, layer):
        return [layer.kernel]

    def granularity(self, layer):
        return "depthwise"


FUSABLE_ACTIVATIONS = ("relu", "relu6")


def default_config(layer):
    """tfopt's `QuantizeConfig` for a layer whose table row has kernels, or None."""
    rule = rule_for(layer)
    if rule is None or not rule.weights or rule.io not in (KERNEL, GATHER):
        return None
    return TableQuantizeConfig()


def activation_name(layer):
    """The name of a layer's `activation` (None if it has none)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", str(activation))


def is_fusable_activation(layer):
    """True for a ReLU/ReLU6 (layer or op) that TFLite fuses into a conv."""
    if isinstance(layer, layers.ReLU):
        return layer.negative_slope == 0 and layer.threshold == 0 and layer.max_value in (None, 6, 6.0)
    if isinstance(layer, layers.Activation):
        return activation_name(layer) in FUSABLE_ACTIVATIONS
    return type(layer).__name__ in ("Relu", "Relu6") and not isinstance(layer, layers.Layer)
