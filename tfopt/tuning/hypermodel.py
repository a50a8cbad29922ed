"""`CompressionHyperModel`: a KerasTuner HyperModel whose trials compress.

One trial = build (width / base model, structured pruning) -> train with the
pruning wrappers (distilled if the trial says so) -> strip -> QAT fine-tune (if chosen)
-> export to TFLite -> measure the exported file. The stages are
`tfopt.pipeline`'s (the ones `tfopt compress` and the benchmark suites run);
the measurements live in `tfopt.tuning.measure`.
"""

import dataclasses
import inspect
import time
import warnings

import keras
import keras_tuner

from tfopt import export
from tfopt import pipeline
from tfopt import pruning
from tfopt.defaults import BATCH_SIZE
from tfopt.defaults import EXPORT_BATCH  # noqa: F401  (importable from here, as before)
from tfopt.defaults import REPRESENTATIVE_EXAMPLES  # noqa: F401
from tfopt.graph import UnsupportedModelError
from tfopt.pruning import introspection
from tfopt.tuning import measure
from tfopt.tuning import space as space_lib
from tfopt.tuning.objectives import Scalarization

# Polynomial/constant schedules reach their target within this fraction of
# the training steps, leaving the rest to recover accuracy at the final mask.
RAMP_FRACTION = 0.75
# Masks are updated every step: tfopt's mask update is cheap, and a smooth
# ramp costs less accuracy than a few large jumps (tfopt warns about those).
MASK_FREQUENCY = 1


@dataclasses.dataclass
class TrialOutcome:
    """What one run of the pipeline produced.

    Attributes:
        config: The `TrialConfig` that was run.
        metrics: The measured metrics (see `tfopt.tuning.objectives.METRICS`).
        model: The final Keras model (stripped, or the QAT model).
        exported: The `TFLiteExport` that was measured.
    """

    config: space_lib.TrialConfig
    metrics: dict
    model: keras.Model
    exported: export.TFLiteExport


