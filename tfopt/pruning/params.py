"""The validated parameters of magnitude pruning, checked in one place.

`prune_low_magnitude` (a model or layers), `PruneLowMagnitude` (one layer)
and `prune_channels_gradually` (the schedule) take the same arguments; they
are validated here once, by `PruningParams`, with the same messages
everywhere.
"""

import dataclasses

from tfopt.pruning import masks as mask_math
from tfopt.pruning import schedules as schedules_lib
from tfopt.pruning.registry import supports_m_by_n

BLOCK_POOLING_TYPES = ("AVG", "MAX")
SCOPES = ("layer", "global")

# One message for both kinds of pruning layers (`PruneLowMagnitude`,
# `ChannelMask`) trained without the callback that starts them.
MISSING_CALLBACK = (
    "{name} is being trained, but pruning was never started. Add "
    "`tfopt.pruning.UpdatePruningStep()` to the callbacks of `fit` (in a "
    "custom training loop call its `set_model(model)` and "
    "`on_train_begin()` before the first step)."
)


def check_schedule(schedule, required=False):
    """Returns `schedule` if it is a `PruningSchedule` (or None when allowed).

    Raises:
        TypeError: For anything else (None too when `required`).
    """
    if (schedule is None and not required) or isinstance(schedule, schedules_lib.PruningSchedule):
        return schedule
    raise TypeError(
        "pruning_schedule must be a tfopt.pruning.PruningSchedule (e.g. "
        f"PolynomialDecay), got {schedule!r}."
    )


def validate_block_size(block_size):
    """Returns `block_size` as a tuple of two positive ints, or raises ValueError."""
    try:
        rows, cols = block_size
    except (TypeError, ValueError):
        raise ValueError(
            f"block_size={block_size!r} must be a pair (rows, cols) of "
            "positive ints."
        ) from None
    for value in (rows, cols):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"block_size={block_size!r} must be a pair (rows, cols) of "
                "positive ints."
            )
    return (rows, cols)


def validate_m_by_n(m_by_n):
    """Returns `m_by_n` as a tuple `(m, n)` with 0 < m < n, or None; else raises ValueError."""
    if m_by_n is None:
        return None
    try:
        zeros, group = m_by_n
    except (TypeError, ValueError):
        raise ValueError(
            f"sparsity_m_by_n={m_by_n!r} must be None or a pair (m, n): "
            "m zeros in every n consecutive weights, e.g. (2, 4)."
        ) from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in m_by_n):
        raise ValueError(f"sparsity_m_by_n={m_by_n!r} must hold two ints.")
    if not 0 < zeros < group:
        raise ValueError(
            f"sparsity_m_by_n={m_by_n!r}: m (zeros per group) must be at least "
            "1 and smaller than n (the group size), e.g. (2, 4)."
        )
    return (zeros, group)


def check_m_by_n_layer(layer):
    """Raises ValueError unless N:M sparsity applies to `layer`'s kernels."""
    if not supports_m_by_n(layer):
        raise ValueError(
            f"sparsity_m_by_n applies to Dense, Conv1D/2D/3D and RNN kernels, whose "
            f"axis -2 is the input channel; layer {layer.name!r} is a "
            f"{type(layer).__name__}. Leave it out with layers=[...]."
        )


@dataclasses.dataclass(frozen=True)
class PruningParams:
    """The arguments of magnitude pruning, validated and normalised once.

    Built by `prune_low_magnitude` and by `PruneLowMagnitude`; the fields
    are the keyword arguments of the wrapper (`as_kwargs()`).

    Args:
        pruning_schedule: A `PruningSchedule`, or None (the wrapper then
            uses `ConstantSparsity(0.5, 0)`).
        block_size: `(rows, cols)` of positive ints; becomes a tuple.
        block_pooling_type: `"AVG"` or `"MAX"`.
        sparsity_m_by_n: None or `(m, n)` with `0 < m < n`; becomes a tuple.
        scope: `"layer"` or `"global"` (not with blocks or N:M).

    Raises:
        ValueError: For an invalid value.
        TypeError: For a schedule that is not a `PruningSchedule`.

    Example:

    ```python
    params = PruningParams(block_size=[1, 4])
    params.block_size            # (1, 4)
    params.check_weights(dense_layer, [dense_layer.kernel])
    ```
    """

    pruning_schedule: object = None
    block_size: tuple = (1, 1)
    block_pooling_type: str = "AVG"
    sparsity_m_by_n: tuple = None
    scope: str = "layer"

    def __post_init__(self):
        block_size = validate_block_size(self.block_size)
        if self.block_pooling_type not in BLOCK_POOLING_TYPES:
            raise ValueError(
                f"block_pooling_type={self.block_pooling_type!r} must be one of "
                f"{BLOCK_POOLING_TYPES}."
            )
        m_by_n = validate_m_by_n(self.sparsity_m_by_n)
        if self.scope not in SCOPES:
            raise ValueError(f"scope={self.scope!r} must be one of {SCOPES}.")
        if self.scope == "global" and (block_size != (1, 1) or m_by_n):
            raise ValueError(
                "scope='global' prunes single weights by one threshold; it "
                "cannot be combined with block_size or sparsity_m_by_n."
            )
        check_schedule(self.pruning_schedule)
        object.__setattr__(self, "block_size", block_size)
        object.__setattr__(self, "sparsity_m_by_n", m_by_n)

    def as_kwargs(self):
        """The fields as keyword arguments of `PruneLowMagnitude`."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def check_weights(self, layer, weights):
        """Raises ValueError if the N:M pattern or the blocks do not fit `layer`'s `weights`.

        Args:
            layer: The layer to prune.
            weights: Its prunable variables (`registry.prunable_weights`).
        """
        if self.sparsity_m_by_n and weights:
            check_m_by_n_layer(layer)
        for weight in weights:
            label = f"{layer.name}/{weight.name}"
            if self.sparsity_m_by_n:
                mask_math.check_m_by_n(weight.shape, self.sparsity_m_by_n, label)
            if self.block_size != (1, 1):
                mask_math.check_block_size(weight.shape, self.block_size, label)
