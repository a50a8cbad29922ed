"""The layer wrapper that masks a layer's weights and updates the masks."""

import collections
import json

import keras
from keras import layers, ops

from tfopt import _compat

from tfopt.pruning import masks as mask_math
from tfopt.pruning import schedules as schedules_lib
from tfopt.pruning.params import BLOCK_POOLING_TYPES  # noqa: F401  (the old home of these names)
from tfopt.pruning.params import MISSING_CALLBACK as _MISSING_CALLBACK
from tfopt.pruning.params import SCOPES  # noqa: F401
from tfopt.pruning.params import PruningParams
from tfopt.pruning.params import check_m_by_n_layer  # noqa: F401
from tfopt.pruning.params import validate_block_size  # noqa: F401
from tfopt.pruning.params import validate_m_by_n  # noqa: F401
from tfopt.pruning.registry import prunable_weights
from tfopt.substitution import SubstitutingWrapper
from tfopt.substitution import call_with_values


@keras.saving.register_keras_serializable(package="tfopt")
class PruneLowMagnitude(SubstitutingWrapper):
    """Wraps a layer so that its prunable weights are masked by magnitude.

    The wrapper owns, per prunable weight, a `mask` (1 keeps, 0 prunes) and
    a `threshold`, plus a `pruning_step` counter; all three are
    non-trainable variables, so they are checkpointed and saved with the
    model. In training mode each call advances the step and, when the
    schedule says so, recomputes the masks from the magnitudes of the
    currently masked weights (so a pruned weight stays pruned). The layer
    always computes with `weight * mask`: a pruned weight is exactly zero in
    the forward pass and receives exactly zero gradient. The raw variable is
    left untouched (no in-graph assignment to trainable variables, which
    keeps the wrapper valid under `tf.distribute`); `strip_pruning` bakes the
    mask in.

    Use `prune_low_magnitude` rather than this class directly.

    Args:
        layer: The layer to wrap.
        pruning_schedule: A `PruningSchedule`.
        block_size: `(rows, cols)` of the blocks pruned together in the 2-D
            view of a weight (all axes but the last flattened).
        block_pooling_type: `"AVG"` or `"MAX"`, how a block's magnitude is
            pooled.
        sparsity_m_by_n: `None` or `(m, n)`: at least `m` zeros in every `n`
            consecutive input channels (tfmot's meaning; `(2, 4)` is 2:4).
            The schedule then only decides when the mask is updated.
        scope: `"layer"` (each weight reaches the schedule's sparsity) or
            `"global"` (one threshold across every globally-scoped wrapper,
            applied by the `UpdatePruningStep` callback).
        **kwargs: Passed to `keras.layers.Layer`.

    Raises:
        ValueError: If an argument is invalid or `layer` is already wrapped.
        TypeError: If `layer` is not a Keras layer or the schedule is not a
            `PruningSchedule`.
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        scope="layer",
        **kwargs,
    ):
        if not isinstance(layer, layers.Layer):
            raise TypeError(
                f"PruneLowMagnitude wraps a keras.layers.Layer, got {layer!r}."
            )
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Layer {layer.name!r} is already wrapped for pruning; wrap "
                "each layer once."
            )
        params = PruningParams(schedules_lib.resolve(pruning_schedule), block_size,
                               block_pooling_type, sparsity_m_by_n, scope)
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        self.params = params
        self.pruning_schedule = params.pruning_schedule
        self.block_size = params.block_size
        self.block_pooling_type = params.block_pooling_type
        self.sparsity_m_by_n = params.sparsity_m_by_n
        self.scope = params.scope
        # Set by UpdatePruningStep.on_train_begin; checked when a training
        # call is traced, so a forgotten callback fails on the first batch.
        self._pruning_started = False

    # -- building ---------------------------------------------------------

    def build(self, input_shape=None):
        if not self.layer.built:
            if isinstance(self.layer, layers.MultiHeadAttention):
                # Self-attention shapes; build cross-attention layers before
                # wrapping them.
                self.layer.build(input_shape, input_shape)
            else:
                self.layer.build(input_shape)
        weights = prunable_weights(self.layer)
        if weights is None:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has "
                "weights tfopt does not know how to prune. Implement "
                "`get_prunable_weights()` on it (see "
                "tfopt.pruning.PrunableLayer) or leave it unwrapped."
            )
        self.params.check_weights(self.layer, weights)
        self._prunable = weights
        self.masks = [
            self.add_weight(
                name=f"mask_{i}_{w.name}",
                shape=w.shape,
                initializer="ones",
                dtype="float32",
                trainable=False,
                aggregation="only_first_replica",
            )
            for i, w in enumerate(weights)
        ]
        self.thresholds = [
            self.add_weight(
                name=f"threshold_{i}_{w.name}",
                shape=(),
                initializer="zeros",
                dtype="float32",
                trainable=False,
                aggregation="only_first_replica",
            )
            for i, w in enumerate(weights)
        ]
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.built = True

    def start_pruning(self):
        """Allows training calls: done by `UpdatePruningStep.on_train_begin`.

        A wrapper trained before this raises a ValueError naming the missing
        callback on its first training call.
        """
        self._pruning_started = True

    @property
    def prunable_weights(self):
        """The wrapped layer's variables that are masked."""
        return list(self._prunable)

    # -- training-time mask updates --------------------------------------

    def compute_masks(self, sparsity):
        """New masks and thresholds for the current weights (as tensors).

        Magnitudes are taken of the masked weights, so pruned weights stay
        pruned when sparsity only grows. Weights with at least
        `WARM_START_MIN_SIZE` elements (or blocks) are selected warm-started
        from their previous threshold by an XLA-compiled update (the same
        masks, a fraction of the cost; see `masks.magnitude_mask_near`);
        single-weight masks of that size first try to grow by the few kept
        weights near the previous threshold (`masks.grow_mask`, TensorFlow
        outside XLA only), which gives the same masks when its conditions
        hold and is cheaper still.
        """
        return _compute_masks(
            self._update_spec(), sparsity, self._prunable, self.masks, self.thresholds
        )

    def _update_spec(self):
        """The static part of this wrapper's update: one path per weight.

        Wrappers with equal specs (and weight shapes) share one traced
        update function (`_shared_update`).
        """
        paths = []
        for weight in self._prunable:
            if self.sparsity_m_by_n:
                paths.append("m_by_n")
            elif (
                _size(weight.shape) >= WARM_START_MIN_SIZE
                and self.block_size == (1, 1)
                and _dynamic_shapes_allowed()
            ):
                paths.append("grow")
            elif _size(weight.shape) // _size(self.block_size) >= WARM_START_MIN_SIZE:
                paths.append("warm")
            elif self.block_size != (1, 1):
                paths.append("block")
            elif _size(weight.shape) <= mask_math.SORT_MAX_SIZE:
                paths.append("sort")
            else:
                paths.append("plain")
        return _UpdateSpec(
            tuple(paths), tuple(self.block_size), self.block_pooling_type,
            tuple(self.sparsity_m_by_n) if self.sparsity_m_by_n else None,
        )

    def _update_masks(self):
        update = _shared_update(self._update_spec(), self.pruning_schedule)
        new_masks, new_thresholds = update(
            self.pruning_step, list(self._prunable), list(self.masks), list(self.thresholds)
        )
        for variable, value in zip(self.masks, new_masks):
            variable.assign(value)
        for variable, value in zip(self.thresholds, new_thresholds):
            variable.assign(value)

    def call(self, inputs, *args, training=None, **kwargs):
        if training:
            if not self._pruning_started:
                raise ValueError(_MISSING_CALLBACK.format(name=self.name))
            if self.scope == "layer" and self._prunable:
                self._update_masks()
            self.pruning_step.assign_add(1)
        replacements = [
            (w, w.value * ops.cast(m, w.dtype)) for w, m in zip(self._prunable, self.masks)
        ]
        outputs, losses = call_with_values(self.layer, replacements, inputs, *args, **kwargs)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def compute_output_spec(self, *args, **kwargs):
        # The inner layer's own spec (e.g. Conv2D's output shape). Tracing our
        # call instead breaks after `x * 0.5`: Keras marks that KerasTensor
        # sparse (ops.multiply with a Python scalar) and the traced inner call
        # then meets a SparseTensor placeholder.
        try:
            return self.layer.compute_output_spec(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the inner layer cannot say: trace our call
            return super().compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": schedules_lib.serialize(self.pruning_schedule),
                "block_size": list(self.block_size),
                "block_pooling_type": self.block_pooling_type,
                "sparsity_m_by_n": (
                    list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
                ),
                "scope": self.scope,
            }
        )
        return config