class CompressionHyperModel(keras_tuner.HyperModel):
    """A search space over how to compress a Keras classifier.

    Give either a model-building function (the search then also covers the
    architecture's width, and each trial trains from scratch with the
    compression applied) or a trained base model (each trial fine-tunes a
    copy). The space is declared with KerasTuner `HyperParameters`:

    | name | default values (first = default) | applies |
    |---|---|---|
    | `width` | 1.0, 0.75, 0.5 | with `build_model` |
    | `learning_rate` | 1e-3, 3e-3 | always |
    | `epochs` | 4, 8 | always (Hyperband: its own budget instead) |
    | `pruning` | none, unstructured, block, 2:4 | always |
    | `sparsity` | 0.5, 0.75, 0.9 | pruning in unstructured/block |
    | `schedule` | polynomial, constant | pruning in unstructured/block |
    | `structured_ratio` | 0.0, 0.25, 0.5 | with a base model and structured pruning |
    | `quantization` | none, ptq, qat | always |
    | `distillation` | True, False | with a `teacher` |
    | `temperature` | 4.0, 2.0, 8.0 | distillation True |
    | `alpha` | 0.1, 0.5 | distillation True |

    `space={name: value}` fixes a hyperparameter, `space={name: [values]}`
    searches those values (the first is the default). Quantization `"none"`
    exports a float file, `"ptq"` an int8 file calibrated on 200 training
    examples, `"qat"` an int8 file after `qat_epochs` of quantization-aware
    training at `learning_rate * qat_learning_rate_scale`. Opt-in values
    (not searched unless listed): `"int4"` (int4 weights, blockwise 32 on
    Dense, litert-quantizer) and `"int16x8"` (int16 activations), e.g.
    `space={"quantization": ["ptq", "int4"]}`.

    Args:
        build_model: A function `build_model(width)` returning an uncompiled
            Keras classifier with a defined input shape, whose widths scale
            with `width` (1.0 = the reference model); or a function
            `build_model(hp)` (first parameter named `hp`) that reads
            `hp.get("width")` and may declare its own architecture
            hyperparameters.
        base_model: Instead of `build_model`: a trained Sequential or
            Functional classifier. It is never modified; trials copy it.
        space: Overrides of the search space (see above).
        teacher: A trained Keras model to distil from (enables the
            `distillation`, `temperature`, `alpha` hyperparameters; needs
            `tfopt.distillation`).
        structured: Search `structured_ratio` (channel pruning, needs a base
            model and `tfopt.pruning.prune_channels`). None: on when both
            are there.
        block_size: Block shape of the `"block"` pattern.
        qat_epochs: Epochs of quantization-aware training when
            `quantization="qat"`.
        qat_learning_rate_scale: QAT learning rate as a fraction of the
            trial's learning rate at the start of QAT, annealed to 0 over
            it (0.1: QAT fine-tunes gently; see
            `tfopt.defaults.QAT_LEARNING_RATE` and `QAT_DECAY`).
        from_logits: Whether the model outputs logits (else softmax).
        baseline_width: Width of the dense baseline (build function only).
        latency: Keyword arguments of `tfopt.bench.measure_latency`
            (`num_threads`, `warmup`, `runs`, `min_seconds`).
        seed: Seed set before each trial builds and trains.
        name: The HyperModel's name.

    Raises:
        ValueError: If not exactly one of `build_model`/`base_model` is
            given, the space names an unknown or inapplicable
            hyperparameter or an illegal value, or `teacher`/`structured`
            asks for an API this tfopt does not have.
        TypeError: If `build_model` is not callable or a model is not a
            `keras.Model`.

    Example:

    ```python
    def build(width):
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(int(16 * width), 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10)])

    hypermodel = tfopt.tuning.CompressionHyperModel(
        build, space={"pruning": ["none", "unstructured"], "epochs": 4})
    tuner = tfopt.tuning.RandomSearch(hypermodel, max_trials=10,
                                      directory="search", project_name="digits")
    tuner.search(x, y, validation_data=(x_val, y_val))
    ```
    """

    def __init__(
        self,
        build_model=None,
        base_model=None,
        space=None,
        teacher=None,
        structured=None,
        block_size=(1, 4),
        qat_epochs=1,
        qat_learning_rate_scale=0.1,
        from_logits=True,
        baseline_width=1.0,
        latency=None,
        seed=0,
        name=None,
    ):
        super().__init__(name=name)
        if (build_model is None) == (base_model is None):
            raise ValueError(
                "CompressionHyperModel needs exactly one of build_model (a function "
                "building the model from a width) and base_model (a trained model)."
            )
        if build_model is not None and not callable(build_model):
            raise TypeError(f"build_model must be callable, got {type(build_model).__name__}.")
        if base_model is not None:
            _check_model(base_model, "base_model")
        if teacher is not None:
            _check_model(teacher, "teacher")
        if structured is None:
            structured = base_model is not None
        elif structured and base_model is None:
            raise ValueError(
                "structured=True removes channels by weight magnitude, which needs "
                "trained weights: give base_model= (with build_model=, search "
                "`width` instead)."
            )
        self.build_model = build_model
        self.base_model = base_model
        self.teacher = teacher
        self.structured = bool(structured)
        if block_size is None:
            raise ValueError("block_size=None: give the (rows, cols) block of the "
                             "'block' pruning pattern, e.g. (1, 4).")
        self.block_size = introspection.validate_pattern(block_size=block_size)[0]
        if isinstance(qat_epochs, bool) or not isinstance(qat_epochs, int) or qat_epochs < 1:
            raise ValueError(f"qat_epochs={qat_epochs!r} must be an int >= 1.")
        if not 0 < qat_learning_rate_scale <= 1:
            raise ValueError(f"qat_learning_rate_scale={qat_learning_rate_scale!r} must be in (0, 1].")
        if not baseline_width > 0:
            raise ValueError(f"baseline_width={baseline_width!r} must be > 0.")
        self.qat_epochs = qat_epochs
        self.qat_learning_rate_scale = float(qat_learning_rate_scale)
        self.from_logits = bool(from_logits)
        self.baseline_width = float(baseline_width)
        self.latency = measure.latency_settings(latency)
        self.seed = int(seed)
        self._takes_hp = build_model is not None and _takes_hp(build_model)
        self.space = space_lib.normalize_space(space, self._applicable())
        self._epochs_from_tuner = False

    # -- what a tuner asks of the hypermodel --------------------------------

    @property
    def build_takes_hp(self):
        """True when `build_model(hp)` declares its own hyperparameters
        (then the widths, and so the smallest model, are not known ahead)."""
        return self._takes_hp

    @property
    def epochs_from_tuner(self):
        """True when the tuner gives each trial its epochs (Hyperband's
        `tuner/epochs`) and the `epochs` hyperparameter is not declared."""
        return self._epochs_from_tuner

    def use_tuner_epochs(self):
        """Lets the tuner set each trial's epochs (called by tfopt's `Hyperband`).

        Example:

        ```python
        hypermodel.use_tuner_epochs()
        hypermodel.epochs_from_tuner  # True
        ```
        """
        self._epochs_from_tuner = True

    # -- the search space ----------------------------------------------------

    def _applicable(self):
        teacher = None if self.teacher is not None else "distillation needs teacher="
        return {
            **dict.fromkeys(space_lib.NAMES),  # a new dimension applies everywhere
            "width": None if self.build_model is not None else
            "a base model has a fixed width (search width with build_model=)",
            "learning_rate": None,
            "epochs": None,
            "pruning": None,
            "sparsity": None,
            "schedule": None,
            "structured_ratio": None if self.structured else
            "structured pruning needs base_model= and tfopt.pruning.prune_channels",
            "quantization": None,
            "distillation": teacher,
            "temperature": teacher,
            "alpha": teacher,
        }

    def config(self, hp):
        """Declares the space in `hp` and returns this trial's `TrialConfig`.

        Args:
            hp: A `keras_tuner.HyperParameters`.

        Returns:
            A `tfopt.tuning.TrialConfig`.

        Example:

        >>> hypermodel.config(keras_tuner.HyperParameters()).pruning  # doctest: +SKIP
        'none'
        """
        return space_lib.read_config(hp, self.space, self.epochs_from_tuner)

    def declare_hyperparameters(self, hp):
        self.config(hp)

    # -- building ------------------------------------------------------------

    def build(self, hp):
        """The trial's architecture: width-scaled build or base-model copy,
        channel-pruned when `structured_ratio` > 0. Not yet compiled or
        wrapped: `fit` applies the rest of the recipe.

        Args:
            hp: A `keras_tuner.HyperParameters`.

        Returns:
            A `keras.Model`.

        Raises:
            TypeError: If the build function does not return a Keras model.
            ValueError: If the model has no defined input shape.
        """
        cfg = self.config(hp)
        return self.architecture(cfg, hp)

    def architecture(self, cfg, hp=None):
        """The model a `TrialConfig` describes, before compression in `fit`.

        Args:
            cfg: A `TrialConfig` (e.g. `config(hp)` or `baseline_config()`).
            hp: The trial's `HyperParameters` for a `build_model(hp)`
                function (None: every user hyperparameter at its default).

        Returns:
            A `keras.Model`: the width-scaled build or a copy of the base
            model, channel-pruned when `cfg.structured_ratio` > 0.

        Raises:
            TypeError: If the build function does not return a Keras model.
            ValueError: If the model has no defined input shape.

        Example:

        ```python
        smallest = hypermodel.architecture(hypermodel.baseline_config())
        ```
        """
        if self.build_model is not None:
            if self._takes_hp:
                if hp is None:  # the baseline: every user hyperparameter at its default
                    hp = keras_tuner.HyperParameters()
                    hp.Fixed("width", cfg.width)
                model = self.build_model(hp)
            else:
                model = self.build_model(cfg.width)
            _check_model(model, "build_model(...)")
        else:
            model = keras.models.clone_model(self.base_model)
            model.set_weights(self.base_model.get_weights())
        if cfg.structured_ratio > 0:
            model = _apply_structured(model, cfg.structured_ratio)
        return model

    def apply_pruning(self, model, cfg, total_steps):
        """Wraps `model` for the trial's pruning pattern and schedule.

        Trials themselves train through `tfopt.pipeline.prune` with
        `pruning_plan`'s schedule and options: to change how a search prunes,
        override `pruning_plan` (this method uses it too). This method gives
        a trial's wrapped model outside a search.

        Args:
            model: The architecture (from `build`).
            cfg: The trial's `TrialConfig`.
            total_steps: Training steps of the phase the schedule spans.

        Returns:
            `model` itself when `cfg.pruning == "none"`, else a new model
            wrapped by `tfopt.pruning.prune_low_magnitude`.

        Raises:
            ValueError: If no layer of the model fits the pattern (block
                sizes must tile a kernel, 2:4 needs input channels divisible
                by 4).
        """
        if not cfg.pruned:
            return model
        schedule, kwargs = self.pruning_plan(model, cfg, total_steps)
        return pruning.prune_low_magnitude(model, pruning_schedule=schedule, **kwargs)

    def pruning_plan(self, model, cfg, total_steps):
        """The schedule and `prune_low_magnitude` options of a pruned trial
        (the hook a subclass overrides to change how trials prune).

        Args:
            model: The architecture (from `build`).
            cfg: The trial's `TrialConfig` (`cfg.pruned` True).
            total_steps: Training steps of the phase the schedule spans.

        Returns:
            `(schedule, options)`: options holds `layers` (the layers that
            fit the pattern) and the pattern's `block_size` or
            `sparsity_m_by_n`.

        Raises:
            ValueError: If no layer of the model fits the pattern.
        """
        end = max(1, int(RAMP_FRACTION * total_steps))
        if cfg.schedule == "polynomial":
            # A ramp of fewer than MIN_RAMP_UPDATES mask updates jumps in big
            # steps (and PolynomialDecay warns): stretch it over the phase.
            end = max(end, min(max(1, total_steps),
                               pruning.schedules.MIN_RAMP_UPDATES - 1))
        frequency = MASK_FREQUENCY
        kwargs = {}
        if cfg.pruning == "2:4":
            # N:M masks are a pattern, not a level: constant from the start.
            schedule = pruning.ConstantSparsity(0.5, 0, end_step=end, frequency=frequency)
            kwargs["sparsity_m_by_n"] = (2, 4)
        elif cfg.schedule == "polynomial":
            with warnings.catch_warnings():
                # A phase too short for a smooth ramp is the search's own
                # setting (its measured sparsity and accuracy are reported),
                # not a schedule the user wrote: no advice to print.
                warnings.filterwarnings("ignore", message="PolynomialDecay ramps")
                schedule = pruning.PolynomialDecay(0.0, cfg.sparsity, 0, end, frequency=frequency)
        else:
            schedule = pruning.ConstantSparsity(cfg.sparsity, 0, end_step=end, frequency=frequency)
        if cfg.pruning == "block":
            kwargs["block_size"] = self.block_size
        names = _layers_fitting(model, cfg.pruning, self.block_size)
        if not names:
            raise ValueError(
                f"No layer of {model.name!r} fits pruning pattern {cfg.pruning!r}"
                + (f" with block_size={self.block_size}" if cfg.pruning == "block" else "")
                + "; restrict space['pruning'] for this model."
            )
        kwargs["layers"] = names
        return schedule, kwargs

    def size_lower_bound(self, model, cfg):
        """Bytes the exported file needs at least, known before training.

        Every prunable kernel is stored in the file, at 4 bytes per element
        in float and 1 in int8 (biases, normalization parameters and the
        flatbuffer's structure come on top; pruning zeros do not shrink a
        dense-format file). A configuration whose bound is over `max_bytes`
        cannot be feasible and is rejected without training.

        Args:
            model: The trial's architecture (from `build`).
            cfg: Its `TrialConfig`.

        Returns:
            The lower bound, an int.
        """
        per_element = {"none": 4, "int4": 0.5}.get(cfg.quantization, 1)
        return int(pruning.count_prunable(model) * per_element)

    # -- training, export, measurement -----------------------------------

    def fit(self, hp, model, x, y, validation_data=None, **kwargs):
        """Compresses, exports and measures `model` (KerasTuner's contract).

        Runs the whole recipe and returns the metrics dict, with `score`
        from the default `Scalarization`. tfopt's tuners call `run` instead
        and add constraints and baseline-relative metrics.

        Args:
            hp: The trial's `HyperParameters`.
            model: The model from `build(hp)`.
            x, y: Training inputs and integer labels (numpy arrays).
            validation_data: `(x_val, y_val)`, on which accuracy is measured.
            **kwargs: `batch_size`, `callbacks`, `verbose`, `epochs`,
                `export_path` (see `run`).

        Returns:
            A dict of float metrics.
        """
        outcome = self.run(hp, model, x, y, validation_data=validation_data, **kwargs)
        metrics = dict(outcome.metrics)
        metrics["score"] = Scalarization()(metrics)
        return metrics

    def run(self, hp, model, x, y, validation_data=None, batch_size=BATCH_SIZE, epochs=None,
            callbacks=None, verbose=0, export_path=None, **unused):
        """Runs the trial's recipe on `model` and measures the exported file.

        Args:
            hp: The trial's `HyperParameters`.
            model: The architecture from `build(hp)`.
            x, y: Training data (numpy arrays, integer labels).
            validation_data: `(x_val, y_val)`: accuracies are measured there.
            batch_size: Training batch size.
            epochs: Overrides the `epochs` hyperparameter (Hyperband's budget).
            callbacks: Extra Keras callbacks for the training phases.
            verbose: Keras `fit` verbosity.
            export_path: Where to write the `.tflite` file (None: memory).

        Returns:
            A `TrialOutcome`.

        Raises:
            ValueError: If `validation_data` is missing, or from pruning,
                training or conversion (e.g. an op TFLite lacks).
        """
        cfg = self.config(hp)
        if epochs is not None:
            cfg = dataclasses.replace(cfg, epochs=int(epochs))
        return self.run_config(cfg, model, x, y, validation_data, batch_size, callbacks,
                               verbose, export_path)

    def _needs_training(self, cfg):
        # A base model is trained already: it is fine-tuned only when the
        # recipe changes its weights (pruning, channels removed, distillation).
        return self.build_model is not None or cfg.pruned or cfg.structured_ratio > 0 or cfg.distillation

    def run_config(self, cfg, model, x, y, validation_data, batch_size=BATCH_SIZE,
                   callbacks=None, verbose=0, export_path=None):
        """Runs the recipe of a `TrialConfig` on `model` and measures the file.

        `run` reads the config from `hp`; a tuner that already holds the
        config (with its epoch budget) calls this.

        Args:
            cfg: The trial's `TrialConfig`.
            model: Its architecture (from `build` or `architecture`).
            x, y: Training data (numpy arrays, integer labels).
            validation_data: `(x_val, y_val)`.
            batch_size, callbacks, verbose, export_path: As in `run`.

        Returns:
            A `TrialOutcome`.

        Raises:
            ValueError: As `run`.

        Example:

        ```python
        outcome = hypermodel.run_config(hypermodel.config(hp), model, x, y, (x_val, y_val))
        ```
        """
        x_val, y_val = _validation(validation_data)
        callbacks = list(callbacks or [])
        training = dict(batch_size=batch_size, callbacks=callbacks, verbose=verbose,
                        from_logits=self.from_logits,
                        teacher=self.teacher if cfg.distillation else None,
                        temperature=cfg.temperature, alpha=cfg.alpha)
        start = time.perf_counter()
        params = int(model.count_params())
        epochs_trained = 0
        if self._needs_training(cfg):
            if cfg.pruned:
                steps = pipeline.steps_per_epoch(x, batch_size) * cfg.epochs
                schedule, options = self.pruning_plan(model, cfg, steps)
                model, _ = pipeline.prune(model, x, y, schedule, cfg.epochs, **options,
                                          learning_rate=cfg.learning_rate, **training)
            else:
                model = pipeline.train(model, x, y, cfg.epochs, cfg.learning_rate, **training)
            epochs_trained += cfg.epochs
        # Sparsity before QAT: QAT (preserve_sparsity) keeps these zeros.
        sparsity = pipeline.sparsity(model)
        if cfg.quantization == "qat":
            model = pipeline.quantize_aware(
                model, x, y, self.qat_epochs,
                learning_rate=cfg.learning_rate * self.qat_learning_rate_scale,
                preserve_sparsity=cfg.pruned, **training)
            epochs_trained += self.qat_epochs
        train_seconds = time.perf_counter() - start
        if cfg.quantization in space_lib.LOWBIT_QUANTIZATION_MODES:
            exported = pipeline.export(
                model, export_path, representative_data=x,
                lowbit="int4_blockwise" if cfg.quantization == "int4" else "int16x8")
        else:
            exported = pipeline.export(
                model, export_path, quantization=None if cfg.quantization == "none" else "int8",
                representative_data=x if cfg.quantization == "ptq" else None)
        metrics = measure.measure(model, exported, x_val, y_val, self.latency)
        metrics.update(
            params=float(params),
            sparsity=float(sparsity),
            train_seconds=float(train_seconds),
            epochs_trained=float(epochs_trained),
        )
        return TrialOutcome(cfg, metrics, model, exported)

    # -- the dense baseline ----------------------------------------------------

    def baseline_config(self, epochs=None):
        """The dense reference: width `baseline_width`, default learning
        rate, the largest epoch count of the space, no compression, float."""
        return space_lib.TrialConfig(
            width=self.baseline_width if self.build_model is not None else None,
            learning_rate=self.space["learning_rate"][0],
            epochs=int(epochs or max(self.space["epochs"])),
        )

    def measure_baseline(self, x, y, validation_data, batch_size=BATCH_SIZE, epochs=None,
                         export_path=None):
        """Trains (build function) or takes (base model) the dense model,
        exports it float and measures it like a trial.

        Args:
            x, y: Training data.
            validation_data: `(x_val, y_val)`.
            batch_size: Training batch size.
            epochs: Training epochs (default: the largest in the space).
            export_path: Where to write the float `.tflite` (None: memory).

        Returns:
            The baseline's metrics dict (`tflite_accuracy`, `size_bytes`, ...).
        """
        keras.utils.set_random_seed(self.seed)
        cfg = self.baseline_config(epochs)
        model = self.architecture(cfg) if self.build_model is not None else self.base_model
        return self.run_config(cfg, model, x, y, validation_data, batch_size,
                                export_path=export_path).metrics


