"""Why a QAT fine-tuning loses accuracy: per-epoch accuracy under several learning-rate plans.

Starts from a trained float zoo model (from `benchmarks/qat_agreement.py --cache DIR`,
or trained here at the zoo budget) and fine-tunes copies of it:

- `float`: the float model itself, 2 more epochs at a constant 1e-4 (the control:
  does more training alone move the accuracy?);
- `ranges-only`: QAT with a zero learning rate for one epoch (only the activation
  ranges move: what int8 rounding alone costs);
- `qat-constant-1e-4`, `qat-constant-1e-5`: QAT at a constant rate;
- `qat-cosine-1e-4`: QAT from 1e-4 annealed to 0 (tfopt's recipe,
  `tfopt.pipeline.qat_learning_rate`).

After every epoch it prints the held-out accuracy in inference mode and, for QAT,
the accuracy on 360 training images in inference mode and the share of test
activations clipped by the worst range: a training-mode accuracy (what `fit`
logs) that stays high while the inference-mode one drops tells an unsettled end
of training from rounding or clipping.

Usage:
    python benchmarks/qat_lr_diagnosis.py --model densenet121 --cache DIR \
        [--plans float,ranges-only,qat-constant-1e-4,qat-constant-1e-5,qat-cosine-1e-4] [--epochs 2]
"""

import argparse
import os
import time

import numpy as np

PLANS = ("float", "ranges-only", "qat-constant-1e-4", "qat-constant-1e-5", "qat-cosine-1e-4")


def _float_model(name, cache):
    import keras

    from tfopt import zoo
    from tfopt.bench import zoo_suite

    b = zoo_suite.budget(name)
    (x, y), (x_test, y_test) = zoo.task(name, n_train=b.n_train, n_test=b.n_test)
    path = os.path.join(cache, f"{name}-e{b.epochs}-n{b.n_train}-bn{b.bn_momentum}.keras")
    if os.path.exists(path):
        return path, (x, y), (x_test, y_test)
    model = zoo.compile_model(zoo.build(name, bn_momentum=b.bn_momentum))
    model.fit(x, y, batch_size=32, epochs=b.epochs, verbose=0)
    os.makedirs(cache, exist_ok=True)
    model.save(path)
    return path, (x, y), (x_test, y_test)


def run(plan, path, train, test, epochs):
    import keras

    from tfopt import pipeline
    from tfopt import quantization
    from tfopt import zoo
    from tfopt.quantization.layers import QuantizeActivation

    (x, y), (x_test, y_test) = train, test
    model = keras.saving.load_model(path)
    keras.utils.set_random_seed(1)
    if plan == "float":
        tuned = zoo.compile_model(model, 1e-4)
    elif plan == "ranges-only":
        tuned = quantization.quantize_model(model)
        tuned.compile(optimizer=keras.optimizers.SGD(0.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        epochs = 1
    else:
        _, kind, rate = plan.split("-", 2)
        rate = pipeline.qat_learning_rate(x, epochs, float(rate), "cosine" if kind == "cosine" else None,
                                          batch_size=32)
        tuned = zoo.compile_model(quantization.quantize_model(model), rate)
    acts = [l for l in tuned.layers if isinstance(l, QuantizeActivation)]
    probe = keras.Model(tuned.inputs, [l.input for l in acts]) if acts else None

    def accuracy(images, labels):
        return float(np.mean(tuned.predict(images, batch_size=64, verbose=0).argmax(-1) == labels))

    rows = []

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            row = {"plan": plan, "epoch": epoch + 1, "fit_accuracy": round(float(logs["accuracy"]), 3),
                   "test_accuracy": round(accuracy(x_test, y_test), 3)}
            if probe is not None:
                row["train_accuracy_inference"] = round(accuracy(x[:360], y[:360]), 3)
                clipped = 0.0
                for layer, values in zip(acts, probe.predict(x_test[:64], batch_size=64, verbose=0)):
                    low, high = float(layer.range_min.numpy()), float(layer.range_max.numpy())
                    clipped = max(clipped, float(np.mean((values < low) | (values > high))))
                row["worst_clipped_share"] = round(clipped, 4)
            print(row, flush=True)
            rows.append(row)

    tuned.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[Report()])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--cache", required=True, help="directory of the trained float models")
    parser.add_argument("--plans", default=",".join(PLANS))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    path, train, test = _float_model(args.model, args.cache)
    import keras

    base = keras.saving.load_model(path)
    print({"float_test_accuracy": round(float(np.mean(
        base.predict(test[0], batch_size=64, verbose=0).argmax(-1) == test[1])), 3)})
    for plan in args.plans.split(","):
        if plan not in PLANS:
            raise SystemExit(f"unknown plan {plan!r}; use {', '.join(PLANS)}")
        start = time.time()
        run(plan, path, train, test, args.epochs)
        print({"plan": plan, "seconds": round(time.time() - start)}, flush=True)


if __name__ == "__main__":
    main()