# Weights with at least this many elements (blocks, for block pruning)
# select their threshold warm-started from the previous one
# (`masks.update_mask`), compiled with XLA on the TensorFlow backend: it costs
# one compilation (a few seconds) per weight shape and pays back from about
# this size on; smaller weights keep the plain radix select, already cheap
# for them. Same masks either way. Also used by `scope="global"` (the total
# size of the globally pruned weights).
WARM_START_MIN_SIZE = 1 << 16

_COMPILED = {}
# Shared update functions, least recently used last; bounded so that a long
# process (a search building many models, each with its own schedule object
# or weight shapes) does not keep every traced function alive.
_SHARED = collections.OrderedDict()
_SHARED_MAX = 64


class _UpdateSpec(tuple):
    """`(paths, block_size, pooling, m_by_n)`: the static part of an update."""

    def __new__(cls, paths, block_size, pooling, m_by_n):
        return super().__new__(cls, (paths, block_size, pooling, m_by_n))


def _compute_masks(spec, sparsity, weights, masks, thresholds):
    """New masks and thresholds of `weights`, each by its path in `spec`."""
    paths, block_size, pooling, m_by_n = spec
    new_masks, new_thresholds = [], []
    for path, weight, mask, threshold in zip(paths, weights, masks, thresholds):
        if path == "grow":
            new_mask, new_threshold = _grow_or_update(weight, mask, sparsity, threshold)
        elif path == "warm":
            new_mask, new_threshold = _compiled_update()(
                weight, mask, sparsity, threshold, block_size, pooling
            )
        else:
            magnitudes = ops.abs(ops.cast(weight, "float32") * ops.cast(mask, "float32"))
            if path == "m_by_n":
                new_mask, new_threshold = mask_math.m_by_n_mask(magnitudes, m_by_n)
            elif path == "sort":
                new_mask, new_threshold = mask_math.magnitude_mask_sorted(magnitudes, sparsity)
            elif path == "block":
                new_mask, new_threshold = mask_math.block_mask(
                    magnitudes, sparsity, block_size, pooling
                )
            else:
                new_mask, new_threshold = mask_math.magnitude_mask(magnitudes, sparsity)
        new_masks.append(new_mask)
        new_thresholds.append(new_threshold)
    return new_masks, new_thresholds


