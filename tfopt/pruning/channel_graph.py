"""Which channels of a Keras graph model can be removed, and together with what.

Structured pruning removes output channels of a layer (Conv filters, Dense
units, attention heads). Every tensor that carries those channels downstream
must lose them too: BatchNormalization and DepthwiseConv2D are sliced along,
the next Conv/Dense loses the matching input rows, and tensors joined by Add
(a residual connection) or Multiply (a squeeze-excite gate) must keep the
same channels, so their producers form one *group* with one shared set of
kept channels.

How each layer (or raw `keras.ops` node) treats channels is decided by ONE
table, `CHANNEL_TABLE`: layer type (or `"ops.<OpClass>"` for an ops node, or a
class name such as `"LayerScale"`) -> a `ChannelRule` whose `flow` is one of

- `produces`: its output channels are a prune target (Conv, Dense,
  Conv2DTranspose, Embedding); its kernel loses the input rows of pruned
  channels it reads.
- `follows`: per-channel weights sliced along (BatchNormalization,
  DepthwiseConv2D, PReLU, LayerScale, GroupNormalization). A depthwise conv
  with `depth_multiplier=m` turns input channel `c` into outputs
  `c*m .. c*m+m-1`: the unit pruned is the input channel with its `m`
  outputs. GroupNormalization prunes whole groups: the prune groups reaching
  it get a *unit* (`Group.unit`), so their kept channels come in whole
  normalization groups and `groups` shrinks.
- `couples`: elementwise joins (Add, Multiply, `x + y`, `x * gate` with a
  broadcast gate): the channels of all inputs become one group; scalars and
  width-1 tensors broadcast and pass.
- `passes`: per-channel, weightless (activations, pooling, dropout, padding,
  resizing, upsampling, `x + 3`, `ops.mean` over spatial axes).
- `concatenates`, `reshapes` (Flatten, Reshape, `ops.reshape`): layouts are
  rearranged.
- `heads`: MultiHeadAttention; its attention heads are a group of their own.
- `attends`: weightless Attention / AdditiveAttention: query and key
  channels are coupled (each score sums over their channel pairs), the
  output's channels are the value's; without a key, key is value.
- `splits`: `ops.split` into N equal sections of the channel axis: channel
  i of every section is coupled, so the sections stay equal. A layer whose
  channels span several sections is *tiled*: its channels become k copies
  of a section group (`ChannelGraph.kept` maps them back).
- `blocks`: the layer mixes channels (LayerNormalization over the channels,
  a channel softmax, an RNN...): the channels reaching it are not pruned and
  asking for them raises an error naming the layer and the reason.

Supporting a layer is one entry in the table. Nested models are entered by
flattening them first (`tfopt.graph.flatten_nested`): the pruned model is
flat. `ChannelGraph` walks the model once and records, for every tensor, its
channel *layout*: the segments of its last axis (one per group, or fixed
channels that are never pruned; each channel of a segment spans `mult`
adjacent positions after depthwise convs with `depth_multiplier > 1`) and,
after Flatten, how often the channel block repeats (Flatten of `(H, W, C)`
interleaves: flat index `(h * W + w) * C + c`).

The graph is pure analysis; `surgery.py` builds the narrower model from it.
"""

import dataclasses
import math
import re

import keras
import numpy as np
from keras import layers as L

from tfopt import _compat
from tfopt.graph import UnsupportedModelError  # noqa: F401  (re-exported: tfopt.pruning's public name)
from tfopt.graph import as_functional
from tfopt.graph import check_graph_model as _check
from tfopt.graph import flatten_nested

# Elementwise activations (softmax/log_softmax/glu mix channels: not here).
_ELEMENTWISE_ACTIVATIONS = {
    "linear", "relu", "relu6", "sigmoid", "tanh", "elu", "selu", "gelu", "silu",
    "swish", "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign",
    "exponential", "leaky_relu", "mish", "celu", "hard_tanh", "tanh_shrink",
    "soft_shrink", "hard_shrink", "squareplus", "sparse_plus", "log_sigmoid",
}
TFMOT = "no structured pruning"


@dataclasses.dataclass(frozen=True)
class ChannelRule:
    """How one layer type moves channels (one row of `CHANNEL_TABLE`).

    Attributes:
        flow: `"produces"`, `"follows"`, `"couples"`, `"passes"`,
            `"concatenates"`, `"reshapes"`, `"heads"` or `"blocks"`.
        note: What tfopt does with the layer, for the README table (and the
            error message of a `blocks` rule).
        weights: For `produces`: `{attribute: (input_axis, output_axis)}` of
            the kernels (None: the axis is not sliced); the bias follows the
            output axis. A third item names the layer attribute by which
            each input channel repeats on that kernel's input axis
            (SeparableConv's pointwise rows: `"depth_multiplier"`).
        size_key: The config key holding the channel count (`"filters"`,
            `"units"`, `"projection_dim"`...), or the count of channel
            groups (GroupNormalization's `"groups"`), rewritten by surgery.
    """

    flow: str
    note: str
    weights: dict = None
    size_key: str = None


