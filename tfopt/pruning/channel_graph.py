"""Which channels of a Keras graph model can be removed, and together with what.

Structured pruning removes output channels of a layer (Conv filters, Dense
units). Every tensor that carries those channels downstream must lose them
too: BatchNormalization and DepthwiseConv2D are sliced along, the next
Conv/Dense loses the matching input rows, and tensors joined by Add (a
residual connection) must keep the same channels, so their producers form one
*group* with one shared set of kept channels.

`ChannelGraph` walks a Sequential/Functional model once and records, for every
tensor, its channel *layout*: the segments of its last axis (one per group, or
fixed channels that are never pruned) and, after Flatten, how often the
channel block repeats (Flatten of `(H, W, C)` interleaves: flat index
`(h * W + w) * C + c`). A layer that the walk cannot see through safely
(LayerNormalization mixes channels, Softmax normalises over them, a Lambda is
opaque...) *blocks* the groups reaching it: they are not pruned, and asking
for them raises an error naming that layer.

The graph is pure analysis; `surgery.py` builds the narrower model from it.
"""

import dataclasses
import math

import keras
import numpy as np
from keras import layers as L

from tfopt.graph import UnsupportedModelError  # noqa: F401  (re-exported: tfopt.pruning's public name)
from tfopt.graph import as_functional  # noqa: F401
from tfopt.graph import check_graph_model as _check

# Layers whose output channels are a prune target ("producers").
PRODUCERS = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.SeparableConv1D, L.SeparableConv2D)

