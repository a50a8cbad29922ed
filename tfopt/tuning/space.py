"""The compression search space: names, defaults, validation, declaration.

The space is declared with KerasTuner's own `HyperParameters` (so every
oracle, and KerasTuner's `hyperparameters=` overrides, work on it); this
module holds what the names mean and which values are legal.
"""

import dataclasses

PRUNING_PATTERNS = ("none", "unstructured", "block", "2:4")
SCHEDULES = ("polynomial", "constant")
QUANTIZATION_MODES = ("none", "ptq", "qat")
# Opt-in precisions below int8 (not in the default space): "int4" is
# litert-quantizer's int4 blockwise-32 file, "int16x8" its int16-activation
# file (tfopt.export.quantize_tflite), both from the trained float model.
LOWBIT_QUANTIZATION_MODES = ("int4", "int16x8")
# Patterns whose target sparsity and schedule shape are searched; 2:4 has a
# fixed 50% by construction.
_SPARSITY_PATTERNS = ("unstructured", "block")

def _number(low=None, high=None, integer=False, low_open=False, high_open=False):
    def check(name, value):
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"must be {'an int' if integer else 'a number'}"
        if low is not None and (value < low or (low_open and value == low)):
            return f"must be {'>' if low_open else '>='} {low}"
        if high is not None and (value > high or (high_open and value == high)):
            return f"must be {'<' if high_open else '<='} {high}"
        return None

    return check


def _one_of(options):
    def check(name, value):
        return None if value in options and not isinstance(value, bool) else f"must be one of {options}"

    return check


def _boolean(name, value):
    return None if isinstance(value, bool) else "must be True or False"


# The search dimensions: name -> (values, check). The first value is the
# default; `check(name, value)` returns what is wrong with a value, or None.
# A name applies only in some setups (see `CompressionHyperModel`). Adding a
# dimension: one entry here and one `TrialConfig` field of the same name; the
# recipe reads `cfg.<name>` (see the README, "How to extend tfopt").
DIMENSIONS = {
    "width": ((1.0, 0.75, 0.5), _number(0.0, low_open=True)),
    "learning_rate": ((1e-3, 3e-3), _number(0.0, low_open=True)),
    "epochs": ((4, 8), _number(1, integer=True)),
    "pruning": (PRUNING_PATTERNS, _one_of(PRUNING_PATTERNS)),
    "sparsity": ((0.5, 0.75, 0.9), _number(0.0, 1.0, low_open=True, high_open=True)),
    "schedule": (SCHEDULES, _one_of(SCHEDULES)),
    "structured_ratio": ((0.0, 0.25, 0.5), _number(0.0, 1.0, high_open=True)),
    "quantization": (QUANTIZATION_MODES, _one_of(QUANTIZATION_MODES + LOWBIT_QUANTIZATION_MODES)),
    "distillation": ((True, False), _boolean),
    "temperature": ((4.0, 2.0, 8.0), _number(0.0, low_open=True)),
    "alpha": ((0.1, 0.5), _number(0.0, 1.0)),
}
DEFAULT_SPACE = {name: values for name, (values, _) in DIMENSIONS.items()}
NAMES = tuple(DEFAULT_SPACE)
_CHECKS = {name: check for name, (_, check) in DIMENSIONS.items()}
# Declared by `read_config` in this order (then the conditional ones); any
# other dimension is declared after them, unconditionally.
_UNCONDITIONAL = ("width", "learning_rate", "epochs", "pruning", "structured_ratio", "quantization")
_BUILT_IN = _UNCONDITIONAL + ("sparsity", "schedule", "distillation", "temperature", "alpha")


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """The compression recipe of one trial, read from its hyperparameters.

    Attributes:
        width: Width multiplier passed to the build function (None with a
            base model).
        learning_rate: Adam learning rate of the training phase.
        epochs: Epochs of the training phase (the compression-aware
            fine-tune with a base model).
        pruning: `"none"`, `"unstructured"`, `"block"` or `"2:4"`.
        sparsity: Target sparsity (unstructured and block), else None.
        schedule: `"polynomial"` (ramp from 0) or `"constant"`, for
            unstructured and block, else None.
        structured_ratio: Fraction of channels removed (0 = none).
        quantization: `"none"` (float file), `"ptq"` (int8 post-training)
            or `"qat"` (int8 after quantization-aware training).
        distillation: Whether the teacher distils into the model.
        temperature: Distillation temperature, or None.
        alpha: Weight of the task loss in distillation (1 - alpha weights
            the soft-target term), or None.
    """

    width: float | None = None
    learning_rate: float = 1e-3
    epochs: int = 4
    pruning: str = "none"
    sparsity: float | None = None
    schedule: str | None = None
    structured_ratio: float = 0.0
    quantization: str = "none"
    distillation: bool = False
    temperature: float | None = None
    alpha: float | None = None

    @property
    def pruned(self):
        return self.pruning != "none"


