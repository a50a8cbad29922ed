import keras
import numpy as np
import pytest

from tfopt import distillation
from tfopt import export
from tfopt import pruning
from tfopt import quantization
from tfopt.data import load_digits
from tfopt.distillation import Distiller
from tfopt.distillation import FeatureDistillation


@pytest.fixture(scope="module")
def digits():
    (x, y), (x_test, y_test) = load_digits(8)
    return x[:512], y[:512], x_test, y_test


def _teacher(head="logits", name="teacher"):
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", name="t_conv"),
        keras.layers.BatchNormalization(name="t_bn"),
        keras.layers.Flatten(name="t_flat"),
        keras.layers.Dense(32, activation="relu", name="t_hidden"),
        keras.layers.Dense(10, activation="softmax" if head == "softmax" else None, name="t_out"),
    ], name=name)


def _student(head="logits", classes=10):
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="s_conv"),
        keras.layers.Flatten(name="s_flat"),
        keras.layers.Dense(classes, activation="softmax" if head == "softmax" else None, name="s_out"),
    ], name="student")


@pytest.fixture(scope="module")
def trained_teacher(digits):
    x, y = digits[0], digits[1]
    keras.utils.set_random_seed(0)
    teacher = _teacher()
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, batch_size=64, epochs=8, verbose=0)
    return teacher


def _numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _numpy_total(y, teacher_logits, student_logits, temperature, alpha):
    task = -_numpy_log_softmax(student_logits)[np.arange(len(y)), y]
    log_pt = _numpy_log_softmax(teacher_logits / temperature)
    log_ps = _numpy_log_softmax(student_logits / temperature)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    return np.mean(alpha * task + (1 - alpha) * temperature ** 2 * kl)


def test_soft_target_loss_matches_numpy_with_t_squared():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(6, 10)) * 3, rng.normal(size=(6, 10)) * 3
    for temperature in (1.0, 2.5, 8.0):
        got = np.asarray(distillation.soft_target_loss(t.astype("float32"), s.astype("float32"), temperature))
        log_pt, log_ps = _numpy_log_softmax(t / temperature), _numpy_log_softmax(s / temperature)
        want = temperature ** 2 * (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.allclose(distillation.soft_target_loss(t.astype("float32"), t.astype("float32"), 3.0), 0, atol=1e-6)


@pytest.mark.parametrize("teacher_head,student_head", [("logits", "logits"), ("softmax", "softmax"),
                                                       ("softmax", "logits")])
def test_total_loss_matches_numpy_for_logits_and_softmax_heads(digits, teacher_head, student_head):
    x, y = digits[0][:16], digits[1][:16]
    teacher, student = _teacher(teacher_head), _student(student_head)
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.3)
    distiller.compile(optimizer="sgd")
    assert (distiller.teacher_head, distiller.student_head) == (teacher_head, student_head)
    got = float(distiller.compute_loss(x, y, distiller(x, training=False), training=False))

    def logits_of(model, head):
        # The true pre-softmax values, computed by the same layers without
        # the final activation.
        out = model.layers[-1]
        features = keras.Sequential(model.layers[:-1])(x)
        z = np.asarray(features @ out.kernel.numpy() + out.bias.numpy(), dtype="float64")
        return z

    want = _numpy_total(y, logits_of(teacher, teacher_head), logits_of(student, student_head), 3.0, 0.3)
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_feature_loss_mse_and_cosine_match_numpy():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(3, 4, 4, 5)).astype("float32"), rng.normal(size=(3, 4, 4, 5)).astype("float32")
    np.testing.assert_allclose(distillation.feature_loss(t, s, "mse"), ((t - s) ** 2).mean((1, 2, 3)), rtol=1e-5)
    cos = (t * s).sum(-1) / np.linalg.norm(t, axis=-1) / np.linalg.norm(s, axis=-1)
    np.testing.assert_allclose(distillation.feature_loss(t, s, "cosine"), (1 - cos).mean((1, 2)), rtol=1e-5)


def test_fit_trains_student_and_leaves_teacher_untouched(digits, trained_teacher):
    x, y, x_test, y_test = digits
    before = [w.copy() for w in trained_teacher.get_weights()]  # BN moving stats included
    student = _student()
    untrained = student.predict(x_test, verbose=0)
    distiller = Distiller(student, trained_teacher, temperature=4.0, alpha=0.2)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = distiller.fit(x, y, batch_size=64, epochs=4, verbose=0)
    for key in ("loss", "task_loss", "distillation_loss", "accuracy"):
        assert key in history.history
    assert history.history["loss"][-1] < history.history["loss"][0]
    for a, b in zip(before, trained_teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(untrained, student.predict(x_test, verbose=0))
    assert not any(id(w) in {id(v) for v in trained_teacher.weights} for w in distiller.trainable_weights)
    accuracy = np.mean(np.argmax(student.predict(x_test, verbose=0), -1) == y_test)
    assert accuracy > 0.6


def test_student_saves_and_loads(tmp_path, digits, trained_teacher):
    x, y, x_test, _ = digits
    distiller = Distiller(_student(), trained_teacher)
    distiller.compile(optimizer="adam")
    distiller.fit(x, y, batch_size=64, epochs=1, verbose=0)
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x_test, verbose=0),
                               distiller.student.predict(x_test, verbose=0), atol=1e-6)


