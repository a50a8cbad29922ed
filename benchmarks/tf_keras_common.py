"""What the tf_keras baseline scripts share: data, model, measurements.

Imported only by the scripts that run tfmot on legacy Keras 2 in a
subprocess (never by tfopt). It sets TF_USE_LEGACY_KERAS itself, so it must
be imported before TensorFlow.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfmot needs Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402


def load_data(path):
    """Return (x_train, y_train, x_test, y_test, weights) from the npz."""
    with np.load(path) as npz:
        x_train = npz["x_train"].astype("float32")
        y_train = npz["y_train"].astype("int32")
        x_test = npz["x_test"].astype("float32")
        y_test = npz["y_test"].astype("int32")
        names = [k for k in npz.files if re.fullmatch(r"w\d+", k)]
        weights = [npz[k] for k in sorted(names, key=lambda k: int(k[1:]))]
    if x_train.ndim != 4 or x_train.shape[-1] != 1:
        raise ValueError(f"x_train must be NHWC with 1 channel, got {x_train.shape}")
    return x_train, y_train, x_test, y_test, weights


def build_model(height, width):
    """The benchmark architecture; identical to tfopt.models.digits_cnn."""
    return keras.Sequential([
        keras.Input(shape=(height, width, 1)),
        keras.layers.Conv2D(12, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),  # logits
    ])


def compile_model(model, lr):
    # A fresh optimizer per model so no Adam state leaks between runs.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def copy_model(model):
    """Clone a model (fresh variables) and load its trained weights."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def keras_accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def size_report(tflite_bytes):
    return {"tflite_bytes": len(tflite_bytes),
            "tflite_gzip_bytes": len(gzip.compress(tflite_bytes, 9))}


class StepTimer:
    """One model driven by train_on_batch on a fixed batch, timing each step.

    `callback` (e.g. tfmot's UpdatePruningStep for a pruned model) is driven
    by hand as fit() would, and its per-batch hook is timed too: it is part
    of the tool's per-step cost.
    """

    def __init__(self, model, x, y, callback=None):
        self.model, self.x, self.y = model, x, y
        self.callback = callback
        self.step = 0
        self.times = []
        if callback is not None:
            callback.set_model(model)
            callback.on_train_begin()

    def run(self, n_steps, record=True):
        for _ in range(n_steps):
            start = time.perf_counter()
            if self.callback is not None:
                self.callback.on_train_batch_begin(self.step)
            self.model.train_on_batch(self.x, self.y)  # returns numpy: synced
            elapsed = time.perf_counter() - start
            self.step += 1
            if record:
                self.times.append(elapsed)

    def median_ms(self):
        return 1000.0 * float(np.median(self.times))


def add_training_arguments(parser):
    """The options both baseline scripts take: learning rate, seed, timing."""
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-timing", action="store_true",
                        help="skip the train-step timing")
    parser.add_argument("--timing-rounds", type=int, default=5)
    parser.add_argument("--timing-steps", type=int, default=20)
    parser.add_argument("--timing-warmup", type=int, default=5,
                        help="untimed steps per model before timing")
