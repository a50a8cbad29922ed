"""Weight clustering: exact centroid values, training, strip, save/load,
resume, sparsity, TFLite files holding exactly the cluster values."""

import keras
import numpy as np
import pytest

from tfopt import clustering
from tfopt import export
from tfopt import pruning
from tfopt.data import load_digits
from tests.pruning.helpers import cnn
from tests.pruning.helpers import compile_model


@pytest.fixture(scope="module")
def digits():
    return load_digits(8)


def _model():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10),
    ])


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(1)
    model = compile_model(_model())
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def clustered4(trained, digits):
    """The trained model clustered to 4 values per kernel, one epoch."""
    (x, y), _ = digits
    keras.utils.set_random_seed(3)
    clustered = clustering.cluster_weights(trained, 4)
    compile_model(clustered).fit(x, y, epochs=1, batch_size=64, verbose=0)
    return clustered, clustering.strip_clustering(clustered)


def _kernel_values(model):
    return {row["weight"]: row for row in clustering.clustering_report(model)}


def test_centroid_initializations():
    from tfopt.clustering.centroids import assign, initial_centroids

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-1, 0.05, 900), rng.normal(1, 0.05, 100)])
    for init in clustering.CentroidInitialization:
        centroids = initial_centroids(values, 4, init)
        assert centroids.shape == (4,) and np.all(np.diff(centroids) >= 0)
        assert values.min() <= centroids[0] and centroids[-1] <= values.max() + 1e-6
        index = assign(values, centroids)
        nearest = np.abs(values[:, None] - centroids[None]).argmin(1)
        assert np.array_equal(centroids[index], centroids[nearest])
    # Density-based puts 3 of 4 centroids in the dense mode; linear spreads them.
    assert np.sum(initial_centroids(values, 4, "DENSITY_BASED") < 0) == 3
    assert np.sum(initial_centroids(values, 4, "LINEAR") < 0) == 2
    # k-means lands on both modes.
    kmeans = initial_centroids(values, 2, "KMEANS_PLUS_PLUS")
    np.testing.assert_allclose(kmeans, [-1, 1], atol=0.05)


@pytest.mark.parametrize("init", ["KMEANS_PLUS_PLUS", "DENSITY_BASED"])
def test_cluster_train_strip_exact_values(trained, digits, init):
    (x, y), (x_test, y_test) = digits
    keras.utils.set_random_seed(2)
    clustered = clustering.cluster_weights(trained, 8, init)
    before = [w.numpy().copy() for w in clustering.cluster_wrappers(clustered)[0].centroids]
    compile_model(clustered).fit(x, y, epochs=1, batch_size=64, verbose=0)
    wrapper = clustering.cluster_wrappers(clustered)[0]
    # The centroids are trained (the clustered weight's gradient reaches them).
    assert not np.allclose(before[0], wrapper.centroids[0].numpy())
    final = clustering.strip_clustering(clustered)
    assert not any(isinstance(l, clustering.ClusterWeights) for l in final.layers)
    for row in clustering.clustering_report(final):
        assert row["distinct_values"] <= 8, row
    # Stripped outputs equal the wrapped model's.
    np.testing.assert_allclose(final.predict(x_test, verbose=0),
                               clustered.predict(x_test, verbose=0), atol=1e-5)
    # Every stripped kernel value is one of its centroids.
    for wrapper in clustering.cluster_wrappers(clustered):
        layer = final.get_layer(wrapper.layer.name)
        assert np.all(np.isin(layer.kernel.numpy(), wrapper.centroids[0].numpy()))
    accuracy = np.mean(final.predict(x_test, verbose=0).argmax(1) == y_test)
    assert accuracy > 0.8