def _update_or_keep(spec, schedule, step, weights, masks, thresholds):
    """The masks and thresholds after the (possible) update at `step`."""
    should_prune, sparsity = schedule(step)
    return ops.cond(
        should_prune,
        lambda: _compute_masks(spec, sparsity, weights, masks, thresholds),
        lambda: (list(masks), list(thresholds)),
    )


def _is_own_schedule(schedule):
    return type(schedule) in (schedules_lib.PolynomialDecay, schedules_lib.ConstantSparsity)


def _schedule_key(schedule):
    """Equal for schedules that prune at the same steps to the same values.

    tfopt's own schedules are functions of their config; any other schedule
    is only equal to itself (its config may not say everything it does).
    """
    if _is_own_schedule(schedule):
        return (type(schedule), json.dumps(schedule.get_config(), sort_keys=True))
    return (type(schedule), id(schedule))  # the shared function keeps it alive


# Set by benchmarks/pruning_overhead.py to trace the update inline in every
# wrapper (the code before the shared update) for comparison.
_INLINE_UPDATES = False


def _shared_update(spec, schedule):
    """`_update_or_keep` for `spec` and `schedule`, shared by wrappers.

    On the TensorFlow backend it is a `tf.function` that is not inlined into
    the train step (`_noinline`): every wrapper with the same spec, an equal
    schedule and the same weight shapes calls one function, traced and
    optimised once, so a model of hundreds of pruned layers does not trace,
    optimise and hold hundreds of copies of the schedule, the cond and the
    selection (about 240 ops per wrapper). Other backends (and
    `_INLINE_UPDATES`) trace `_update_or_keep` in place.
    """
    if _INLINE_UPDATES or keras.backend.backend() != "tensorflow":
        return lambda *args: _update_or_keep(spec, schedule, *args)
    key = (spec, _schedule_key(schedule))
    if key not in _SHARED:
        import tensorflow as tf

        def update(step, weights, masks, thresholds, _spec=spec, _schedule=schedule):
            return _update_or_keep(_spec, _schedule, step, weights, masks, thresholds)

        # A user's schedule gets AutoGraph, as it did when it was traced in
        # the (AutoGraph-converted) train step; tfopt's code needs none.
        shared = tf.function(
            update, autograph=not _is_own_schedule(schedule),
            experimental_attributes={"_noinline": True},
        )

        def call_shared(*args, _shared=shared):
            # Variables are passed as their values (this replica's under
            # tf.distribute): the function reads, the wrapper assigns. No
            # gradient flows through a mask update: stop_gradient keeps the
            # gradient tape from tracing a backward function for the call.
            return _shared(*tf.nest.map_structure(
                lambda value: tf.stop_gradient(tf.convert_to_tensor(value)), args))

        _SHARED[key] = call_shared
        while len(_SHARED) > _SHARED_MAX:
            _SHARED.popitem(last=False)  # models tracing it already hold their copy
    _SHARED.move_to_end(key)
    return _SHARED[key]


