"""Pruning schedules: when to update the masks, and to which sparsity.

The contract is tfmot's: `schedule(step) -> (should_prune, sparsity)`, where
`step` is the number of training batches seen so far (an integer or an
integer tensor) and both results are tensors. The formulas are tfmot's
formulas, so a migrated recipe prunes at the same steps to the same values.
"""

import warnings

import keras
from keras import ops

# A schedule that changes the mask fewer times than this across its ramp
# jumps in large steps; tfmot's default frequency does this silently.
MIN_RAMP_UPDATES = 10


class PruningSchedule:
    """Base class of pruning schedules.

    Subclasses implement `__call__(step)` returning `(should_prune, sparsity)`
    and `get_config()`. Schedules are validated when they are built.
    """

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def end_sparsity(self):
        """The sparsity the schedule ends at (a Python float)."""
        raise NotImplementedError

    def _should_prune_in_step(self, step):
        step = ops.cast(step, "int32")
        in_range = ops.logical_and(
            ops.greater_equal(step, self.begin_step),
            ops.logical_or(
                ops.less_equal(step, self.end_step), self.end_step < 0
            ),
        )
        on_turn = ops.equal(
            ops.mod(step - self.begin_step, self.frequency), 0
        )
        return ops.logical_and(in_range, on_turn)


def _validate_sparsity(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {value!r}.")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{name}={value!r} is outside [0, 1): a sparsity is the fraction "
            "of weights set to zero, and pruning every weight is not allowed."
        )