def test_tflite_weights_take_exactly_cluster_values(trained, digits, clustered4):
    from ai_edge_litert.interpreter import Interpreter
    from tfopt.export.lowbit import weight_values

    _, (x_test, _) = digits
    clustered, final = clustered4
    exported = export.to_tflite(final)
    plain = export.to_tflite(trained)
    centroids = {w.layer.name: w.centroids[0].numpy()
                 for w in clustering.cluster_wrappers(clustered)}
    found = 0
    # Read back through the LiteRT interpreter (get_tensor_details /
    # get_tensor): every float kernel holds only one wrapper's centroids.
    interpreter = Interpreter(model_content=exported.content)
    interpreter.allocate_tensors()
    stored = weight_values(exported.content)
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.float32 or len(detail["shape"]) < 2:
            continue
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:
            continue  # an activation without data before invoke
        if not any(v.shape == value.shape and np.array_equal(v, value)
                   for _, v in stored.values()):
            continue  # an activation, not a kernel
        matches = [name for name, c in centroids.items() if np.all(np.isin(value, c))]
        assert matches, (detail["name"], np.unique(value)[:10])
        found += 1
    assert found == 3
    assert exported.gzip_bytes < 0.5 * plain.gzip_bytes
    assert export.verify(exported, final, x_test)["top1_agreement"] == 1.0
    # A model still wrapped is stripped on export (with a warning): the same
    # file, not centroids and index tensors.
    with pytest.warns(UserWarning, match="strip_clustering"):
        unstripped = export.to_tflite(clustered)
    assert unstripped.content == exported.content


def test_save_load_and_resume_identical(trained, digits, tmp_path):
    (x, y), (x_test, _) = digits
    keras.utils.set_random_seed(4)
    clustered = compile_model(clustering.cluster_weights(trained, 8, "DENSITY_BASED"))
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    path = str(tmp_path / "c.keras")
    clustered.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0),
                                  clustered.predict(x_test, verbose=0))
    # Resume: one more epoch on each from the same state gives the same model.
    keras.utils.set_random_seed(5)
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False)
    keras.utils.set_random_seed(5)
    loaded.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.predict(x_test, verbose=0),
                               clustered.predict(x_test, verbose=0), atol=1e-5)
    assert loaded.layers[0].get_config()["number_of_clusters"] == 8


def test_backup_and_restore_resume(trained, digits, tmp_path):
    (x, y), _ = digits
    backup = str(tmp_path / "backup")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise RuntimeError("interrupted")

    keras.utils.set_random_seed(6)
    model = compile_model(clustering.cluster_weights(trained, 8))
    with pytest.raises(RuntimeError):
        model.fit(x, y, epochs=2, batch_size=64, verbose=0, shuffle=False,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), Stop()])
    state = [w.centroids[0].numpy().copy() for w in clustering.cluster_wrappers(model)]
    fresh = compile_model(clustering.cluster_weights(trained, 8, "LINEAR"))
    fresh.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False,
              callbacks=[keras.callbacks.BackupAndRestore(backup)])
    # Restored from the backup (epoch 1 done), not from the fresh LINEAR init.
    restored = clustering.cluster_wrappers(fresh)
    np.testing.assert_array_equal(restored[0].indices[0].numpy().shape,
                                  clustering.cluster_wrappers(model)[0].indices[0].numpy().shape)
    assert np.allclose(restored[0].centroids[0].numpy(), state[0])


def test_sparsity_preserved(digits):
    (x, y), (x_test, _) = digits
    keras.utils.set_random_seed(7)
    pruned = compile_model(pruning.prune_low_magnitude(
        _model(), pruning_schedule=pruning.ConstantSparsity(0.7, 0, frequency=1)))
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])
    stripped = pruning.strip_pruning(pruned)
    zeros = {row["weight"]: row["zeros"] for row in clustering.clustering_report(stripped)}
    clustered = compile_model(clustering.cluster_weights(stripped, 8, preserve_sparsity=True))
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    final = clustering.strip_clustering(clustered)
    for row in clustering.clustering_report(final):
        # The same zeros (at least), and 8 values besides zero.
        assert row["zeros"] >= zeros[row["weight"]], row
        assert row["distinct_values"] <= 9, row
    for before, after in zip(stripped.layers, final.layers):
        if before.weights:
            kernel = before.weights[0].numpy()
            assert np.all(after.weights[0].numpy()[kernel == 0] == 0)