def _size(shape):
    size = 1
    for dim in shape:
        size *= dim
    return size


def _compiled(name, function):
    """`function`, XLA-compiled once per process on the TensorFlow backend."""
    if name not in _COMPILED:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            compiled = tf.function(function, jit_compile=True)

            def function(*args, _compiled=compiled):
                # Read variables (and numpy input) as tensors: the values
                # of this replica under tf.distribute.
                args = [
                    tf.nest.map_structure(tf.convert_to_tensor, a)
                    if not isinstance(a, (str, tuple)) else a
                    for a in args
                ]
                return _compiled(*args)

        _COMPILED[name] = function
    return _COMPILED[name]


def _compiled_update():
    return _compiled("update", mask_math.update_mask)


def _dynamic_shapes_allowed():
    """True when tracing TensorFlow ops outside an XLA-compiled function.

    `masks.grow_mask` gathers a data-dependent number of candidates, which
    only TensorFlow's own kernels run (not XLA: Keras compiles the train
    step with XLA on GPUs by default, or with `jit_compile=True`).
    TensorFlow marks an XLA trace on the outer graph, the process-wide
    eager graph for a top-level call: a thread tracing a jit_compile
    function at the same moment can make a plain trace look like XLA,
    which only sends this update to the XLA path (same masks).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    if tf.executing_eagerly():
        return True
    in_xla = _compat.in_xla_context()
    return in_xla is False


def _grow_or_update(weight, mask, sparsity, threshold):
    """`masks.grow_mask` when it applies, else the XLA-compiled update."""
    weight, mask = ops.convert_to_tensor(weight), ops.convert_to_tensor(mask)
    threshold = ops.convert_to_tensor(threshold)
    ok, delta, index, values = mask_math.grow_mask_candidates(
        weight, mask, sparsity, threshold
    )
    return ops.cond(
        ok,
        lambda: mask_math.grow_mask(mask, delta, index, values),
        lambda: _compiled_update()(weight, mask, sparsity, threshold, (1, 1), "AVG"),
    )


def compiled_global_masks():
    """`masks.global_threshold_masks`, XLA-compiled (TensorFlow backend)."""
    return _compiled("global", mask_math.global_threshold_masks)