# Weightless layers that act on each channel alone (masked channel in,
# masked channel out), so channels flow through them unchanged.
_PASSTHROUGH = (
    L.ReLU, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
    L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
    L.ActivityRegularization, L.Identity, L.ZeroPadding1D, L.ZeroPadding2D,
    L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D, L.MaxPooling1D,
    L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
    L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
)
# Elementwise activations (softmax/log_softmax/glu mix channels: not here).
_ELEMENTWISE_ACTIVATIONS = {
    "linear", "relu", "relu6", "sigmoid", "tanh", "elu", "selu", "gelu", "silu",
    "swish", "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign",
    "exponential", "leaky_relu", "mish", "celu", "hard_tanh", "tanh_shrink",
    "soft_shrink", "hard_shrink", "squareplus", "sparse_plus", "log_sigmoid",
}
_ELEMENTWISE_MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The channel axis of a tensor: `repeat` copies of `segments`.

    Attributes:
        segments: `(group_id_or_None, size)` pairs, in channel order.
        repeat: How many times the segment block repeats (Flatten).
    """

    segments: tuple
    repeat: int = 1

    @property
    def width(self):
        return sum(size for _, size in self.segments)


@dataclasses.dataclass
class Group:
    """Channels pruned together: the outputs of one or more producers.

    Attributes:
        id: Union-find root id.
        name: Name of the first producer (topological order); used in
            ratios, tables and errors.
        producers: Names of the layers whose output channels these are.
        size: Number of channels.
        blocked: None if the group can be pruned, else why not.
    """

    id: int
    name: str
    producers: list
    size: int
    blocked: str | None = None


@dataclasses.dataclass
class LayerInfo:
    """What surgery must do to one layer.

    kind: "producer" (slice input rows by `in_layout`, outputs by `group`),
    "channelwise" (BN/Depthwise/PReLU/mask: slice by `in_layout`), "reshape"
    (rewrite the target's last dimension), or "copy".
    """

    kind: str
    in_layout: Layout | None = None
    group: int | None = None


class ChannelGraph:
    """Channel layouts and prune groups of a Sequential/Functional model.

    Args:
        model: A built Sequential or Functional model.
        passthrough: Extra layer types treated as weightless channel-wise
            layers whose input layout is recorded (the channel masks).

    Raises:
        TypeError: For subclassed models.
        ValueError: For unbuilt models.
    """

    def __init__(self, model, passthrough=()):
        check_graph_model(model)
        self.model = model
        self.functional = as_functional(model)
        self._passthrough_recorded = tuple(passthrough)
        self._parent = {}
        self._groups = {}  # id -> Group (valid at roots)
        self.layers = {}  # layer name -> LayerInfo
        self.edges = []  # (consumer layer, input KerasTensor, Layout)
        self.order = []  # layer names in topological order
        self._layouts = {}
        self._walk()

    # -- union-find -------------------------------------------------------

    def find(self, gid):
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def _new_group(self, layer, size):
        gid = len(self._parent)
        self._parent[gid] = gid
        self._groups[gid] = Group(gid, layer.name, [layer.name], int(size))
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
        return first

    def _block(self, layout, reason):
        for gid, _ in layout.segments:
            if gid is not None:
                group = self._groups[self.find(gid)]
                group.blocked = group.blocked or reason

    # -- public views -------------------------------------------------------

    def group(self, gid):
        """The `Group` that `gid` belongs to."""
        return self._groups[self.find(gid)]

    def groups(self):
        """All groups, prunable or not, in topological order."""
        roots = sorted({self.find(g) for g in self._parent})
        return [self._groups[r] for r in roots]

    def prunable_groups(self):
        """The groups that can be pruned, in topological order."""
        return [g for g in self.groups() if g.blocked is None]

    def group_of_producer(self, name):
        """The group of producer layer `name`, or None if it is not one."""
        info = self.layers.get(name)
        if info is None or info.kind != "producer":
            return None
        return self.group(info.group)

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
            for gid, size in layout.segments:
                kept = keep.get(self.find(gid)) if gid is not None else None
                kept = np.arange(size) if kept is None else np.asarray(kept)
                positions.append(base + kept)
                base += size
        if not positions:
            return np.zeros(0, "int64")
        return np.concatenate(positions).astype("int64")

    def segment_slices(self, layout):
        """`(root, [positions...])` per group segment: where its channels sit."""
        result = []
        width = layout.width
        base = 0
        for gid, size in layout.segments:
            if gid is not None:
                starts = [r * width + base for r in range(layout.repeat)]
                result.append((self.find(gid), starts, size))
            base += size
        return result

    # -- the walk -------------------------------------------------------------

    def _fixed(self, tensor):
        return Layout(((None, tensor.shape[-1]),))

    def _walk(self):
        model = self.functional
        nodes = []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            nodes += model._nodes_by_depth[depth]
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
            layouts = [self._layouts.get(id(t)) or self._fixed(t) for t in inputs]
            if uses[id(op)] > 1:
                outs = self._opaque(op, layouts, node, "is shared (called more than once)")
            else:
                outs = self._visit(op, inputs, layouts, node)
            for tensor, layout in zip(node.output_tensors, outs):
                self._layouts[id(tensor)] = layout
        for tensor in model.outputs:
            layout = self._layouts.get(id(tensor))
            if layout is not None:
                producer = tensor._keras_history.operation.name
                self._block(layout, f"its channels are the model output (through {producer!r})")

    def _opaque(self, op, layouts, node, why):
        kind = type(op).__name__
        for layout in layouts:
            self._block(layout, f"layer {op.name!r} ({kind}) {why}")
        self.layers.setdefault(op.name, LayerInfo("copy"))
        return [self._fixed(t) for t in node.output_tensors]

    def _visit(self, op, inputs, layouts, node):
        channels_last = getattr(op, "data_format", "channels_last") == "channels_last"
        if not channels_last:
            return self._opaque(op, layouts, node, "is channels_first; only channels_last is supported")
        if getattr(op, "quantization_mode", None):
            return self._opaque(op, layouts, node, "is quantized")
        if isinstance(op, self._passthrough_recorded):
            self.layers[op.name] = LayerInfo("channelwise", layouts[0])
            return [layouts[0]]
        if isinstance(op, PRODUCERS):
            (layout,) = layouts
            if getattr(op, "groups", 1) != 1:
                return self._opaque(op, layouts, node, f"is a grouped convolution (groups={op.groups})")
            if getattr(op, "depth_multiplier", 1) != 1:
                # Its pointwise kernel has in*multiplier rows: not sliced here.
                return self._opaque(op, layouts, node, "has depth_multiplier != 1")
            if layout.repeat != 1 and not isinstance(op, L.Dense):
                return self._opaque(op, layouts, node, "reads a flattened layout")
            out = node.output_tensors[0]
            gid = self._new_group(op, out.shape[-1])
            self.layers[op.name] = LayerInfo("producer", layout, gid)
            self.edges.append((op, inputs[0], layout))
            produced = Layout(((gid, int(out.shape[-1])),))
            activation = getattr(getattr(op, "activation", None), "__name__", "linear")
            if activation not in _ELEMENTWISE_ACTIVATIONS:
                # A softmax over the units changes every value when one goes.
                self._block(produced, f"layer {op.name!r} ({type(op).__name__}) applies "
                                      f"{activation!r} across its channels")
            return [produced]
        if isinstance(op, L.DepthwiseConv1D | L.DepthwiseConv2D):
            if op.depth_multiplier != 1:
                return self._opaque(op, layouts, node, "has depth_multiplier != 1")
            self.layers[op.name] = LayerInfo("channelwise", layouts[0])
            return [layouts[0]]
        if isinstance(op, L.BatchNormalization):
            rank = len(inputs[0].shape)
            if op.axis not in (-1, rank - 1):
                return self._opaque(op, layouts, node, f"normalizes axis {op.axis}, not the channels")
            self.layers[op.name] = LayerInfo("channelwise", layouts[0])
            return [layouts[0]]
        if isinstance(op, L.PReLU):
            if op.alpha.shape[-1] == 1:
                return [layouts[0]]
            self.layers[op.name] = LayerInfo("channelwise", layouts[0])
            return [layouts[0]]
        if isinstance(op, L.Activation):
            name = getattr(op.activation, "__name__", "")
            if name not in _ELEMENTWISE_ACTIVATIONS:
                return self._opaque(op, layouts, node, f"applies {name or op.activation!r} across channels")
            return [layouts[0]]
        if isinstance(op, _PASSTHROUGH):
            return [layouts[0]]
        if isinstance(op, L.Flatten):
            shape = inputs[0].shape
            spatial = shape[1:-1]
            if any(d is None for d in spatial):
                return self._opaque(op, layouts, node, "flattens an unknown spatial shape")
            layout = layouts[0]
            return [Layout(layout.segments, layout.repeat * int(math.prod(spatial)))]
        if isinstance(op, L.Reshape):
            layout = layouts[0]
            if not _has_groups(layout):
                return [self._fixed(node.output_tensors[0])]
            if layout.repeat == 1 and op.target_shape[-1] == inputs[0].shape[-1]:
                self.layers[op.name] = LayerInfo("reshape", layout)
                return [layout]
            return self._opaque(op, layouts, node, "reshapes the channel axis")
        if isinstance(op, _ELEMENTWISE_MERGES) or (
            isinstance(op, L.Concatenate) and op.axis not in (-1, len(inputs[0].shape) - 1)
        ):
            return [self._merge(op, layouts, node)]
        if isinstance(op, L.Concatenate):
            if any(l.repeat != 1 for l in layouts):
                return self._opaque(op, layouts, node, "concatenates flattened layouts")
            return [Layout(tuple(s for l in layouts for s in l.segments))]
        if isinstance(op, keras.Model):
            return self._opaque(op, layouts, node, "is a nested model; structured pruning does not enter nested models")
        return self._opaque(op, layouts, node, "is not known to keep channels separate")

    def _merge(self, op, layouts, node):
        first = layouts[0]
        shapes = {(l.repeat, tuple(size for _, size in l.segments)) for l in layouts}
        if len(shapes) != 1:
            return self._opaque(op, layouts, node, "joins tensors whose channel segments differ")[0]
        segments = []
        for index, (_, size) in enumerate(first.segments):
            ids = [l.segments[index][0] for l in layouts]
            real = [g for g in ids if g is not None]
            if not real:
                segments.append((None, size))
                continue
            root = real[0]
            for other in real[1:]:
                root = self._union(root, other)
            if len(real) != len(ids):
                self._block(Layout(((root, size),)),
                            f"layer {op.name!r} ({type(op).__name__}) adds it to channels that are not pruned")
            segments.append((root, size))
        return Layout(tuple(segments), first.repeat)


def _has_groups(layout):
    return any(gid is not None for gid, _ in layout.segments)


def check_graph_model(model):
    """Raises `UnsupportedModelError` unless `model` is a built graph model."""
    _check(model, "Structured pruning",
           subclassed_hint="Its graph cannot be traced to remove channels; rebuild it as a Functional model.")