def test_nested_and_per_layer(trained):
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="inner_dense")])
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(4, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    clustered = clustering.cluster_weights(model, 3, layers=["inner_dense"])
    wrapped = [w.layer.name for w in clustering.cluster_wrappers(clustered)]
    assert wrapped == ["inner_dense"]
    layer = clustering.cluster_weights(keras.layers.Dense(4), 3)
    assert isinstance(layer, clustering.ClusterWeights)


def test_clustering_bad_inputs(trained):
    with pytest.raises(ValueError, match="number_of_clusters=1 must be an int >= 2"):
        clustering.cluster_weights(trained, 1)
    with pytest.raises(ValueError, match="number_of_clusters=True"):
        clustering.cluster_weights(trained, True)
    with pytest.raises(ValueError, match="cluster_centroids_init='MEDIAN' is unknown"):
        clustering.cluster_weights(trained, 4, "MEDIAN")
    with pytest.raises(ValueError, match=r"layers=\['nope'\] not found"):
        clustering.cluster_weights(trained, 4, layers=["nope"])
    clustered = clustering.cluster_weights(trained, 4)
    with pytest.raises(ValueError, match="strip_pruning or strip_clustering it first"):
        clustering.cluster_weights(clustered, 4)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed"):
        clustering.cluster_weights(Sub(), 4)
    with pytest.raises(TypeError, match="strip_clustering takes a keras.Model"):
        clustering.strip_clustering("model")


def test_int8_and_int4_files_keep_at_most_k_values_per_channel(digits, clustered4):
    """Per-channel int8 (converter PTQ) and litert-quantizer's int4 keep at
    most k values in every output channel of a clustered kernel."""
    from tfopt.export.lowbit import weight_values

    (x, _), (x_test, y_test) = digits
    _, final = clustered4
    int8 = export.to_tflite(final, quantization="int8", representative_data=x[:100])
    int4 = export.quantize_tflite(final, mode="int4_dynamic")
    for exported, dtype in ((int8, "int8"), (int4, "int4")):
        weights = weight_values(exported.content)
        assert len(weights) == 3
        for stored, value in weights.values():
            assert stored == dtype
            per_channel = value.reshape(value.shape[0], -1)
            assert max(np.unique(row).size for row in per_channel) <= 4
        report = export.verify(exported, final, x_test, y_test)
        assert report["tflite_accuracy"] >= report["keras_accuracy"] - 0.03
    # The float file: the whole kernel takes only the 4 centroids.
    floats = weight_values(export.to_tflite(final).content)
    for stored, value in floats.values():
        assert stored == "float32" and np.unique(value).size <= 4


def test_cluster_preserving_qat(digits, clustered4):
    """cluster_weights on the QAT model of a clustered model: QAT fine-tuning
    keeps 4 values per kernel, and the int8 file <= 4 per output channel;
    plain QAT fine-tuning of the same model drifts off the centroids."""
    from tfopt import quantization
    from tfopt.export.lowbit import weight_values

    (x, y), (x_test, y_test) = digits
    _, final = clustered4

    def int8_values(model):
        exported = export.to_tflite(model, quantization="int8")
        values = weight_values(exported.content)
        return exported, max(max(np.unique(row).size for row in v.reshape(v.shape[0], -1))
                             for _, v in values.values())

    keras.utils.set_random_seed(9)
    cqat = clustering.cluster_weights(quantization.quantize_model(final), 4)
    compile_model(cqat).fit(x, y, epochs=1, batch_size=64, verbose=0)
    stripped = clustering.strip_clustering(cqat)
    assert all(row["distinct_values"] <= 4 for row in clustering.clustering_report(stripped))
    exported, most = int8_values(stripped)
    assert most <= 4
    report = export.verify(exported, stripped, x_test, y_test)
    assert report["top1_agreement"] >= 0.97 and report["tflite_accuracy"] > 0.8
    keras.utils.set_random_seed(9)
    plain = quantization.quantize_model(final)
    compile_model(plain).fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert int8_values(plain)[1] > 4
