"""Initial centroids for weight clustering (pure numpy, run once per weight)."""

import enum

import numpy as np


class CentroidInitialization(str, enum.Enum):
    """How the first centroids of a weight are placed (tfmot's names).

    - `LINEAR`: evenly spaced between the weight's minimum and maximum.
    - `RANDOM`: uniformly random between the minimum and maximum.
    - `DENSITY_BASED`: at evenly spaced quantiles of the weight's values, so
      dense regions get more centroids (tfmot interpolates the CDF; the
      quantiles are the same points).
    - `KMEANS_PLUS_PLUS`: k-means++ seeding, then Lloyd iterations (1-D
      k-means); tfmot's default.
    """

    LINEAR = "LINEAR"
    RANDOM = "RANDOM"
    DENSITY_BASED = "DENSITY_BASED"
    KMEANS_PLUS_PLUS = "KMEANS_PLUS_PLUS"


def resolve(init):
    """Returns `init` as a `CentroidInitialization`, or raises ValueError."""
    try:
        return CentroidInitialization(
            init.value if isinstance(init, CentroidInitialization) else str(init).upper())
    except ValueError:
        raise ValueError(
            f"cluster_centroids_init={init!r} is unknown; use one of "
            f"{', '.join('CentroidInitialization.' + m.name for m in CentroidInitialization)}."
        ) from None


def initial_centroids(values, number_of_clusters, init, seed=0):
    """Sorted initial centroids for the 1-D `values`.

    Args:
        values: The weight's values to cluster (any shape; flattened).
        number_of_clusters: How many centroids (>= 2).
        init: A `CentroidInitialization`.
        seed: Seed for `RANDOM` and `KMEANS_PLUS_PLUS`.

    Returns:
        A float32 array of `number_of_clusters` ascending centroids.
    """
    values = np.asarray(values, "float64").ravel()
    k = int(number_of_clusters)
    if values.size == 0:
        return np.zeros(k, "float32")
    low, high = float(values.min()), float(values.max())
    rng = np.random.default_rng(seed)
    if init == CentroidInitialization.LINEAR:
        centroids = np.linspace(low, high, k)
    elif init == CentroidInitialization.RANDOM:
        centroids = rng.uniform(low, high, k)
    elif init == CentroidInitialization.DENSITY_BASED:
        centroids = np.quantile(values, np.linspace(0.0, 1.0, k))
    else:
        centroids = _kmeans(values, k, rng)
    return np.sort(centroids).astype("float32")


def assign(values, centroids):
    """Index of the nearest centroid for each value (centroids ascending)."""
    centroids = np.asarray(centroids, "float64")
    middles = (centroids[1:] + centroids[:-1]) / 2.0
    return np.searchsorted(middles, np.asarray(values, "float64"), side="left")


def _kmeans(values, k, rng, iterations=15, sample=20000):
    data = values if values.size <= sample else rng.choice(values, sample, replace=False)
    # k-means++ seeding: each next centroid drawn with probability
    # proportional to the squared distance to the nearest chosen one.
    centroids = [data[rng.integers(len(data))]]
    distance = (data - centroids[0]) ** 2
    for _ in range(1, k):
        total = distance.sum()
        if total <= 0:
            centroids.append(data[rng.integers(len(data))])
        else:
            centroids.append(data[rng.choice(len(data), p=distance / total)])
        distance = np.minimum(distance, (data - centroids[-1]) ** 2)
    centroids = np.sort(np.asarray(centroids))
    for _ in range(iterations):
        index = assign(values, centroids)
        sums = np.bincount(index, weights=values, minlength=k)
        counts = np.bincount(index, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        updated = np.sort(updated)
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return centroids