# -- the distillation and structured-pruning branches ---------------------------


def _apply_structured(model, ratio, data=None):
    """A narrower copy of `model` with `ratio` of its channels removed."""
    return pruning.prune_channels(model, ratio, criterion="l1", data=data)


# -- small checks ---------------------------------------------------------------


def _takes_hp(function):
    try:
        parameters = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False
    return bool(parameters) and parameters[0] == "hp"


def _check_model(model, what):
    # Any built keras.Model (a subclassed one too: unstructured pruning and
    # PTQ take it); the techniques that need a graph check it themselves.
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(f"{what} must be a keras.Model, got {type(model).__name__}.")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not model.built or not inputs:
        raise ValueError(
            f"{what}: model {model.name!r} has no defined input shape; start it with keras.Input."
        )


def _validation(validation_data):
    if validation_data is None:
        raise ValueError(
            "tfopt measures every trial on held-out data: pass "
            "validation_data=(x_val, y_val) to search()."
        )
    try:
        x_val, y_val = validation_data
    except (TypeError, ValueError):
        raise ValueError("validation_data must be a pair (x_val, y_val).") from None
    return x_val, y_val


def _layers_fitting(model, pattern, block_size):
    """Names of the prunable layers whose kernels fit `pattern`."""
    fits = pruning.pattern_support(
        model, block_size=block_size if pattern == "block" else None,
        sparsity_m_by_n=(2, 4) if pattern == "2:4" else None)
    return [fit.name for fit in fits if fit.fits]


# Kept for callers written against the earlier private name.
CompressionHyperModel._run_config = CompressionHyperModel.run_config
