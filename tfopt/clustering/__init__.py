"""Weight clustering for Keras 3 (tfmot's `cluster_weights` API).

`cluster_weights` wraps kernels so that each takes only `k` trainable
values, trained inside `fit`; `strip_clustering` returns the plain model;
`clustering_report` counts distinct values per kernel.
"""

from tfopt.clustering.api import cluster_weights
from tfopt.clustering.api import cluster_wrappers
from tfopt.clustering.api import clustering_report
from tfopt.clustering.api import strip_clustering
from tfopt.clustering.centroids import CentroidInitialization
from tfopt.clustering.wrapper import ClusterWeights

__all__ = [
    "CentroidInitialization",
    "ClusterWeights",
    "cluster_weights",
    "cluster_wrappers",
    "clustering_report",
    "strip_clustering",
]