def _validate_steps(begin_step, end_step, frequency, allow_open_end):
    for name, value in (
        ("begin_step", begin_step),
        ("end_step", end_step),
        ("frequency", frequency),
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {value!r}.")
    if begin_step < 0:
        raise ValueError(f"begin_step={begin_step} must be >= 0.")
    if frequency <= 0:
        raise ValueError(
            f"frequency={frequency} must be > 0 (the mask is updated every "
            "`frequency` steps)."
        )
    if end_step == -1 and allow_open_end:
        return
    if end_step < begin_step:
        allowed = " (or -1 for no end)" if allow_open_end else ""
        raise ValueError(
            f"end_step={end_step} must be >= begin_step={begin_step}"
            f"{allowed}."
        )


@keras.saving.register_keras_serializable(package="tfopt")
class ConstantSparsity(PruningSchedule):
    """Prunes to a constant sparsity every `frequency` steps.

    Args:
        target_sparsity: Fraction of weights to zero, in [0, 1).
        begin_step: First step at which the mask is updated.
        end_step: Last step at which the mask is updated; -1 for no end.
        frequency: Update the mask every `frequency` steps.

    Raises:
        ValueError: If the sparsity is outside [0, 1), `end_step` is before
            `begin_step`, or `frequency` is not positive.
        TypeError: If an argument has the wrong type.

    Example:

    >>> schedule = ConstantSparsity(0.5, begin_step=0, frequency=10)
    >>> should_prune, sparsity = schedule(20)
    >>> bool(should_prune), float(sparsity)
    (True, 0.5)
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        _validate_sparsity("target_sparsity", target_sparsity)
        _validate_steps(begin_step, end_step, frequency, allow_open_end=True)
        self.target_sparsity = float(target_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def __call__(self, step):
        return (
            self._should_prune_in_step(step),
            ops.convert_to_tensor(self.target_sparsity, "float32"),
        )

    def end_sparsity(self):
        return self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tfopt")
class PolynomialDecay(PruningSchedule):
    """Ramps sparsity from `initial_sparsity` to `final_sparsity`.

    `sparsity(step) = final + (initial - final) * (1 - p) ** power` with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`, the
    formula of tfmot's `PolynomialDecay`. A large `power` prunes fast early,
    when the network recovers easily, and slowly near the end.

    tfopt updates masks cheaply, so `frequency=1` (a mask update every batch)
    is a good choice; a warning is issued when the ramp would update the mask
    fewer than 10 times, because then sparsity jumps in a few big steps.

    Args:
        initial_sparsity: Sparsity at `begin_step`, in [0, 1).
        final_sparsity: Sparsity at and after `end_step`, in [0, 1).
        begin_step: Step at which the ramp starts.
        end_step: Step at which the ramp ends; must be > `begin_step`.
        power: Exponent of the decay; must be > 0.
        frequency: Update the mask every `frequency` steps.

    Raises:
        ValueError: If a sparsity is outside [0, 1), `end_step` is not after
            `begin_step`, or `power`/`frequency` is not positive.
        TypeError: If an argument has the wrong type.

    Example:

    >>> schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100,
    ...                            frequency=10)
    >>> should_prune, sparsity = schedule(100)
    >>> round(float(sparsity), 4)
    0.8
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        _validate_sparsity("initial_sparsity", initial_sparsity)
        _validate_sparsity("final_sparsity", final_sparsity)
        _validate_steps(begin_step, end_step, frequency, allow_open_end=False)
        if end_step == begin_step:
            raise ValueError(
                f"end_step={end_step} must be > begin_step={begin_step}: "
                "the ramp needs at least one step (use ConstantSparsity for "
                "a fixed sparsity)."
            )
        if not isinstance(power, (int, float)) or power <= 0:
            raise ValueError(f"power={power!r} must be a positive number.")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.power = power
        self.frequency = frequency
        updates = (end_step - begin_step) // frequency + 1
        if updates < MIN_RAMP_UPDATES:
            ramp = end_step - begin_step
            if ramp // MIN_RAMP_UPDATES >= 1:
                fix = (f"Use frequency <= {ramp // MIN_RAMP_UPDATES} (tfopt's "
                       "mask update is cheap enough for frequency=1).")
            else:
                # frequency=1 cannot help: only a longer ramp can.
                fix = (f"Use a longer ramp: end_step - begin_step >= "
                       f"{MIN_RAMP_UPDATES - 1} steps (e.g. more epochs, "
                       "or a smaller batch).")
            warnings.warn(
                f"PolynomialDecay ramps from step {begin_step} to {end_step} "
                f"with frequency={frequency}: only {updates} mask update(s), "
                "so sparsity rises in a few large jumps and accuracy "
                f"suffers. {fix}",
                stacklevel=2,
            )

    def __call__(self, step):
        progress = ops.cast(step - self.begin_step, "float32") / float(
            self.end_step - self.begin_step
        )
        progress = ops.clip(progress, 0.0, 1.0)
        sparsity = (
            self.initial_sparsity - self.final_sparsity
        ) * ops.power(1.0 - progress, float(self.power)) + (
            self.final_sparsity
        )
        return self._should_prune_in_step(step), ops.cast(sparsity, "float32")

    def end_sparsity(self):
        return self.final_sparsity

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


def serialize(schedule):
    """Serializes a schedule to a Keras config dict."""
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config):
    """Rebuilds a schedule from `serialize`'s output."""
    return keras.saving.deserialize_keras_object(config)


def resolve(schedule):
    """A `PruningSchedule` from `schedule`, its config dict, or None (default).

    The default is `ConstantSparsity(0.5, begin_step=0)`, as in tfmot.

    Raises:
        TypeError: If `schedule` is anything else.
    """
    if schedule is None:
        return ConstantSparsity(0.5, 0)
    if isinstance(schedule, dict):
        schedule = deserialize(schedule)
    if not isinstance(schedule, PruningSchedule):
        raise TypeError(
            "pruning_schedule must be a tfopt.pruning.PruningSchedule "
            f"(e.g. PolynomialDecay), got {schedule!r}."
        )
    return schedule


class UpdateTracker:
    """Says, batch by batch from Python, whether a schedule's update is due.

    With `steps_per_execution > 1` (or a callback that only runs every few
    batches) a step on which the schedule prunes can fall between two calls;
    the update is then due on the next call (catch-up). Used by the
    callback-driven updates: `scope="global"` thresholds and channel masks.

    Args:
        schedule: A `PruningSchedule`.

    Example:

    ```python
    tracker = UpdateTracker(schedule)
    due, sparsity = tracker.due(step)   # step: the model's pruning step
    ```
    """

    def __init__(self, schedule):
        self.schedule = schedule
        self.last_step = None

    def due(self, step):
        """`(update_now, sparsity)` at `step` (an int); remembers `step`.

        `update_now` is True when the schedule prunes at `step` or at a step
        skipped since the previous call.
        """
        should, sparsity = self.schedule(step)
        last, self.last_step = self.last_step, step
        missed = last is not None and step - last > 1 and any(
            bool(self.schedule(s)[0]) for s in range(last + 1, step))
        return bool(should) or missed, float(sparsity)
