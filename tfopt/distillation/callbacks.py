"""Callbacks that schedule the distillation temperature and weight."""

import keras

from tfopt.distillation.distiller import Distiller
from tfopt.distillation.distiller import check_alpha
from tfopt.distillation.distiller import check_temperature


class DistillationScheduler(keras.callbacks.Callback):
    """Sets a `Distiller`'s temperature and/or alpha at each epoch's start.

    Like `keras.callbacks.LearningRateScheduler`: each schedule is a function
    of the epoch index (0-based) returning the value for that epoch. The
    values are variables of the distiller, so they take effect without
    recompiling and are logged as `temperature` and `alpha`.

    Args:
        temperature: Optional `epoch -> T` (T > 0).
        alpha: Optional `epoch -> alpha` (in [0, 1]).

    Raises:
        ValueError: If neither schedule is given, or a schedule returns an
            invalid value (raised at that epoch, before it trains).
        TypeError: If the model being trained is not a `Distiller`.

    Example:

    ```python
    # Anneal T from 8 to 2 and shift weight onto the labels over 10 epochs.
    scheduler = tfopt.distillation.DistillationScheduler(
        temperature=lambda e: 8.0 - 0.6 * e, alpha=lambda e: min(0.5, 0.05 * e))
    distiller.fit(x, y, epochs=10, callbacks=[scheduler])
    ```
    """

    def __init__(self, temperature=None, alpha=None):
        super().__init__()
        if temperature is None and alpha is None:
            raise ValueError("DistillationScheduler needs a temperature and/or an alpha schedule.")
        for name, schedule in (("temperature", temperature), ("alpha", alpha)):
            if schedule is not None and not callable(schedule):
                raise TypeError(f"{name} must be a function of the epoch, got {schedule!r}.")
        self.temperature = temperature
        self.alpha = alpha

    def on_train_begin(self, logs=None):
        if not isinstance(self.model, Distiller):
            raise TypeError(
                "DistillationScheduler schedules a tfopt.distillation.Distiller, not "
                f"{type(self.model).__name__}.")

    def on_epoch_begin(self, epoch, logs=None):
        if self.temperature is not None:
            value = self.temperature(epoch)
            check_temperature(value)
            self.model.temperature.assign(float(value))
        if self.alpha is not None:
            value = self.alpha(epoch)
            check_alpha(value)
            self.model.alpha.assign(float(value))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["temperature"] = float(self.model.temperature.numpy())
            logs["alpha"] = float(self.model.alpha.numpy())
