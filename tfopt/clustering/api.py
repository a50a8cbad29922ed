"""cluster_weights / strip_clustering: tfmot's clustering API on Keras 3."""

import keras
import numpy as np

from tfopt.clustering import centroids as centroids_lib
from tfopt.clustering.wrapper import ClusterWeights
from tfopt.clustering.wrapper import validate_number_of_clusters
from tfopt.graph import check_graph_model
from tfopt.graph import clone_with
from tfopt.pruning.registry import prunable_weights


def cluster_weights(to_cluster, number_of_clusters,
                    cluster_centroids_init="KMEANS_PLUS_PLUS",
                    preserve_sparsity=False, layers=None):
    """Wraps a model's (or one layer's) kernels for weight clustering.

    Every kernel (Dense, Conv, DepthwiseConv, SeparableConv, Embedding, RNN:
    the weights tfopt prunes; biases are not clustered) then takes only
    `number_of_clusters` values, the centroids, which are trained inside
    `fit` (no callback needed). `strip_clustering` returns the plain model.
    A TFLite file of it holds exactly the centroid values, so gzip
    compresses it well (or `quantize_tflite` stores them in fewer bits).
    Cluster-preserving QAT: pass the `tfopt.quantization.quantize_model`
    of a clustered, stripped model; the QAT layers then fake-quantize the
    clustered kernels, and the int8 file keeps at most
    `number_of_clusters` values per output channel.

    Args:
        to_cluster: A built Sequential or Functional model (nested models
            are entered), or a single Keras layer (wrapped and returned).
        number_of_clusters: Values per kernel, an int >= 2.
        cluster_centroids_init: A `CentroidInitialization` (or its name):
            `KMEANS_PLUS_PLUS` (default, as tfmot), `DENSITY_BASED`,
            `LINEAR` or `RANDOM`.
        preserve_sparsity: Keep exact zeros zero (cluster a model from
            `tfopt.pruning.strip_pruning` without losing its sparsity).
        layers: Optional names of the layers to cluster (default: every
            layer with a kernel).

    Returns:
        A new model (the input is left unchanged) with `ClusterWeights`
        wrappers, or a wrapped layer.

    Raises:
        ValueError: If `number_of_clusters` < 2, the init is unknown, the
            model is not built, is wrapped for pruning/clustering already,
            names unknown `layers`, or has nothing to cluster.
        TypeError: If `to_cluster` is a subclassed model or not Keras.

    Example:

    ```python
    clustered = tfopt.clustering.cluster_weights(
        model, 16, tfopt.clustering.CentroidInitialization.KMEANS_PLUS_PLUS)
    clustered.compile(...); clustered.fit(x, y, epochs=2)
    final = tfopt.clustering.strip_clustering(clustered)
    ```
    """
    validate_number_of_clusters(number_of_clusters)
    init = centroids_lib.resolve(cluster_centroids_init)
    options = dict(number_of_clusters=int(number_of_clusters),
                   cluster_centroids_init=init,
                   preserve_sparsity=preserve_sparsity)
    if isinstance(to_cluster, keras.layers.Layer) and not isinstance(to_cluster, keras.Model):
        return ClusterWeights(to_cluster, **options)
    _check_graph_model(to_cluster, "cluster_weights")
    model = to_cluster
    if not model.built or not model.inputs:
        raise ValueError(
            f"Model {model.name!r} is not built: give it an Input before "
            "clustering it.")
    all_layers = list(_iter_layers(model))
    from tfopt.pruning.wrapper import PruneLowMagnitude

    wrapped = [l.name for l in all_layers if isinstance(l, (ClusterWeights, PruneLowMagnitude))]
    if wrapped:
        raise ValueError(
            f"Model {model.name!r} has wrapped layers {wrapped}; strip_pruning "
            "or strip_clustering it first (for pruned weights pass "
            "preserve_sparsity=True).")
    known = {l.name for l in all_layers}
    if layers is not None:
        missing = [name for name in layers if name not in known]
        if missing:
            raise ValueError(
                f"layers={missing} not found in model {model.name!r}; its "
                f"layers are {sorted(known)}.")
    selected = set()
    for layer in all_layers:
        if isinstance(layer, keras.Model):
            continue
        if layers is not None and layer.name not in layers:
            continue
        weights = prunable_weights(layer)
        if weights is None:
            if layers is not None:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) holds "
                    "weights tfopt cannot cluster.")
            continue
        if weights:
            selected.add(id(layer))
    if not selected:
        raise ValueError(f"Model {model.name!r} has no layer with a kernel to cluster.")

    def clone(layer):
        new = layer.__class__.from_config(layer.get_config())
        if id(layer) in selected:
            build_config = layer.get_build_config()
            if build_config:
                new.build_from_config(build_config)
            return ClusterWeights(new, **options), layer.get_weights()
        return new, layer.get_weights()

    clustered = clone_with(model, clone, target_of=_target)
    for wrapper in cluster_wrappers(clustered):
        wrapper.initialize_clusters()
    return clustered


