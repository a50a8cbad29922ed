"""Per-layer sensitivity to structured pruning, and ratios chosen from it."""

import numpy as np

from tfopt.pruning.channel_graph import ChannelGraph
from tfopt.pruning.channel_oneshot import prune_channels

DEFAULT_RATIOS = (0.25, 0.5, 0.75)


def _accuracy(model, x, y, batch_size):
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(y).reshape(-1)))


def sensitivity_analysis(model, x_val, y_val, ratios=DEFAULT_RATIOS, criterion="l1",
                         data=None, layers=None, metric=None, batch_size=256):
    """Prunes each layer (group) alone at each ratio and measures the drop.

    No fine-tuning happens: the table ranks how much each layer's channels
    matter, so that robust layers get high ratios and fragile ones low.

    Args:
        model: A built Sequential/Functional classifier.
        x_val, y_val: Validation data (integer labels for the default
            metric).
        ratios: Ratios tried per layer, each in `[0, 1)`.
        criterion, data: As in `prune_channels`.
        layers: Names of the layers to analyse (default every prunable
            group, named by its first producer).
        metric: Optional `(model, x, y) -> float`, higher is better; default
            top-1 accuracy.
        batch_size: Prediction batch size.

    Returns:
        A list of dicts, one per (layer, ratio) that could be pruned:
        `{"layer", "producers", "channels", "ratio", "kept", "params",
        "metric", "baseline", "drop"}` (`drop = baseline - metric`). A ratio
        that would remove every channel of a layer is skipped.

    Raises:
        ValueError: As `prune_channels` (unknown layer, bad ratio, ...).

    Example:

    ```python
    table = tfopt.pruning.sensitivity_analysis(model, x_val, y_val, ratios=(0.25, 0.5))
    ratios = tfopt.pruning.ratios_from_sensitivity(table, max_drop=0.01)
    small = tfopt.pruning.prune_channels(model, ratios)
    ```
    """
    score = metric or (lambda m, x, y: _accuracy(m, x, y, batch_size))
    graph = ChannelGraph(model)
    if layers is None:
        groups = graph.prunable_groups()
    else:
        from tfopt.pruning.channel_oneshot import _group_for_name

        groups = [_group_for_name(graph, name) for name in layers]
    baseline = float(score(model, x_val, y_val))
    base_params = model.count_params()
    rows = []
    for group in groups:
        for ratio in ratios:
            blocks = group.size // group.unit  # whole GroupNormalization groups
            kept = (blocks - int(np.floor(ratio * blocks + 0.5))) * group.unit
            if kept < 1:
                continue
            pruned = prune_channels(model, {group.name: ratio}, criterion=criterion, data=data)
            value = float(score(pruned, x_val, y_val))
            rows.append({
                "layer": group.name,
                "producers": list(group.producers),
                "channels": group.size,
                "ratio": float(ratio),
                "kept": kept,
                "params": pruned.count_params() / base_params,
                "metric": value,
                "baseline": baseline,
                "drop": baseline - value,
            })
    return rows


def ratios_from_sensitivity(table, max_drop=0.01):
    """Per layer, the largest ratio whose drop stays within `max_drop`.

    Args:
        table: The rows of `sensitivity_analysis`.
        max_drop: Largest acceptable metric drop of one layer alone.

    Returns:
        `{layer_name: ratio}` for `prune_channels` (layers where even the
        smallest ratio drops too much are left out).

    Example:

    ```python
    small = tfopt.pruning.prune_channels(model, ratios_from_sensitivity(table, 0.02))
    ```
    """
    best = {}
    for row in table:
        if row["drop"] <= max_drop and row["ratio"] > best.get(row["layer"], 0.0):
            best[row["layer"]] = row["ratio"]
    return best


def plot_sensitivity(table, path, title="Structured pruning sensitivity"):
    """Writes a PNG: metric drop against ratio, one line per layer.

    Args:
        table: The rows of `sensitivity_analysis`.
        path: Output `.png` path.
        title: Plot title.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for layer in dict.fromkeys(row["layer"] for row in table):
        rows = [r for r in table if r["layer"] == layer]
        ax.plot([r["ratio"] for r in rows], [100 * r["drop"] for r in rows], marker="o", label=layer)
    ax.set_xlabel("fraction of channels removed (layer alone)")
    ax.set_ylabel("metric drop (points)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len({r["layer"] for r in table}) <= 20:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
