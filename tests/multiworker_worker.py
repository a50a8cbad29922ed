"""One worker of tests/test_multiworker.py (also the single-process reference).

Run as a script under `TF_CONFIG` it joins a `MultiWorkerMirroredStrategy`,
trains three tiny models with `model.fit` (pruning, QAT, distillation) on a
fixed global batch and writes their state to the `.npz` named on the command
line. `train_all(strategy)` is imported by the test to train the same models
in one process.
"""

import os
import sys
import warnings

GLOBAL_BATCH = 16
STEPS = 4  # batches of GLOBAL_BATCH per epoch
EPOCHS = 2
SPARSITY = 0.75


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


def train_all(strategy, export_path=None):
    """Trains the pruning, QAT and distillation models under `strategy`.

    Args:
        strategy: A `tf.distribute` strategy.
        export_path: Where the chief writes the stripped pruned model's
            `.tflite` (None: no export).

    Returns:
        A dict of numpy arrays (the state the test compares).
    """
    import keras
    import numpy as np

    import tfopt
    from tfopt import distillation, distribute, pruning, quantization
    from tfopt.pruning.api import pruning_wrappers
    from tfopt.quantization.layers import QuantizeActivation

    x, y = _data(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    out = {"replicas": np.array(strategy.num_replicas_in_sync),
           "chief": np.array(distribute.is_chief(strategy))}

    # Pruning: masks reach 75% by step STEPS and keep updating every batch.
    with strategy.scope():
        keras.utils.set_random_seed(1)
        with warnings.catch_warnings():  # "a short ramp": short on purpose
            warnings.simplefilter("ignore")
            schedule = pruning.PolynomialDecay(0.0, SPARSITY, 0, STEPS, frequency=1)
        pruned = pruning.prune_low_magnitude(_cnn(keras), pruning_schedule=schedule)
        pruned.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    distribute.enable_multi_worker_fit(pruned)
    history = pruned.fit(_dataset(x, y), epochs=EPOCHS, verbose=0, shuffle=False,
                         callbacks=[pruning.UpdatePruningStep()])
    out["prune_loss"] = np.array(history.history["loss"])
    for i, wrapper in enumerate(pruning_wrappers(pruned)):
        out[f"prune_step_{i}"] = wrapper.pruning_step.numpy()
        for j, (weight, mask) in enumerate(zip(wrapper.prunable_weights, wrapper.masks)):
            out[f"prune_mask_{i}_{j}"] = mask.numpy()
            out[f"prune_kernel_{i}_{j}"] = weight.numpy()

    # QAT: activation ranges are moving averages of the global batch's min/max.
    with strategy.scope():
        keras.utils.set_random_seed(2)
        qat = quantization.quantize_model(_cnn(keras))
        qat.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    distribute.enable_multi_worker_fit(qat)
    history = qat.fit(_dataset(x, y), epochs=EPOCHS, verbose=0, shuffle=False)
    out["qat_loss"] = np.array(history.history["loss"])
    ranges = [layer for layer in qat.layers
              if isinstance(layer, QuantizeActivation)]
    out["qat_ranges"] = np.array([[layer.range_min.numpy(), layer.range_max.numpy()]
                                  for layer in ranges])
    for i, weight in enumerate(qat.trainable_weights):
        out[f"qat_weight_{i}"] = weight.numpy()

    # Distillation: a wider teacher, a small student.
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

    if distribute.is_chief(strategy) and export_path:
        # Only the chief writes files; the stripped model exports as usual.
        final = pruning.strip_pruning(pruned)
        tfopt.export.to_tflite(final, export_path)
    return out


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    np.savez(sys.argv[1], **train_all(strategy, sys.argv[2] if len(sys.argv) > 2 else None))


if __name__ == "__main__":
    main()