def test_distiller_round_trips_through_keras_file(tmp_path, digits, trained_teacher):
    x, y, x_test, _ = digits
    hint = FeatureDistillation("t_hidden", "s_flat")  # 32 vs 144 wide: adapter
    distiller = Distiller(_student(), trained_teacher, temperature=5.0, alpha=0.4, features=[hint])
    distiller.compile(optimizer="adam")
    distiller.fit(x, y, batch_size=64, epochs=1, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Distiller)
    assert float(loaded.temperature.numpy()) == 5.0 and float(loaded.alpha.numpy()) == pytest.approx(0.4)
    np.testing.assert_allclose(loaded.adapters[0].kernel.numpy(), distiller.adapters[0].kernel.numpy())
    assert int(loaded.optimizer.iterations.numpy()) == int(distiller.optimizer.iterations.numpy()) > 0
    np.testing.assert_allclose(loaded.student.predict(x_test, verbose=0),
                               distiller.student.predict(x_test, verbose=0), atol=1e-6)


def test_feature_hints_with_adapter_train_and_stay_out_of_the_student(tmp_path, digits, trained_teacher):
    x, y, x_test, y_test = digits
    student = _student()
    # Conv features 6x6x16 (teacher) vs 6x6x4 (student): a 1x1 projection.
    hints = [FeatureDistillation("t_conv", "s_conv", loss="mse", weight=0.5),
             FeatureDistillation("t_hidden", "s_flat", loss="cosine")]
    distiller = Distiller(student, trained_teacher, features=hints)
    assert [a.kernel.shape for a in distiller.adapters] == [(4, 16), (144, 32)]
    adapter_before = distiller.adapters[0].kernel.numpy().copy()
    distiller.compile(optimizer="adam")
    history = distiller.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert "feature_loss" in history.history
    assert history.history["feature_loss"][-1] < history.history["feature_loss"][0]
    assert not np.allclose(adapter_before, distiller.adapters[0].kernel.numpy())
    adapter_ids = {id(w) for a in distiller.adapters for w in a.weights}
    assert adapter_ids and not adapter_ids & {id(w) for w in student.weights}
    exported = export.to_tflite(student, str(tmp_path / "student.tflite"))
    student_sizes = sorted(int(np.prod(w.shape)) for w in student.weights)
    assert sorted(w["size"] for w in exported.weights if w["size"] > 1) == [s for s in student_sizes if s > 1]
    report = export.verify(exported, student, x_test, y_test)
    assert report["max_abs_diff"] < 1e-4


def test_student_runs_once_per_step_so_pruning_advances_once(digits, trained_teacher):
    x, y = digits[0], digits[1]
    steps = int(np.ceil(len(x) / 64)) * 2
    schedule = pruning.PolynomialDecay(0.0, 0.75, 0, steps - 2, frequency=1)
    student = pruning.prune_low_magnitude(_student(), pruning_schedule=schedule)
    hint = FeatureDistillation("t_conv", "s_conv")  # names the wrapped layer by its own name
    distiller = Distiller(student, trained_teacher, features=[hint])
    distiller.compile(optimizer="adam")
    distiller.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert {int(w.pruning_step.numpy()) for w in pruning.api.pruning_wrappers(student)} == {steps}
    final = pruning.strip_pruning(student)
    for layer in ("s_conv", "s_out"):
        kernel = final.get_layer(layer).kernel.numpy()
        assert np.mean(kernel == 0) == pytest.approx(0.75, abs=1.0 / kernel.size)


