"""Pruning state survives saving, checkpoint/resume and distribution."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfopt import pruning

from .helpers import cnn
from .helpers import compile_model
from .helpers import digits
from .helpers import mask_values


def _schedule():
    return pruning.PolynomialDecay(0.0, 0.8, 0, 16, frequency=1)


def test_saved_mid_training_model_continues_with_same_masks_and_step(tmp_path):
    x, y = digits(128)
    keras.utils.set_random_seed(7)
    reference = compile_model(pruning.prune_low_magnitude(cnn(), pruning_schedule=_schedule()))
    reference.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
    path = str(tmp_path / "mid.keras")
    reference.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: tfopt registers them
    assert [int(w.pruning_step.numpy()) for w in pruning.api.pruning_wrappers(loaded)] == [8, 8]
    for a, b in zip(mask_values(loaded), mask_values(reference)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-6)
    # Both continue identically (same optimizer state was saved too).
    for model in (reference, loaded):
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
    for a, b in zip(mask_values(loaded), mask_values(reference)):
        np.testing.assert_array_equal(a, b)
    assert pruning.sparsity_report(loaded)["total"]["sparsity"] == pytest.approx(0.8, abs=0.01)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resume_gives_same_masks(tmp_path):
    x, y = digits(128)

    def run(callbacks):
        keras.utils.set_random_seed(3)
        model = compile_model(pruning.prune_low_magnitude(cnn(), pruning_schedule=_schedule()))
        model.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0,
                  callbacks=[pruning.UpdatePruningStep(), *callbacks])
        return model

    uninterrupted = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([backup, _Interrupt()])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    for a, b in zip(mask_values(resumed), mask_values(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    steps = [int(w.pruning_step.numpy()) for w in pruning.api.pruning_wrappers(resumed)]
    assert steps == [20, 20]


def test_pruning_summaries_write_tensorboard_events(tmp_path):
    x, y = digits(64)
    model = compile_model(pruning.prune_low_magnitude(cnn(), pruning_schedule=_schedule()))
    log_dir = str(tmp_path / "logs")
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[pruning.UpdatePruningStep(), pruning.PruningSummaries(log_dir)])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir, size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert "conv2d/kernel/sparsity" in tags and "dense/kernel/threshold" in tags
    import tensorflow as tf

    value = float(tf.make_ndarray(events.Tensors("dense/kernel/sparsity")[-1].tensor_proto))
    assert value == pytest.approx(pruning.sparsity_report(model)["layers"][1]["sparsity"])
    with pytest.raises(ValueError, match="log_dir"):
        pruning.PruningSummaries("")


_MIRRORED = textwrap.dedent(
    """
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tfopt import pruning
    from tfopt.data import load_digits
    (x, y), _ = load_digits(8)
    x, y = x[:256], y[:256]
    def train(strategy, warm):
        # warm: every weight takes the XLA-compiled warm-started selection.
        pruning.wrapper.WARM_START_MIN_SIZE = 1 if warm else 1 << 16
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([
                keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                keras.layers.Flatten(), keras.layers.Dense(10)])
            model = pruning.prune_low_magnitude(
                model, pruning_schedule=pruning.PolynomialDecay(0.0, 0.8, 0, 12, frequency=1))
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
        report = pruning.sparsity_report(model)
        return [r["zeros"] for r in report["layers"]], strategy.num_replicas_in_sync
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(json.dumps({"mirrored": train(mirrored, False),
                      "single": train(tf.distribute.get_strategy(), False),
                      "mirrored_warm": train(mirrored, True)}))
    """
)


def test_mirrored_strategy_reaches_same_sparsity_as_single_device():
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED], capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    (mirrored_zeros, replicas), (single_zeros, _) = out["mirrored"], out["single"]
    assert replicas == 2
    assert mirrored_zeros == single_zeros == [72 - round(72 * 0.2), 2880 - round(2880 * 0.2)]
    assert out["mirrored_warm"] == out["mirrored"]


@pytest.mark.parametrize(
    "options", [{}, {"scope": "global"}], ids=["layer", "global"]
)  # blocks: test_masks.py::test_compiled_block_update_matches_reference_...
def test_warm_started_selection_trains_exactly_like_radix_select(options, monkeypatch, tmp_path):
    # Every weight takes the large-weight path (normally only weights >= 64k
    # elements do: for scope="layer" the grow path with the XLA-compiled
    # warm-started selection as its fallback, for "global" the latter): the
    # training run, saving mid-way and continuing from the file give the
    # same masks and weights as the radix select.
    from tfopt.pruning import wrapper

    x, y = digits(128)

    def train(min_size, path=None):
        monkeypatch.setattr(wrapper, "WARM_START_MIN_SIZE", min_size)
        keras.utils.set_random_seed(5)
        model = compile_model(pruning.prune_low_magnitude(cnn(), pruning_schedule=_schedule(), **options))
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
        if path:
            model.save(path)
            model = keras.models.load_model(path)
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])
        return model

    radix = train(1 << 62)
    warm = train(1, str(tmp_path / "warm.keras"))
    for a, b in zip(mask_values(warm), mask_values(radix)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(warm.get_weights(), radix.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert pruning.sparsity_report(warm)["total"]["sparsity"] == pytest.approx(0.8, abs=0.01)
