"""The layer wrapper that computes a layer with clustered weights."""

import keras
import numpy as np
from keras import layers, ops

from tfopt.clustering import centroids as centroids_lib
from tfopt.pruning.registry import prunable_weights
from tfopt.substitution import SubstitutingWrapper
from tfopt.substitution import call_with_values


@keras.saving.register_keras_serializable(package="tfopt")
class ClusterWeights(SubstitutingWrapper):
    """Wraps a layer so that each of its kernels takes only `k` values.

    Per clustered weight (the kernels: the same weights tfopt prunes, biases
    excluded) the wrapper owns trainable `centroids` (shape `(k,)`) and
    non-trainable `indices` (the weight's shape, the centroid each element
    uses), plus with `preserve_sparsity` a non-trainable `sparsity_mask`
    (1 where the weight was non-zero when wrapped). All are Keras variables,
    so `.keras` save/load and `BackupAndRestore` keep them.

    The layer computes with `centroids[indices] * mask`, substituted in a
    `keras.StatelessScope`. As in tfmot, the original weight stays trainable
    through a straight-through estimator (`w - stop_gradient(w)` is added),
    so the gradient of the clustered weight reaches both the centroids (summed
    over each cluster's members) and the original weights; in each training
    call the indices are re-assigned to the nearest centroid of the updated
    original weights.

    Use `cluster_weights` rather than this class directly.

    Args:
        layer: The layer to wrap.
        number_of_clusters: Values per weight (>= 2).
        cluster_centroids_init: A `CentroidInitialization`.
        preserve_sparsity: Keep zero weights exactly zero (for a model from
            `tfopt.pruning.strip_pruning`): zeros are masked out and the
            centroids are fitted to the non-zero weights only.
        **kwargs: Passed to `keras.layers.Layer`.

    Raises:
        ValueError: If `number_of_clusters` < 2, the layer is already
            wrapped, or tfopt does not know its weights.
        TypeError: If `layer` is not a Keras layer.
    """

    def __init__(self, layer, number_of_clusters=16,
                 cluster_centroids_init="KMEANS_PLUS_PLUS",
                 preserve_sparsity=False, **kwargs):
        if not isinstance(layer, layers.Layer) or isinstance(layer, keras.Model):
            raise TypeError(f"ClusterWeights wraps a keras.layers.Layer, got {layer!r}.")
        if isinstance(layer, ClusterWeights):
            raise ValueError(f"Layer {layer.name!r} is already wrapped for clustering.")
        validate_number_of_clusters(number_of_clusters)
        kwargs.setdefault("name", f"cluster_{layer.name}")
        super().__init__(layer, **kwargs)
        self.number_of_clusters = int(number_of_clusters)
        self.cluster_centroids_init = centroids_lib.resolve(cluster_centroids_init)
        self.preserve_sparsity = bool(preserve_sparsity)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        weights = prunable_weights(self.layer)
        if weights is None:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has "
                "weights tfopt does not know how to cluster; leave it out with "
                "layers=[...]."
            )
        self._clustered = list(weights)
        k = self.number_of_clusters
        self.centroids = [
            self.add_weight(name=f"centroids_{i}_{w.name}", shape=(k,),
                            initializer="zeros", dtype="float32", trainable=True)
            for i, w in enumerate(weights)
        ]
        self.indices = [
            self.add_weight(name=f"indices_{i}_{w.name}", shape=w.shape,
                            initializer="zeros", dtype="int32", trainable=False,
                            aggregation="only_first_replica")
            for i, w in enumerate(weights)
        ]
        self.sparsity_masks = [
            self.add_weight(name=f"sparsity_mask_{i}_{w.name}", shape=w.shape,
                            initializer="ones", dtype="float32", trainable=False,
                            aggregation="only_first_replica")
            for i, w in enumerate(weights)
        ] if self.preserve_sparsity else []
        self.built = True
        self.initialize_clusters()

    @property
    def clustered_weights(self):
        """The wrapped layer's variables that are clustered."""
        return list(self._clustered)

    def initialize_clusters(self, seed=0):
        """Places the centroids and assigns indices from the current weights.

        `cluster_weights` calls this once the original weights are copied in;
        call it again after changing the inner layer's weights by hand.
        """
        for i, weight in enumerate(self._clustered):
            values = np.asarray(keras.ops.convert_to_numpy(weight.value), "float32")
            if self.preserve_sparsity:
                mask = (values != 0).astype("float32")
                self.sparsity_masks[i].assign(mask)
                fitted = values[mask > 0]
            else:
                fitted = values
            centroids = centroids_lib.initial_centroids(
                fitted, self.number_of_clusters, self.cluster_centroids_init,
                seed=seed + i)
            self.centroids[i].assign(centroids)
            self.indices[i].assign(
                centroids_lib.assign(values, centroids).astype("int32"))

    def clustered_values(self):
        """The weights the layer computes with (tensors), in weight order."""
        result = []
        for i, weight in enumerate(self._clustered):
            value = ops.take(self.centroids[i], self.indices[i])
            if self.preserve_sparsity:
                value = value * self.sparsity_masks[i]
            result.append(ops.cast(value, weight.dtype))
        return result

    def _reassign(self):
        for i, weight in enumerate(self._clustered):
            values = ops.cast(weight.value, "float32")
            centroids = ops.convert_to_tensor(self.centroids[i])
            distance = ops.abs(ops.expand_dims(values, -1) - centroids)
            self.indices[i].assign(ops.cast(ops.argmin(distance, axis=-1), "int32"))

    def call(self, inputs, *args, training=None, **kwargs):
        if training:
            self._reassign()
        replacements = []
        for weight, clustered in zip(self._clustered, self.clustered_values()):
            original = weight.value
            if training:
                # Straight-through: the forward value is the clustered one,
                # the original weight receives the same gradient.
                clustered = clustered + original - ops.stop_gradient(original)
            replacements.append((weight, clustered))
        outputs, losses = call_with_values(self.layer, replacements, inputs,
                                           *args, **kwargs)
        for loss in losses:
            self.add_loss(loss)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update({
            "number_of_clusters": self.number_of_clusters,
            "cluster_centroids_init": self.cluster_centroids_init.value,
            "preserve_sparsity": self.preserve_sparsity,
        })
        return config


def validate_number_of_clusters(number_of_clusters):
    """Raises ValueError unless `number_of_clusters` is an int >= 2."""
    if (isinstance(number_of_clusters, bool)
            or not isinstance(number_of_clusters, (int, np.integer))
            or number_of_clusters < 2):
        raise ValueError(
            f"number_of_clusters={number_of_clusters!r} must be an int >= 2 "
            "(16 or 32 are usual; 2**bits for a bits-per-weight index)."
        )