def _produces(size_key, **weights):
    kernels = ", ".join(weights)
    return ChannelRule("produces", f"prunes output channels ({kernels} and bias sliced); "
                       "the layers reading them lose the matching input rows", weights, size_key)


_TRANSPOSE = _produces("filters", kernel=(-1, -2))
_SEPARABLE = dataclasses.replace(
    _produces("filters", depthwise_kernel=(-2, None), pointwise_kernel=(-2, -1, "depth_multiplier")),
    note="prunes output filters (pointwise kernel and bias sliced); the layers reading them lose "
         "the matching input rows. With depth_multiplier m, a pruned input channel takes its m "
         "depthwise columns and the m matching pointwise rows along")
_CONV = dataclasses.replace(
    _produces("filters", kernel=(-2, -1)),
    note="prunes output filters (kernel and bias sliced); the layers reading them lose the matching "
         "input rows. A grouped conv with groups == channels is depthwise: follows; other grouped convs block")
_PASSES = ChannelRule("passes", "channels pass through unchanged (per-channel, no weights)")
_COUPLES = ChannelRule("couples", "joins its inputs' channels into one group pruned together "
                       "(width-1 and scalar operands broadcast and pass)")
_OPS_ELEMENTWISE = ChannelRule("couples", "elementwise: scalar or width-1 operands pass; tensors of "
                               "the same width are coupled into one group (constants block)")
_OPS_UNARY = ChannelRule("passes", "elementwise on each channel: channels pass")
_OPS_REDUCE = ChannelRule("passes", "passes when it reduces other axes (e.g. spatial mean); "
                          "blocks when it reduces the channel axis")
_RESHAPES = ChannelRule("reshapes", "passes when the channel axis is kept or everything is flattened "
                        "(target shape rewritten); otherwise blocks")
_RNN = ChannelRule("blocks", "recurrent kernels mix every unit: channels reaching it are kept")
_DEPTHWISE = ChannelRule("follows", "depthwise kernel and bias sliced along; with depth_multiplier m, "
                         "a pruned input channel takes its m outputs along (the layers reading "
                         "them lose the m matching rows)")
_ATTENDS = ChannelRule("attends", "couples the query's and key's channels into one group (dropping "
                       "channel j from both drops one term of every score: exact); the output's "
                       "channels are the value's (without a key, key is value: all three coupled). "
                       "AdditiveAttention's per-channel scale is sliced along")

