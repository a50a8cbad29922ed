"""One worker of tests/test_multiworker.py (also the single-process reference).

Run as a script under `TF_CONFIG` it joins a `MultiWorkerMirroredStrategy`,
trains three tiny models with `model.fit` (pruning, QAT, distillation) on a
fixed global batch and writes their state to the `.npz` named on the command
line. With `--reference` it trains the same models in one process (and QAT
under a two-device MirroredStrategy).
"""

import os
import sys
import warnings

GLOBAL_BATCH = 16
STEPS = 4  # batches of GLOBAL_BATCH per epoch
EPOCHS = 2
SPARSITY = 0.75
PARTS = ("prune", "qat", "distill")


def _data(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, GLOBAL_BATCH * STEPS)
    return x, y


def _dataset(x, y):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    # Each global batch is split between the workers (the files of a real
    # input pipeline would be sharded with AutoShardPolicy.FILE instead).
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def _cnn(keras, classes=3, filters=4):
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(filters, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(classes),
    ])


def train_all(strategy, export_path=None, parts=PARTS):
    """Trains the pruning, QAT and distillation models under `strategy`.

    Args:
        strategy: A `tf.distribute` strategy.
        export_path: Where the chief writes the stripped pruned model's
            `.tflite` (None: no export).
        parts: Which of `PARTS` to train.

    Returns:
        A dict of numpy arrays (the state the test compares).
    """
    import numpy as np

    from tfopt import distribute

    out = {"replicas": np.array(strategy.num_replicas_in_sync),
           "chief": np.array(distribute.is_chief(strategy))}
    pruned = None
    if "prune" in parts:
        pruned = _train_pruning(strategy, out)
    if "qat" in parts:
        _train_qat(strategy, out)
    if "distill" in parts:
        _train_distiller(strategy, out)
    if pruned is not None and export_path and distribute.is_chief(strategy):
        # Only the chief writes files; the stripped model exports as usual.
        import tfopt

        tfopt.export.to_tflite(tfopt.pruning.strip_pruning(pruned), export_path)
    return out


def _loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _train_pruning(strategy, out):
    # Masks reach 75% by step STEPS and keep updating every batch.
    import keras
    import numpy as np

    from tfopt import distribute, pruning
    from tfopt.pruning.api import pruning_wrappers

    x, y = _data(0)
    with strategy.scope():
        keras.utils.set_random_seed(1)
        with warnings.catch_warnings():  # "a short ramp": short on purpose
            warnings.simplefilter("ignore")
            schedule = pruning.PolynomialDecay(0.0, SPARSITY, 0, STEPS, frequency=1)
        pruned = pruning.prune_low_magnitude(_cnn(keras), pruning_schedule=schedule)
        pruned.compile(optimizer=keras.optimizers.SGD(0.1), loss=_loss())
    distribute.enable_multi_worker_fit(pruned)
    history = pruned.fit(_dataset(x, y), epochs=EPOCHS, verbose=0, shuffle=False,
                         callbacks=[pruning.UpdatePruningStep()])
    out["prune_loss"] = np.array(history.history["loss"])
    for i, wrapper in enumerate(pruning_wrappers(pruned)):
        out[f"prune_step_{i}"] = wrapper.pruning_step.numpy()
        for j, (weight, mask) in enumerate(zip(wrapper.prunable_weights, wrapper.masks)):
            out[f"prune_mask_{i}_{j}"] = mask.numpy()
            out[f"prune_kernel_{i}_{j}"] = weight.numpy()
    return pruned


def _train_qat(strategy, out):
    # Activation ranges are moving averages of the global batch's min/max.
    import keras
    import numpy as np

    from tfopt import distribute, quantization
    from tfopt.quantization.layers import QuantizeActivation

    x, y = _data(0)
    with strategy.scope():
        keras.utils.set_random_seed(2)
        qat = quantization.quantize_model(_cnn(keras))
        qat.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss())
    distribute.enable_multi_worker_fit(qat)
    history = qat.fit(_dataset(x, y), epochs=EPOCHS, verbose=0, shuffle=False)
    out["qat_loss"] = np.array(history.history["loss"])
    ranges = [layer for layer in qat.layers if isinstance(layer, QuantizeActivation)]
    out["qat_ranges"] = np.array([[layer.range_min.numpy(), layer.range_max.numpy()]
                                  for layer in ranges])
    for i, weight in enumerate(qat.trainable_weights):
        out[f"qat_weight_{i}"] = weight.numpy()


def _train_distiller(strategy, out):
    # A wider teacher, a small student.
    import keras
    import numpy as np

    from tfopt import distillation, distribute

    x, y = _data(0)
    with strategy.scope():
        keras.utils.set_random_seed(3)
        teacher = _cnn(keras, filters=8)
        student = _cnn(keras, filters=2)
        distiller = distillation.Distiller(student, teacher, temperature=2.0, alpha=0.5)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    out["student_before"] = student.get_weights()[0].copy()
    distribute.enable_multi_worker_fit(distiller)
    history = distiller.fit(_dataset(x, y), epochs=EPOCHS, verbose=0, shuffle=False)
    out["distill_loss"] = np.array(history.history["loss"])
    for i, weight in enumerate(student.get_weights()):
        out[f"student_{i}"] = weight


def main():
    """`worker.py OUT.npz [EXPORT.tflite]` under TF_CONFIG, or `--reference OUT.npz`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    if sys.argv[1] == "--reference":
        # One process: the default strategy, and QAT under a two-device
        # MirroredStrategy (two logical CPUs).
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        out = train_all(tf.distribute.get_strategy())
        mirrored = train_all(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), parts=("qat",))
        out.update({f"mirrored_{key}": value for key, value in mirrored.items()})
        np.savez(sys.argv[2], **out)
        return
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    out = train_all(strategy, sys.argv[2] if len(sys.argv) > 2 else None)
    out["refuses_steps_per_execution"] = np.array(_refuses_steps_per_execution(strategy))
    np.savez(sys.argv[1], **out)


def _refuses_steps_per_execution(strategy):
    import keras

    from tfopt import distribute

    with strategy.scope():
        model = _cnn(keras)
        model.compile(optimizer="sgd", loss=_loss(), steps_per_execution=2)
    try:
        distribute.enable_multi_worker_fit(model)
    except ValueError as error:
        return "steps_per_execution=1" in str(error)
    return False


if __name__ == "__main__":
    main()