def strip_clustering(model):
    """Returns a plain Keras model whose kernels hold the centroid values.

    Args:
        model: A model from `cluster_weights` (trained, or reloaded).

    Returns:
        A new `keras.Model` of the original architecture; each clustered
        kernel takes at most `number_of_clusters` distinct values (plus
        exact zeros with `preserve_sparsity`), and its outputs equal the
        wrapped model's in inference.

    Raises:
        TypeError: If `model` is not a Sequential/Functional model.

    Example:

    ```python
    final = tfopt.clustering.strip_clustering(clustered)
    exported = tfopt.export.to_tflite(final, "clustered.tflite")
    print(exported.gzip_bytes)
    ```
    """
    _check_graph_model(model, "strip_clustering")

    def clone(layer):
        if isinstance(layer, ClusterWeights):
            inner = layer.layer
            new = inner.__class__.from_config(inner.get_config())
            clustered = dict(zip(map(id, layer.clustered_weights),
                                 [keras.ops.convert_to_numpy(v) for v in layer.clustered_values()]))
            return new, [clustered.get(id(w), w.numpy()) for w in inner.weights]
        return layer.__class__.from_config(layer.get_config()), layer.get_weights()

    return clone_with(model, clone, target_of=_target)


def cluster_wrappers(model):
    """The `ClusterWeights` layers of `model` (nested models entered)."""
    return [l for l in _iter_layers(model) if isinstance(l, ClusterWeights)]


def clustering_report(model):
    """Distinct values per kernel of a (wrapped or stripped) model.

    Args:
        model: A Keras model.

    Returns:
        A list of dicts `{"weight", "size", "distinct_values", "zeros"}`
        for every kernel tfopt clusters.
    """
    rows = []
    for layer in _iter_layers(model):
        if isinstance(layer, keras.Model):
            continue
        if isinstance(layer, ClusterWeights):
            pairs = zip(layer.clustered_weights,
                        [keras.ops.convert_to_numpy(v) for v in layer.clustered_values()])
            name = layer.layer.name
        else:
            weights = prunable_weights(layer) or []
            pairs = [(w, keras.ops.convert_to_numpy(w.value)) for w in weights]
            name = layer.name
        for weight, value in pairs:
            rows.append({"weight": f"{name}/{weight.name}", "size": int(value.size),
                         "distinct_values": int(np.unique(value).size),
                         "zeros": int(np.sum(value == 0))})
    return rows


def _target(layer):
    return layer.layer if isinstance(layer, ClusterWeights) else layer


def _iter_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)


def _check_graph_model(model, what):
    check_graph_model(model, what, require_built=False,
                      subclassed_hint="Wrap its layers with cluster_weights(layer, ...) inside __init__ instead.")