def test_one_fit_distils_prunes_and_quantizes_then_exports_int8(tmp_path, digits, trained_teacher):
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(3)
    base = _student()
    base.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base.fit(x, y, batch_size=64, epochs=3, verbose=0)
    steps = int(np.ceil(len(x) / 64)) * 3
    qat = quantization.quantize_model(base)
    student = pruning.prune_low_magnitude(
        qat, pruning_schedule=pruning.PolynomialDecay(0.0, 0.8, 0, steps // 2, frequency=1))
    distiller = Distiller(student, trained_teacher, temperature=4.0, alpha=0.3)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    distiller.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    final = pruning.strip_pruning(distiller.student)
    assert quantization.is_quantized(final)
    exported = export.to_tflite(final, str(tmp_path / "kd_prune_qat.tflite"), quantization="int8")
    kernels = [w for w in exported.weights if w["dtype"] == "int8" and w["size"] >= 64]
    assert kernels and all(w["zero_fraction"] >= 0.8 - 1.0 / w["size"] for w in kernels)
    report = export.verify(exported, final, x_test, y_test)
    assert abs(report["tflite_accuracy"] - report["keras_accuracy"]) <= 0.02
    assert report["top1_agreement"] >= 0.97


def test_cached_teacher_gives_the_same_loss_and_trains(digits, trained_teacher):
    x, y = digits[0], digits[1]
    hint = FeatureDistillation("t_conv", "s_conv")
    distiller = Distiller(_student(), trained_teacher, features=[hint])
    distiller.compile(optimizer="adam")
    cached = distiller.cache_teacher(x)
    assert set(cached) == {"inputs", "teacher_logits", "teacher_feature_0"}
    batch = {k: v[:32] for k, v in cached.items()}
    live = distiller.compute_loss(x[:32], y[:32], distiller(x[:32], training=False), training=False)
    from_cache = distiller.compute_loss(batch, y[:32], distiller(batch, training=False), training=False)
    np.testing.assert_allclose(float(live), float(from_cache), rtol=1e-5)
    history = distiller.fit(cached, y, batch_size=64, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    with pytest.raises(TypeError, match="array"):
        distiller.cache_teacher(iter([x]))


def test_scheduler_sets_temperature_and_alpha_each_epoch(digits, trained_teacher):
    x, y = digits[0], digits[1]
    distiller = Distiller(_student(), trained_teacher, temperature=8.0, alpha=0.0)
    distiller.compile(optimizer="adam")
    scheduler = distillation.DistillationScheduler(temperature=lambda e: 8.0 / (e + 1),
                                                   alpha=lambda e: 0.25 * e)
    history = distiller.fit(x, y, batch_size=128, epochs=3, verbose=0, callbacks=[scheduler])
    assert history.history["temperature"] == [8.0, 4.0, pytest.approx(8.0 / 3)]
    assert history.history["alpha"] == [0.0, 0.25, 0.5]
    bad = distillation.DistillationScheduler(alpha=lambda e: 1.5)
    with pytest.raises(ValueError, match="alpha"):
        distiller.fit(x, y, batch_size=128, epochs=1, verbose=0, callbacks=[bad])
    with pytest.raises(TypeError, match="Distiller"):
        plain = _student()
        plain.compile(optimizer="adam", loss="mse")
        plain.fit(x, keras.utils.to_categorical(y, 10), epochs=1, verbose=0, callbacks=[scheduler])


def test_bad_input_is_refused_before_training(trained_teacher):
    with pytest.raises(ValueError, match="outputs differ"):
        Distiller(_student(classes=5), trained_teacher)
    with pytest.raises(ValueError, match="inputs differ"):
        other = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
        Distiller(other, trained_teacher)
    with pytest.raises(ValueError, match="not found in the teacher"):
        Distiller(_student(), trained_teacher, features=[FeatureDistillation("nope", "s_conv")])
    with pytest.raises(ValueError, match="not found in the student"):
        Distiller(_student(), trained_teacher, features=[FeatureDistillation("t_conv", "nope")])
    with pytest.raises(ValueError, match="spatial"):
        Distiller(_student(), trained_teacher, features=[FeatureDistillation("t_conv", "s_flat")])
    with pytest.raises(ValueError, match="adapter=False"):
        Distiller(_student(), trained_teacher, features=[FeatureDistillation("t_conv", "s_conv", adapter=False)])
    for alpha in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="alpha"):
            Distiller(_student(), trained_teacher, alpha=alpha)
    for temperature in (0, -1.0, None):
        with pytest.raises(ValueError, match="temperature"):
            Distiller(_student(), trained_teacher, temperature=temperature)
    with pytest.raises(TypeError, match="keras.Model"):
        Distiller(_student(), lambda x: x)
    sigmoid = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="sigmoid")])
    with pytest.raises(ValueError, match="neither logits nor a softmax"):
        Distiller(sigmoid, trained_teacher)
    distiller = Distiller(_student(), trained_teacher)
    with pytest.raises(ValueError, match="from_logits=False"):
        distiller.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
    with pytest.raises(ValueError, match="loss must be one of"):
        FeatureDistillation("a", "b", loss="l1")


def test_subclassed_models_need_an_explicit_head(digits, trained_teacher):
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.out = keras.layers.Dense(10)

        def call(self, x):
            return self.out(self.flat(x))

    with pytest.raises(ValueError, match="student_head"):
        Distiller(Tiny(), trained_teacher)
    x, y = digits[0], digits[1]
    distiller = Distiller(Tiny(), trained_teacher, student_head="logits")
    distiller.compile(optimizer="adam")
    distiller.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    wrong = Distiller(_Wide(), trained_teacher, student_head="logits")
    wrong.compile(optimizer="adam")
    with pytest.raises(ValueError, match="gives 10 classes"):
        wrong.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)