def normalize_space(overrides, applicable):
    """Merges user `overrides` into the default space, validating both.

    Args:
        overrides: None or a dict `{name: value or list of values}`; a single
            value fixes the hyperparameter, a list (first = default) is
            searched.
        applicable: The names that apply in this setup (dict name -> reason
            used in errors for the names that do not).

    Returns:
        A dict `{name: tuple of values}` holding the applicable names.

    Raises:
        ValueError: On an unknown name, a name that does not apply here, an
            empty list, or an illegal value.
        TypeError: If `overrides` is not a dict.
    """
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise TypeError(f"space must be a dict {{name: values}}, got {type(overrides).__name__}.")
    space = {name: DEFAULT_SPACE[name] for name, reason in applicable.items() if reason is None}
    for name, values in overrides.items():
        if name not in DEFAULT_SPACE:
            raise ValueError(
                f"Unknown hyperparameter {name!r} in space; tfopt's compression "
                f"space has: {', '.join(NAMES)}."
            )
        if applicable.get(name) is not None:
            raise ValueError(f"Hyperparameter {name!r} does not apply here: {applicable[name]}.")
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values:
            raise ValueError(f"space[{name!r}] is empty; give at least one value.")
        for value in values:
            problem = _CHECKS[name](name, value)
            if problem:
                raise ValueError(f"space[{name!r}]: value {value!r} {problem}.")
        if len(set(values)) != len(values):
            raise ValueError(f"space[{name!r}] = {values!r} repeats a value.")
        space[name] = values
    return space


def _numeric(name, values):
    """Whether KerasTuner should see `values` as floats: the built-in numbers,
    and another dimension's numbers when one of them is a float."""
    if name in _BUILT_IN:
        return name not in ("pruning", "schedule", "quantization", "distillation")
    return (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and any(isinstance(v, float) for v in values))


def declare(hp, name, values):
    """Declares `name` in `hp` (Fixed for one value, else Choice/Boolean)."""
    if name == "epochs":
        values = tuple(int(v) for v in values)
    elif _numeric(name, values):
        # KerasTuner's Choice wants one type: 1 and 0.5 must both be floats.
        values = tuple(float(v) for v in values)
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    if all(isinstance(v, bool) for v in values):
        # Choice would turn booleans into ints.
        return hp.Boolean(name, default=values[0])
    return hp.Choice(name, list(values), default=values[0])


def read_config(hp, space, epochs_from_tuner=False):
    """Declares the space in `hp` and returns the trial's `TrialConfig`.

    Conditional parameters live in KerasTuner conditional scopes: `sparsity`
    and `schedule` under `pruning` in unstructured/block, `temperature` and
    `alpha` under `distillation` True. A scope is only opened when its parent
    can take one of its values, so a restricted space leaves no dead entries.

    Args:
        hp: A `keras_tuner.HyperParameters`.
        space: The normalized space (`normalize_space`).
        epochs_from_tuner: Hyperband: the epoch budget comes from
            `tuner/epochs`, so `epochs` is not declared.

    Returns:
        A `TrialConfig`.
    """
    values = {}
    for name in _UNCONDITIONAL:
        if name in space and not (name == "epochs" and epochs_from_tuner):
            values[name] = declare(hp, name, space[name])
    if epochs_from_tuner:
        values["epochs"] = int(hp.values.get("tuner/epochs", max(space["epochs"])))
    if set(space["pruning"]) & set(_SPARSITY_PATTERNS):
        with hp.conditional_scope("pruning", list(_SPARSITY_PATTERNS)):
            sparsity = declare(hp, "sparsity", space["sparsity"])
            schedule = declare(hp, "schedule", space["schedule"])
        if values["pruning"] in _SPARSITY_PATTERNS:
            values["sparsity"], values["schedule"] = sparsity, schedule
    if "distillation" in space:
        values["distillation"] = bool(declare(hp, "distillation", space["distillation"]))
        if True in space["distillation"]:
            with hp.conditional_scope("distillation", [True]):
                temperature = declare(hp, "temperature", space["temperature"])
                alpha = declare(hp, "alpha", space["alpha"])
            if values["distillation"]:
                values["temperature"], values["alpha"] = temperature, alpha
    for name in NAMES:
        if name not in _BUILT_IN and name in space:
            values[name] = declare(hp, name, space[name])
    return TrialConfig(**values)