CHANNEL_TABLE = {
    # produces: output channels are prune targets
    L.Dense: _produces("units", kernel=(-2, -1)),
    L.Conv1D: _CONV, L.Conv2D: _CONV, L.Conv3D: _CONV,
    L.Conv1DTranspose: _TRANSPOSE, L.Conv2DTranspose: _TRANSPOSE, L.Conv3DTranspose: _TRANSPOSE,
    L.SeparableConv1D: _SEPARABLE, L.SeparableConv2D: _SEPARABLE,
    L.Embedding: ChannelRule("produces", "prunes embedding dimensions (table columns sliced); the "
                             "layers reading them lose the matching input rows",
                             {"embeddings": (None, -1)}, "output_dim"),
    # follows: per-channel weights sliced along
    L.BatchNormalization: ChannelRule("follows", "per-channel statistics sliced along "
                                      "(blocks if it normalizes another axis)"),
    L.DepthwiseConv1D: _DEPTHWISE, L.DepthwiseConv2D: _DEPTHWISE,
    L.GroupNormalization: ChannelRule(
        "follows", "prunes whole normalization groups (exact: the other groups' statistics are "
        "unchanged): the channels reaching it are pruned in units of its channels per group, "
        "gamma/beta sliced along, `groups` shrinks. Blocks when a group straddles two layers' "
        "channels or it normalizes another axis", size_key="groups"),
    L.PReLU: ChannelRule("follows", "per-channel alpha sliced along (a shared alpha passes)"),
    "LayerScale": ChannelRule("follows", "per-channel scale (ConvNeXt) sliced along", size_key="projection_dim"),
    # attends: weightless dot-product / additive attention
    L.Attention: _ATTENDS, L.AdditiveAttention: _ATTENDS,
    # heads
    L.MultiHeadAttention: ChannelRule(
        "heads", "prunes whole attention heads (Q/K/V kernels' head axis, output projection's "
        "head axis; rebuilt with fewer heads); channels reaching it are kept", size_key="num_heads"),
    # couples
    L.Add: _COUPLES, L.Subtract: _COUPLES, L.Multiply: _COUPLES, L.Average: _COUPLES,
    L.Maximum: _COUPLES, L.Minimum: _COUPLES,
    "CustomScaleLayer": ChannelRule("couples", "InceptionResNetV2's residual `x + scale * branch`: "
                                    "like Add, joins its inputs' channels into one group"),
    L.Concatenate: ChannelRule("concatenates", "on the channel axis: segments laid side by side, each "
                               "pruned with its own group; on another axis: couples"),
    # reshapes
    L.Flatten: ChannelRule("reshapes", "the channel block repeats per position; the next Dense loses "
                           "the matching rows"),
    L.Reshape: _RESHAPES,
    # passes
    L.Activation: ChannelRule("passes", "elementwise activations pass; softmax/glu over the channels blocks"),
    L.Softmax: ChannelRule("passes", "passes when normalizing another axis; blocks over the channels"),
    L.Rescaling: ChannelRule("passes", "passes with a scalar scale/offset; a per-channel one blocks"),
    **{cls: _PASSES for cls in (
        L.ReLU, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
        L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
        L.ActivityRegularization, L.Identity, L.ZeroPadding1D, L.ZeroPadding2D,
        L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D, L.MaxPooling1D,
        L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
        L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
        L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
        L.GlobalMaxPooling3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Resizing,
    )},
    # blocks
    L.LayerNormalization: ChannelRule(
        "blocks", "normalizes over the channels (mean and variance change when one goes): the "
        "channels it normalizes are kept; channels after it (e.g. an MLP's hidden units) are prunable"),
    L.UnitNormalization: ChannelRule("blocks", "normalizes over the channels: channels reaching it are kept"),
    L.Normalization: ChannelRule("blocks", "per-channel input statistics: its channels are kept"),
    L.EinsumDense: ChannelRule("blocks", "an arbitrary einsum: channels reaching it are kept"),
    L.LSTM: _RNN, L.GRU: _RNN, L.SimpleRNN: _RNN, L.Bidirectional: _RNN,
    L.Lambda: ChannelRule("blocks", "opaque Python function: channels reaching it are kept"),
    # raw keras.ops nodes of a Functional graph
    **{f"ops.{name}": _OPS_ELEMENTWISE for name in (
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power")},
    **{f"ops.{name}": _OPS_UNARY for name in (
        "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu", "Gelu", "Elu", "Selu",
        "Celu", "LeakyRelu", "Softplus", "Softsign", "LogSigmoid", "Tanh", "Exp", "Log",
        "Sqrt", "Square", "Abs", "Absolute", "Negative", "Clip", "Erf", "Cast")},
    **{f"ops.{name}": _OPS_REDUCE for name in ("Mean", "Sum", "Max", "Min")},
    "ops.Reshape": _RESHAPES,
    "ops.Concatenate": ChannelRule("concatenates", "like Concatenate: on the channel axis, segments "
                                   "laid side by side; on another axis: couples"),
    "ops.Split": ChannelRule(
        "splits", "on another axis: channels pass to every part; into N equal sections of the "
        "channel axis: channel i of every section is coupled (a layer whose channels span "
        "several sections loses channel i of each), so the sections stay equal. Blocks "
        "with explicit split indices on the channel axis"),
}


def _key_name(key):
    if isinstance(key, str):
        return re.sub(r"(?<!^)(?=[A-Z])", "_", key[4:]).lower() if key.startswith("ops.") else key
    return key.__name__


def _row_name(keys):
    layers = [_key_name(k) for k in keys if not (isinstance(k, str) and k.startswith("ops."))]
    ops = [_key_name(k) for k in keys if isinstance(k, str) and k.startswith("ops.")]
    if ops:
        layers.append("keras.ops: " + ", ".join(ops) + " (raw ops nodes)")
    return ", ".join(layers)


def describe_table():
    """The rows of `CHANNEL_TABLE`, for the README's supported-layers table.

    Layer types that share one rule are listed together in one row.

    Returns:
        A list of `(layer_type_name, what_tfopt_does, what_tfmot_0_8_1_does)`.

    Example:

    ```python
    for layer, ours, tfmot in tfopt.pruning.channel_graph.describe_table():
        print(f"| {layer} | {ours} | {tfmot} |")
    ```
    """
    rows = {}
    for key, rule in CHANNEL_TABLE.items():
        rows.setdefault(id(rule), (rule, []))[1].append(key)
    result = [(_row_name(keys), f"{rule.flow}: {rule.note}", TFMOT) for rule, keys in rows.values()]
    result.append(("any other layer", "blocks: channels reaching it are kept (add a CHANNEL_TABLE entry)", TFMOT))
    return result


def rule_for(op):
    """`(key, ChannelRule)` for a layer or ops node, or `(None, None)`."""
    if isinstance(op, keras.layers.Layer):
        for cls in type(op).__mro__:
            if cls in CHANNEL_TABLE:
                return cls, CHANNEL_TABLE[cls]
        key = type(op).__name__
        return (key, CHANNEL_TABLE[key]) if key in CHANNEL_TABLE else (None, None)
    key = f"ops.{type(op).__name__}"
    return (key, CHANNEL_TABLE[key]) if key in CHANNEL_TABLE else (None, None)


# Layer types whose output channels are a prune target (kept for callers).
PRODUCERS = tuple(k for k, r in CHANNEL_TABLE.items() if r.flow == "produces" and not isinstance(k, str))


@dataclasses.dataclass(frozen=True)
class Layout:
    """The channel axis of a tensor: `repeat` copies of `segments`.

    Attributes:
        segments: `(group_id_or_None, size, mult)` triples, in channel
            order: `size` channels of the group, each spanning `mult`
            adjacent positions (`mult > 1` after a depthwise conv with
            `depth_multiplier > 1`: channel `c` is at `c*mult .. c*mult+mult-1`).
        repeat: How many times the segment block repeats (Flatten).
    """

    segments: tuple
    repeat: int = 1

    @property
    def width(self):
        return sum(size * mult for _, size, mult in self.segments)


@dataclasses.dataclass
class Group:
    """Channels pruned together: the outputs of one or more producers.

    Attributes:
        id: Union-find root id.
        name: Name of the first producer (topological order); used in
            ratios, tables and errors.
        producers: Names of the layers whose output channels these are.
        size: Number of channels (or attention heads).
        blocked: None if the group can be pruned, else why not.
        kind: `"channels"`, or `"heads"` for the heads of a
            MultiHeadAttention layer.
        unit: Channels are pruned in blocks of `unit` adjacent ones (a
            GroupNormalization's channels per group); `size` is a multiple.
    """

    id: int
    name: str
    producers: list
    size: int
    blocked: str | None = None
    kind: str = "channels"
    unit: int = 1


@dataclasses.dataclass
class LayerInfo:
    """What surgery must do to one layer.

    kind: "producer" (slice input rows by `in_layout`, outputs by `group`),
    "channelwise" (BN/Depthwise/PReLU/mask: slice by `in_layout`), "reshape"
    (rewrite the target's last dimension to `factor` times the kept width of
    `in_layout`), "heads" (keep the heads of `group`), or "copy". For a
    channelwise GroupNormalization `factor` is its channels per group; for a
    depthwise conv, its depth multiplier.
    """

    kind: str
    in_layout: Layout | None = None
    group: int | None = None
    rule: ChannelRule | None = None
    factor: int = 1


class ChannelGraph:
    """Channel layouts and prune groups of a Sequential/Functional model.

    Nested models are flattened first (`tfopt.graph.flatten_nested`);
    `source` is the model surgery clones (the user's model, or its flat copy).

    Args:
        model: A built Sequential or Functional model.
        passthrough: Extra layer types treated as weightless channel-wise
            layers whose input layout is recorded (the channel masks).

    Raises:
        UnsupportedModelError: For subclassed or unbuilt models.
    """

    def __init__(self, model, passthrough=()):
        check_graph_model(model)
        self.model = model
        nested = any(isinstance(layer, keras.Model) for layer in as_functional(model).layers)
        self.functional = flatten_nested(model) if nested else as_functional(model)
        self.source = self.functional if nested else model
        self._passthrough_recorded = tuple(passthrough)
        self._parent = {}
        self._groups = {}  # id -> Group (valid at roots)
        self.layers = {}  # layer name -> LayerInfo
        self.edges = []  # (consumer layer, input KerasTensor, Layout)
        self.order = []  # layer names in topological order
        self._layouts = {}
        self._tiles = {}  # root of a group split into k sections -> (section group id, k)
        self._walk()

    # -- union-find -------------------------------------------------------

    def find(self, gid):
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def _new_group(self, layer, size, kind="channels"):
        gid = len(self._parent)
        self._parent[gid] = gid
        self._groups[gid] = Group(gid, layer.name, [layer.name], int(size), kind=kind)
        return gid

    def _union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        first, second = (a, b) if a < b else (b, a)  # the earlier names the group
        self._parent[second] = first
        g1, g2 = self._groups[first], self._groups[second]
        g1.producers += g2.producers
        g1.blocked = g1.blocked or g2.blocked
        g1.unit = math.lcm(g1.unit, g2.unit)
        return first

    def _block(self, layout, reason):
        for gid, *_ in self._resolve(layout).segments:
            if gid is not None:
                group = self._groups[self.find(gid)]
                group.blocked = group.blocked or reason

    # -- public views -------------------------------------------------------

    def group(self, gid):
        """The `Group` that `gid` belongs to."""
        return self._groups[self.find(gid)]

    def groups(self):
        """All groups, prunable or not, in topological order.

        A group split into sections by `ops.split` is not listed: its
        section group (same name and producers) is.
        """
        roots = sorted({self.find(g) for g in self._parent} - set(self._tiles))
        return [self._groups[r] for r in roots]

    def prunable_groups(self):
        """The groups that can be pruned, in topological order."""
        return [g for g in self.groups() if g.blocked is None]

    def group_of_producer(self, name):
        """The group of producer (or attention) layer `name`, or None."""
        info = self.layers.get(name)
        if info is None or info.kind not in ("producer", "heads"):
            return None
        root = self.find(info.group)
        while root in self._tiles:
            root = self.find(self._tiles[root][0])
        return self._groups[root]

    def kept(self, gid, keep):
        """Kept channel indices of group `gid` under `keep`, or None (all).

        A group split into k sections keeps channel i of each section when
        its section group keeps i.
        """
        root = self.find(gid)
        if root in self._tiles:
            section, k = self._tiles[root]
            inner = self.kept(section, keep)
            if inner is None:
                return None
            size = self._groups[root].size // k
            return np.concatenate([t * size + inner for t in range(k)]).astype("int64")
        kept = keep.get(root)
        return None if kept is None else np.asarray(kept, "int64")

    def expand(self, layout, keep):
        """Kept positions of a tensor's channel axis.

        Args:
            layout: The tensor's `Layout`.
            keep: `{group_root: sorted kept indices}`; groups not in it keep
                every channel.

        Returns:
            A sorted int array of positions along the tensor's last axis.
        """
        positions = []
        width = layout.width
        for r in range(layout.repeat):
            base = r * width
            for gid, size, mult in layout.segments:
                kept = self.kept(gid, keep) if gid is not None else None
                kept = np.arange(size) if kept is None else kept
                positions.append(base + expand_multiplier(kept, mult))
                base += size * mult
        if not positions:
            return np.zeros(0, "int64")
        return np.concatenate(positions).astype("int64")

    def segment_slices(self, layout):
        """Where each group segment's channels sit on a tensor's last axis.

        Returns:
            `(root, starts, size, mult)` per group segment: the segment
            covers `size * mult` positions from each start; channel `c` of
            the group is at `start + c*mult .. start + c*mult + mult - 1`.
        """
        result = []
        layout = self._resolve(layout)
        width = layout.width
        base = 0
        for gid, size, mult in layout.segments:
            if gid is not None:
                starts = [r * width + base for r in range(layout.repeat)]
                result.append((self.find(gid), starts, size, mult))
            base += size * mult
        return result

    def _resolve(self, layout):
        """`layout` with each segment of a split group as k segments of its section group."""
        while self._tiles and any(g is not None and self.find(g) in self._tiles
                                  for g, *_ in layout.segments):
            segments = []
            for gid, size, mult in layout.segments:
                root = self.find(gid) if gid is not None else None
                if root in self._tiles:
                    section, k = self._tiles[root]
                    segments += [(section, size // k, mult)] * k
                else:
                    segments.append((gid, size, mult))
            layout = Layout(tuple(segments), layout.repeat)
        return layout

    # -- the walk -------------------------------------------------------------

    def _fixed(self, tensor):
        return Layout(((None, _last(tensor), 1),))

    def _walk(self):
        model = self.functional
        nodes = []
        by_depth = _compat.nodes_by_depth(model)
        for depth in sorted(by_depth, reverse=True):
            nodes += by_depth[depth]
        uses = {}
        for node in nodes:
            if node.operation is not None and not node.is_input:
                uses[id(node.operation)] = uses.get(id(node.operation), 0) + 1
        for tensor in model.inputs:
            self._layouts[id(tensor)] = self._fixed(tensor)
        for node in nodes:
            op = node.operation
            if op is None or node.is_input:
                continue
            if op.name not in self.layers:
                self.order.append(op.name)
            inputs = list(node.input_tensors)
            layouts = [self._resolve(self._layouts.get(id(t)) or self._fixed(t)) for t in inputs]
            if uses[id(op)] > 1:
                outs = self._opaque(op, layouts, node, "is shared (called more than once)")
            else:
                outs = self._visit(op, inputs, layouts, node)
            for tensor, layout in zip(node.output_tensors, outs):
                self._layouts[id(tensor)] = layout
        for tensor in model.outputs:
            layout = self._layouts.get(id(tensor))
            if layout is not None:
                producer = _compat.producer(tensor).name
                self._block(layout, f"its channels are the model output (through {producer!r})")

    def _opaque(self, op, layouts, node, why):
        kind = type(op).__name__
        for layout in layouts:
            self._block(layout, f"layer {op.name!r} ({kind}) {why}")
        self.layers.setdefault(op.name, LayerInfo("copy"))
        return [self._fixed(t) for t in node.output_tensors]

    def _visit(self, op, inputs, layouts, node):
        if isinstance(op, self._passthrough_recorded):
            self.layers[op.name] = LayerInfo("channelwise", layouts[0])
            return [layouts[0]]
        if getattr(op, "data_format", "channels_last") != "channels_last":
            return self._opaque(op, layouts, node, "is channels_first; only channels_last is supported")
        if getattr(op, "quantization_mode", None):
            return self._opaque(op, layouts, node, "is quantized")
        key, rule = rule_for(op)
        if rule is None:
            return self._opaque(op, layouts, node, "is not known to keep channels separate "
                                "(no CHANNEL_TABLE entry)")
        visitor = getattr(self, f"_{rule.flow}")
        return visitor(op, inputs, layouts, node, rule)

    # One visitor per flow of the table.

    def _blocks(self, op, inputs, layouts, node, rule):
        if isinstance(op, L.LayerNormalization):
            axes = [a % len(inputs[0].shape) for a in np.atleast_1d(op.axis)]
            if len(inputs[0].shape) - 1 not in axes:
                return [layouts[0]]  # normalizes other axes: per channel
        return self._opaque(op, layouts, node, rule.note.split(":")[0])

    def _produces(self, op, inputs, layouts, node, rule):
        if len(inputs) != 1:
            return self._opaque(op, layouts, node, "takes several inputs")
        (layout,) = layouts
        groups = getattr(op, "groups", 1)
        if groups != 1 and groups == op.filters == layout.width and layout.repeat == 1:
            # groups == channels: a depthwise conv written as Conv (ConvNeXt); follows.
            self.layers[op.name] = LayerInfo("channelwise", layout, rule=rule)
            return [layout]
        if groups != 1:
            return self._opaque(op, layouts, node, f"is a grouped convolution (groups={op.groups})")
        reads_rows = any(axes[0] is not None for axes in rule.weights.values())
        if reads_rows and layout.repeat != 1 and not isinstance(op, L.Dense):
            return self._opaque(op, layouts, node, "reads a flattened layout")
        if not reads_rows:
            self._block(layout, f"layer {op.name!r} ({type(op).__name__}) reads it as indices")
        out = node.output_tensors[0]
        gid = self._new_group(op, _last(out))
        self.layers[op.name] = LayerInfo("producer", layout, gid, rule)
        if reads_rows:
            self.edges.append((op, inputs[0], layout))
        produced = Layout(((gid, _last(out), 1),))
        activation = getattr(getattr(op, "activation", None), "__name__", "linear")
        if activation not in _ELEMENTWISE_ACTIVATIONS:
            # A softmax over the units changes every value when one goes.
            self._block(produced, f"layer {op.name!r} ({type(op).__name__}) applies "
                                  f"{activation!r} across its channels")
        return [produced]

    def _follows(self, op, inputs, layouts, node, rule):
        width = layouts[0].width * layouts[0].repeat
        if isinstance(op, L.DepthwiseConv1D | L.DepthwiseConv2D) and op.depth_multiplier != 1:
            # Input channel c becomes outputs c*m .. c*m+m-1: one unit.
            m = int(op.depth_multiplier)
            layout = layouts[0]
            self.layers[op.name] = LayerInfo("channelwise", layout, rule=rule, factor=m)
            return [Layout(tuple((g, size, mult * m) for g, size, mult in layout.segments),
                           layout.repeat)]
        if isinstance(op, L.GroupNormalization):
            return self._group_norm(op, inputs, layouts, node, rule)
        if isinstance(op, L.BatchNormalization) and op.axis not in (-1, len(inputs[0].shape) - 1):
            return self._opaque(op, layouts, node, f"normalizes axis {op.axis}, not the channels")
        if isinstance(op, L.PReLU) and op.alpha.shape[-1] == 1:
            return [layouts[0]]
        if not isinstance(op, L.DepthwiseConv1D | L.DepthwiseConv2D | L.BatchNormalization | L.PReLU):
            # A scale-vector layer (LayerScale): every weight must be (channels,).
            if len(inputs) != 1 or any(tuple(w.shape) != (width,) for w in op.weights):
                return self._opaque(op, layouts, node, "has weights that are not one value per channel")
        self.layers[op.name] = LayerInfo("channelwise", layouts[0], rule=rule)
        return [layouts[0]]

    def _group_norm(self, op, inputs, layouts, node, rule):
        """Whole normalization groups are pruned: the groups reaching it get a unit."""
        (layout,) = layouts[:1]
        rank = len(inputs[0].shape)
        axes = np.atleast_1d(op.axis)
        if len(axes) != 1 or axes[0] % rank != rank - 1:
            return self._opaque(op, layouts, node, f"normalizes axis {op.axis}, not the channels")
        if layout.repeat != 1:
            return self._opaque(op, layouts, node, "normalizes a flattened layout")
        per_group = layout.width // int(op.groups)
        units, start = [], 0
        for gid, size, mult in layout.segments:
            if gid is not None:
                if start % per_group or (size * mult) % per_group:
                    return self._opaque(op, layouts, node, (
                        f"has normalization groups of {per_group} channels that straddle the "
                        "channels of different layers (a group must be pruned whole)"))
                # Whole channels (each `mult` positions) that make whole groups.
                units.append((gid, math.lcm(per_group, mult) // mult))
            start += size * mult
        for gid, unit in units:
            group = self._groups[self.find(gid)]
            group.unit = math.lcm(group.unit, unit)
        self.layers[op.name] = LayerInfo("channelwise", layout, rule=rule, factor=per_group)
        return [layout]

    def _attends(self, op, inputs, layouts, node, rule):
        """Attention / AdditiveAttention: query and key channels coupled; output = value's."""
        tensors = first_argument(node)
        if not isinstance(tensors, (list, tuple)) or not 2 <= len(tensors) <= 3:
            return self._opaque(op, layouts, node, "is not called on [query, value] or "
                                "[query, value, key]")
        query, value = tensors[0], tensors[1]
        key = tensors[2] if len(tensors) == 3 else value
        q, v, k = (self._resolve(self._layouts.get(id(t)) or self._fixed(t)) for t in (query, value, key))
        if any(l.repeat != 1 for l in (q, v, k)):
            return self._opaque(op, layouts, node, "attends over a flattened layout")
        if _structure(q) != _structure(k) and q.width > 1 and k.width > 1:
            return self._opaque(op, layouts, node, "couples query and key channels that are not "
                                "laid out alike (channels of different layers, or a depth "
                                "multiplier on one side only)")
        coupled = self._merge(op, [q, k], node, why="couples it (query with key) with channels "
                              "that are not pruned")
        # Query and key channels are consumed here: the masks of gradual pruning go in front.
        self.edges.append((op, query, q))
        if key is not query:
            self.edges.append((op, key, k))
        if getattr(op, "scale", None) is not None and tuple(op.scale.shape) != ():
            # AdditiveAttention's scale: one value per query/key channel.
            self.layers[op.name] = LayerInfo("channelwise", coupled, rule=rule)
        else:
            self.layers[op.name] = LayerInfo("copy")
        output = coupled if key is value else v
        return [output] + [self._fixed(t) for t in node.output_tensors[1:]]

    def _splits(self, op, inputs, layouts, node, rule):
        """ops.split: equal channel sections are coupled channel by channel."""
        layout, outputs = layouts[0], node.output_tensors
        rank = len(inputs[0].shape)
        if op.axis % rank != rank - 1:
            return [layout for _ in outputs]
        if not _has_groups(layout):
            return [self._fixed(t) for t in outputs]
        if not isinstance(op.indices_or_sections, int):
            return self._opaque(op, layouts, node, "splits the channel axis at explicit indices "
                                "(sections of different widths cannot shrink together)")
        if layout.repeat != 1:
            return self._opaque(op, layouts, node, "splits a flattened layout")
        n = op.indices_or_sections
        width = layout.width // n
        ids = [g for g, *_ in layout.segments if g is not None]
        sections = [[] for _ in range(n)]
        start = 0
        for gid, size, mult in layout.segments:
            span = size * mult
            first, last = start // width, (start + span - 1) // width
            k = last - first + 1
            if k == 1:
                sections[first].append((gid, size, mult))
            elif (gid is not None and start % width == 0 and span == k * width and size % k == 0
                  and ids.count(gid) == 1):
                # The layer's channels span k whole sections: channel i of each goes together.
                section = self._tile(gid, k)
                for t in range(first, last + 1):
                    sections[t].append((section, size // k, mult))
            else:
                return self._opaque(op, layouts, node, "cuts the channel axis inside a "
                                    "layer's channels at a point that is not a whole section")
            start += span
        parts = [Layout(tuple(s)) for s in sections]
        if len({_structure(p) for p in parts}) != 1:
            return self._opaque(op, layouts, node, "splits channels of layers of different widths "
                                "into sections that cannot shrink together")
        merged = self._merge(op, parts, node, why="couples it (channel i of every section) with "
                             "channels that are not pruned")
        return [merged for _ in outputs]

    def _tile(self, gid, k):
        """Makes group `gid` k copies of a new section group; returns its id."""
        root = self.find(gid)
        group = self._groups[root]
        section = len(self._parent)
        self._parent[section] = section
        size = group.size // k
        self._groups[section] = Group(section, group.name, list(group.producers), size,
                                      blocked=group.blocked, kind=group.kind)
        if group.unit > 1 and size % group.unit:
            self._groups[section].blocked = self._groups[section].blocked or (
                f"its GroupNormalization groups of {group.unit} channels do not fit the sections of a split")
        else:
            self._groups[section].unit = group.unit
        self._tiles[root] = (section, k)
        return section

    def _heads(self, op, inputs, layouts, node, rule):
        for layout in layouts:
            self._block(layout, f"layer {op.name!r} (MultiHeadAttention) mixes the channels of its "
                                "inputs (its heads are pruned instead)")
        gid = self._new_group(op, op.num_heads, kind="heads")
        self.layers[op.name] = LayerInfo("heads", None, gid, rule)
        group = self._groups[gid]
        if len(node.output_tensors) != 1:
            group.blocked = f"layer {op.name!r} (MultiHeadAttention) returns per-head attention scores"
        elif any(getattr(op, attr, None) is None for attr in
                 ("query_dense", "key_dense", "value_dense", "output_dense")):
            group.blocked = f"layer {op.name!r} ({type(op).__name__}) has no Q/K/V/output projections to slice"
        return [self._fixed(t) for t in node.output_tensors]

    def _passes(self, op, inputs, layouts, node, rule):
        if not layouts:
            return [self._fixed(t) for t in node.output_tensors]
        rank = len(inputs[0].shape)
        if isinstance(op, L.Activation):
            name = getattr(op.activation, "__name__", "")
            if name not in _ELEMENTWISE_ACTIVATIONS:
                return self._opaque(op, layouts, node, f"applies {name or op.activation!r} across channels")
        elif isinstance(op, L.Softmax):
            if any(a % rank == rank - 1 for a in np.atleast_1d(op.axis)):
                return self._opaque(op, layouts, node, "normalizes over the channels")
        elif isinstance(op, L.Rescaling):
            if np.ndim(op.scale) or np.ndim(op.offset):
                return self._opaque(op, layouts, node, "has a per-channel scale or offset")
        elif rule is _OPS_REDUCE:
            axis = getattr(op, "axis", None)
            if axis is None or any(a % rank == rank - 1 for a in np.atleast_1d(axis)):
                return self._opaque(op, layouts, node, "reduces over the channel axis")
        elif rule is _OPS_UNARY and len(inputs) > 1:
            return self._couples(op, inputs, layouts, node, rule)
        return [layouts[0]] + [self._fixed(t) for t in node.output_tensors[1:]]

    def _couples(self, op, inputs, layouts, node, rule):
        operands = list(layouts)
        if not isinstance(op, keras.layers.Layer):
            # Constants of an ops node (`x + 3`, `x + positions`).
            for value in _constant_arguments(node):
                shape = np.shape(value)
                if shape and shape[-1] != 1:
                    operands.append(Layout(((None, int(shape[-1]), 1),)))
        return [self._merge(op, operands, node)]

    def _concatenates(self, op, inputs, layouts, node, rule):
        if op.axis not in (-1, len(inputs[0].shape) - 1):
            return self._couples(op, inputs, layouts, node, rule)
        if any(l.repeat != 1 for l in layouts):
            return self._opaque(op, layouts, node, "concatenates flattened layouts")
        return [Layout(tuple(s for l in layouts for s in l.segments))]

    def _reshapes(self, op, inputs, layouts, node, rule):
        layout = layouts[0]
        if not _has_groups(layout):
            return [self._fixed(node.output_tensors[0])]
        in_shape, out_shape = inputs[0].shape, node.output_tensors[0].shape
        spatial = in_shape[1:-1]
        if isinstance(op, L.Flatten) or (
                len(out_shape) == 2 and all(d is not None for d in spatial)
                and out_shape[-1] == _last(inputs[0]) * math.prod(spatial)):
            if any(d is None for d in spatial):
                return self._opaque(op, layouts, node, "flattens an unknown spatial shape")
            factor = int(math.prod(spatial))
            if not isinstance(op, L.Flatten):
                self.layers[op.name] = LayerInfo("reshape", layout, factor=factor)
            return [Layout(layout.segments, layout.repeat * factor)]
        if layout.repeat == 1 and out_shape[-1] == in_shape[-1]:
            self.layers[op.name] = LayerInfo("reshape", layout)
            return [layout]
        return self._opaque(op, layouts, node, "reshapes the channel axis")

    def _merge(self, op, layouts, node, why="joins it with channels that are not pruned"):
        if not layouts:
            return self._fixed(node.output_tensors[0])
        # Width-1 operands broadcast over the channels: they pass (a pruned
        # producer of a single channel cannot be broadcast).
        wide = [l for l in layouts if l.width * l.repeat != 1]
        for layout in layouts:
            if layout.width * layout.repeat == 1 and wide:
                self._block(layout, f"layer {op.name!r} ({type(op).__name__}) broadcasts it over channels")
        if not wide:
            return layouts[0]
        first = wide[0]
        shapes = {_structure(l) for l in wide}
        if len(shapes) != 1:
            return self._opaque(op, layouts, node, "joins tensors whose channel segments differ")[0]
        segments = []
        for index, (_, size, mult) in enumerate(first.segments):
            ids = [l.segments[index][0] for l in wide]
            real = [g for g in ids if g is not None]
            if not real:
                segments.append((None, size, mult))
                continue
            root = real[0]
            for other in real[1:]:
                root = self._union(root, other)
            if len(real) != len(ids):
                self._block(Layout(((root, size, mult),)),
                            f"layer {op.name!r} ({type(op).__name__}) {why}")
            segments.append((root, size, mult))
        return Layout(tuple(segments), first.repeat)


def _last(tensor):
    shape = tensor.shape
    return int(shape[-1]) if shape and shape[-1] is not None else 1


def _constant_arguments(node):
    arguments = getattr(node, "arguments", None)
    if arguments is None:
        return []
    flat = keras.tree.flatten((list(arguments.args), dict(arguments.kwargs)))
    return [v for v in flat if v is not None and not isinstance(v, (keras.KerasTensor, str, bool))
            and not isinstance(v, (int, float))]


def first_argument(node):
    """The first call argument of a node (`inputs`, positional or keyword), or None."""
    arguments = getattr(node, "arguments", None)
    if arguments is None:
        return None
    if arguments.args:
        return arguments.args[0]
    return arguments.kwargs.get("inputs")


def _has_groups(layout):
    return any(gid is not None for gid, *_ in layout.segments)


def _structure(layout):
    """What must match for two layouts to be joined channel by channel."""
    return layout.repeat, tuple((size, mult) for _, size, mult in layout.segments)


def expand_multiplier(channels, mult):
    """Positions of `channels` when each spans `mult` adjacent positions."""
    channels = np.asarray(channels, dtype="int64")
    if mult == 1:
        return channels
    return (channels[:, None] * mult + np.arange(mult)).reshape(-1)


def check_graph_model(model):
    """Raises `UnsupportedModelError` unless `model` is a built graph model."""
    _check(model, "Structured pruning",
           subclassed_hint="Its graph cannot be traced to remove channels; rebuild it as a Functional model.")