class _Wide(keras.Model):
    def __init__(self):
        super().__init__(name="wide")
        self.flat = keras.layers.Flatten()
        self.out = keras.layers.Dense(7)

    def call(self, x):
        return self.out(self.flat(x))



def test_head_detection_sees_through_pruning_and_qat_wrappers():
    softmax_teacher = _teacher("softmax")
    assert distillation.detect_head(softmax_teacher) == "softmax"
    assert distillation.detect_head(quantization.quantize_model(_student("softmax"))) == "softmax"
    assert distillation.detect_head(pruning.prune_low_magnitude(_student())) == "logits"
    separate = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10),
                                 keras.layers.Softmax()])
    assert distillation.detect_head(separate) == "softmax"
    nested = keras.Sequential([keras.Input((8, 8, 1)), _student("softmax")])
    assert distillation.detect_head(nested) == "softmax"


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def test_interrupted_distillation_resumes_with_identical_state(tmp_path, digits, trained_teacher):
    x, y = digits[0][:256], digits[1][:256]

    def run(callbacks):
        keras.utils.set_random_seed(7)
        distiller = Distiller(_student(), trained_teacher, features=[FeatureDistillation("t_conv", "s_conv")])
        distiller.compile(optimizer="adam")
        scheduler = distillation.DistillationScheduler(temperature=lambda e: 6.0 - e, alpha=lambda e: 0.1 * e)
        distiller.fit(x, y, batch_size=64, epochs=4, shuffle=False, verbose=0,
                      callbacks=[scheduler, *callbacks])
        return distiller

    uninterrupted = run([])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), _Interrupt()])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert float(resumed.temperature.numpy()) == 3.0 and float(resumed.alpha.numpy()) == pytest.approx(0.3)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):  # student, adapter, T, alpha
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cross_entropy_by_name_takes_the_student_head(digits, trained_teacher):
    x, y = digits[0][:64], digits[1][:64]
    by_name = Distiller(_student(), trained_teacher, alpha=1.0)
    by_name.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    default = Distiller(by_name.student, trained_teacher, alpha=1.0)
    default.compile(optimizer="sgd")
    outputs = by_name.student(x)
    assert float(by_name.compute_loss(x, y, outputs)) == pytest.approx(
        float(default.compute_loss(x, y, outputs)), rel=1e-6)


def test_heads_behind_ops_and_pass_through_layers():
    inputs = keras.Input((4,))
    assert distillation.detect_head(keras.Model(inputs, keras.ops.softmax(keras.layers.Dense(3)(inputs)))) \
        == "softmax"
    assert distillation.detect_head(keras.Model(inputs, keras.ops.log_softmax(keras.layers.Dense(3)(inputs)))) \
        == "logits"
    dropout_after = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax"),
                                      keras.layers.Dropout(0.1)])
    assert distillation.detect_head(dropout_after) == "softmax"
    with pytest.raises(ValueError, match="neither logits nor a softmax"):
        distillation.detect_head(keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(
            keras.layers.Dense(3)(inputs))))


def test_reloaded_student_runs_its_hinted_layer_once(tmp_path, trained_teacher):
    student = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="s_conv",
                            activity_regularizer=keras.regularizers.L2(1e-3)),
        keras.layers.Flatten(), keras.layers.Dense(10)], name="student")
    student.save(str(tmp_path / "s.keras"))
    loaded = keras.models.load_model(str(tmp_path / "s.keras"))
    distiller = Distiller(loaded, trained_teacher, features=[FeatureDistillation("t_conv", "s_conv")])
    distiller(np.zeros((2, 8, 8, 1), "float32"), training=True)
    assert len(loaded.losses) == 1  # one activity loss: one pass through s_conv


_MIRRORED_KD = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tfopt.distillation import Distiller
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
def run(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        distiller = Distiller(student, teacher, alpha=0.5)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    before = student.get_weights()[0].copy()
    loss = distiller.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    return loss, (student.get_weights()[0] - before).tolist()
single = run(tf.distribute.get_strategy())
mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({"single": single, "mirrored": mirrored}))
"""


def test_mirrored_strategy_gives_the_single_device_step():
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _MIRRORED_KD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mirrored"][0] == pytest.approx(result["single"][0], rel=1e-5)
    np.testing.assert_allclose(result["mirrored"][1], result["single"][1], rtol=1e-4, atol=1e-7)


def test_nested_model_with_two_outputs_needs_an_explicit_head():
    inputs = keras.Input((4,))
    two = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)])
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, two(outer_in)[0])
    with pytest.raises(ValueError, match="teacher_head=/student_head="):
        distillation.detect_head(outer)
