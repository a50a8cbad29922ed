"""Channel importance criteria for structured pruning.

Weight criteria score a group's channels from its producers' kernels; data
criteria measure the channels where they are consumed (the inputs of the next
Conv/Dense layers, i.e. exactly where removing a channel takes effect) on
sample data. Scores of a group are summed over its producers (weights) or
over its consumers (data). A higher score means a more important channel.

- `"l1"` / `"l2"`: the L1 / L2 norm of each output filter (Li et al. 2017).
- `"taylor"`: first-order Taylor estimate of the loss change when the
  channel is zeroed, `mean_n |sum_positions a * dL/da|` (Molchanov et al.
  2017); needs `(x, y)`. An attention head: `|sum w * dL/dw|` over its value
  projection slices (zeroing them removes the head), per batch.
- Attention heads under `"l1"`/`"l2"`: the norm of the head's slices of the
  query, key, value and output kernels (and Q/K/V biases).
- `"mean_activation"`: mean `|a|` of the channel on the data.
- `"apoz"`: `1 - APoZ`, the fraction of non-zero activations (Hu et al.
  2016); meant for channels consumed after a ReLU.
"""

import numpy as np


def filter_norms(kernel, order=1):
    """L1 (`order=1`) or L2 (`order=2`) norm of each output channel.

    Args:
        kernel: A weight array whose last axis is the output channel
            (Dense `(in, out)`, Conv `(..., in, out)`).
        order: 1 or 2.

    Returns:
        A float64 array of shape `(out,)`.
    """
    flat = np.asarray(kernel, dtype="float64").reshape(-1, np.shape(kernel)[-1])
    if order == 1:
        return np.abs(flat).sum(axis=0)
    if order == 2:
        return np.sqrt(np.square(flat).sum(axis=0))
    raise ValueError(f"order={order!r} must be 1 or 2.")


# Weight criteria: name -> `score(kernel) -> (out,) float64`, where `kernel`
# holds a producer's output channels on its last axis. A group sums its
# producers' scores; an attention head is scored by the same function on
# the matrix of its Q/K/V/output slices (one column per head). Adding a
# criterion is one entry here (the README's "How to extend tfopt").
WEIGHT_SCORES = {
    "l1": lambda kernel: filter_norms(kernel, 1),
    "l2": lambda kernel: filter_norms(kernel, 2),
}
WEIGHT_CRITERIA = tuple(WEIGHT_SCORES)  # the built-in ones
DATA_CRITERIA = ("taylor", "mean_activation", "apoz")
CRITERIA = WEIGHT_CRITERIA + DATA_CRITERIA


def weight_criteria():
    """The names of the weight criteria (`WEIGHT_SCORES`), entries added included."""
    return tuple(WEIGHT_SCORES)


def criteria():
    """Every criterion name: weight criteria, then data criteria."""
    return weight_criteria() + DATA_CRITERIA


def validate_criterion(criterion, data):
    """Raises ValueError for an unknown criterion or missing data."""
    if criterion not in criteria():
        raise ValueError(f"criterion={criterion!r} must be one of {criteria()}.")
    if criterion in DATA_CRITERIA and data is None:
        raise ValueError(
            f"criterion={criterion!r} measures activations: pass sample data, "
            "data=x (or data=(x, y), required for 'taylor')."
        )
    if criterion == "taylor" and not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            "criterion='taylor' needs the loss gradient: pass data=(x, y)."
        )


# -- pure criteria on arrays ---------------------------------------------------


def _per_sample(values):
    values = np.asarray(values, dtype="float64")
    return values.reshape(values.shape[0], -1, values.shape[-1]).sum(axis=1)


def taylor_importance(activations, gradients):
    """`mean_n |sum_positions a * g|` per channel (last axis).

    Args:
        activations: `(N, ..., C)` activations.
        gradients: Gradients of the (per-batch mean) loss w.r.t. them.

    Returns:
        `(C,)` scores.
    """
    return np.abs(_per_sample(np.asarray(activations) * np.asarray(gradients))).mean(axis=0)


def mean_activation_importance(activations):
    """Mean absolute activation per channel (last axis)."""
    a = np.abs(np.asarray(activations, dtype="float64"))
    return a.reshape(-1, a.shape[-1]).mean(axis=0)


def apoz_importance(activations):
    """`1 - APoZ`: fraction of non-zero activations per channel (last axis)."""
    a = np.asarray(activations)
    return (a.reshape(-1, a.shape[-1]) != 0).mean(axis=0).astype("float64")


# -- criteria on a ChannelGraph ---------------------------------------------------


def output_kernel(layer):
    """The kernel of a producer, its output channels moved to the last axis.

    The axis comes from the layer's `CHANNEL_TABLE` rule (Conv2DTranspose
    kernels hold their output channels on axis -2).
    """
    from tfopt.pruning.channel_graph import rule_for

    _, rule = rule_for(layer)
    for attr, (_, out_axis, *_) in (rule.weights if rule and rule.weights else {}).items():
        if out_axis is not None and getattr(layer, attr, None) is not None:
            return np.moveaxis(np.asarray(getattr(layer, attr)), out_axis, -1)
    raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no output kernel to score.")


def head_weights(layer):
    """The weights of each attention head of a MultiHeadAttention layer.

    A head's weights are its slices of the query, key and value kernels and
    biases and of the output projection's kernel.

    Returns:
        A float64 array of shape `(n, num_heads)`: one column per head.
    """
    from tfopt.pruning.surgery import head_axes

    axes = head_axes(layer)
    columns = []
    for variable in layer.weights:
        if id(variable) in axes:
            value = np.moveaxis(np.asarray(variable, dtype="float64"), axes[id(variable)], -1)
            columns.append(value.reshape(-1, value.shape[-1]))
    return np.concatenate(columns, axis=0) if columns else np.zeros((0, layer.num_heads))


def head_norms(layer, order=1):
    """L1 / L2 norm of each attention head of a MultiHeadAttention layer.

    Returns:
        A float64 array of shape `(num_heads,)` (see `head_weights`).
    """
    return filter_norms(head_weights(layer), order)


def group_importance(graph, criterion, data=None, roots=None, batch_size=64):
    """Importance of every channel of the prunable groups of `graph`.

    Args:
        graph: A `ChannelGraph`.
        criterion: One of `CRITERIA`.
        data: `x` or `(x, y)` for the data criteria.
        roots: Group roots to score (default: every prunable group).
        batch_size: Batch size of the data passes.

    Returns:
        `{group_root: (size,) float64 scores}`.
    """
    validate_criterion(criterion, data)
    if roots is None:
        roots = [g.id for g in graph.prunable_groups()]
    roots = set(roots)
    if criterion in WEIGHT_SCORES:
        score = WEIGHT_SCORES[criterion]
        scores = {}
        model_layers = {layer.name: layer for layer in graph.functional.layers}
        for root in roots:
            group = graph.group(root)
            total = np.zeros(group.size)
            for name in group.producers:
                if group.kind == "heads":
                    total += score(head_weights(model_layers[name]))
                else:
                    # A producer split into sections (ops.split) scores
                    # channel i of the group as the sum over its sections.
                    total += score(output_kernel(model_layers[name])).reshape(-1, group.size).sum(axis=0)
            scores[root] = total
        return scores
    heads = {r for r in roots if graph.group(r).kind == "heads"}
    if heads and criterion != "taylor":
        names = [graph.group(r).name for r in heads]
        raise ValueError(
            f"criterion={criterion!r} measures channel activations; the attention heads of "
            f"{names} are scored by 'l1', 'l2' or 'taylor': use one of those, or leave "
            "those layers out (a dict of ratios or layers=[...])."
        )
    scores = _head_taylor(graph, data, heads, batch_size) if heads else {}
    if roots - heads:
        scores.update(_data_importance(graph, criterion, data, roots - heads, batch_size))
    return scores


def _head_taylor(graph, data, roots, batch_size):
    """First-order Taylor estimate of the loss change when a head is removed.

    Zeroing a head's value projection (kernel and bias slices) removes the
    head exactly, so the estimate is `|sum_w w * dL/dw|` over those slices,
    per batch, averaged over the batches (weighted by their size).
    """
    import tensorflow as tf  # the gradient tape: TF backend

    x, y = data
    x, y = np.asarray(x), np.asarray(y)
    model = graph.functional
    layers = {r: model.get_layer(graph.group(r).name) for r in roots}
    variables = []
    for layer in layers.values():
        variables += [v for v in (layer.value_dense.kernel, layer.value_dense.bias) if v is not None]
    loss_fn = _loss_for(graph.model, model, y)
    sums = {r: np.zeros(graph.group(r).size) for r in roots}
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(tf.convert_to_tensor(xb), training=False))
        grads = tape.gradient(loss, [v.value for v in variables], unconnected_gradients="zero")
        products = {id(v): np.asarray(v.numpy(), "float64") * np.asarray(g, "float64")
                    for v, g in zip(variables, grads)}
        for root, layer in layers.items():
            value = layer.value_dense
            per_head = products[id(value.kernel)].sum(axis=(0, 2))
            if value.bias is not None:
                per_head = per_head + products[id(value.bias)].sum(axis=1)
            sums[root] += np.abs(per_head) * len(xb)
    return {root: total / len(x) for root, total in sums.items()}


def _data_importance(graph, criterion, data, roots, batch_size):
    import keras

    x, y = (data if isinstance(data, (tuple, list)) else (data, None))
    x = np.asarray(x)
    edges = [(t, layout) for _, t, layout in graph.edges
             if any(r in roots for r, *_ in graph.segment_slices(layout))]
    # One probe model returns every consumed tensor (deduplicated) and the
    # outputs, so gradients w.r.t. the tensors come from one pass.
    tensors, index = [], {}
    for tensor, _ in edges:
        if id(tensor) not in index:
            index[id(tensor)] = len(tensors)
            tensors.append(tensor)
    model = graph.functional
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, tensors + list(model.outputs))
    sums = {r: np.zeros(graph.group(r).size) for r in roots}
    counts = {r: 0.0 for r in roots}
    # The compile settings live on the user's model (a Sequential's
    # functional view is uncompiled).
    loss_fn = _loss_for(graph.model, model, y) if criterion == "taylor" else None
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        if criterion == "taylor":
            acts, grads = _activations_and_gradients(probe, len(tensors), loss_fn, xb,
                                                      np.asarray(y)[start:start + batch_size])
        else:
            acts = [np.asarray(a) for a in probe(xb, training=False)[:len(tensors)]]
        per_batch = {r: np.zeros((len(xb), graph.group(r).size)) for r in roots}
        for tensor, layout in edges:
            a = acts[index[id(tensor)]]
            if criterion == "taylor":
                # The loss is a batch mean: scale back to per-example terms.
                values = _per_sample(a * grads[index[id(tensor)]]) * len(xb)
            elif criterion == "mean_activation":
                values = _per_sample(np.abs(a)) / _positions(a)
            else:
                values = _per_sample(a != 0) / _positions(a)
            for root, starts, size, mult in graph.segment_slices(layout):
                if root not in roots:
                    continue
                for begin in starts:
                    # A channel spanning `mult` positions (after a depthwise
                    # multiplier) sums them.
                    block = values[:, begin:begin + size * mult]
                    per_batch[root] += block.reshape(len(block), size, mult).sum(axis=2)
                if criterion != "taylor" and start == 0:
                    counts[root] += len(starts)
        for root in roots:
            if criterion == "taylor":
                sums[root] += np.abs(per_batch[root]).sum(axis=0)
            else:
                sums[root] += per_batch[root].sum(axis=0)
    n = len(x)
    result = {}
    for root in roots:
        denominator = n if criterion == "taylor" else n * max(counts[root], 1.0)
        result[root] = sums[root] / denominator
    return result


def _positions(a):
    return float(np.prod(a.shape[1:-1])) if a.ndim > 2 else 1.0


def _activations_and_gradients(probe, count, loss_fn, xb, yb):
    import tensorflow as tf  # the gradient tape: TF backend

    with tf.GradientTape() as tape:
        outputs = probe(tf.convert_to_tensor(xb), training=False)
        acts = outputs[:count]
        for a in acts:
            tape.watch(a)
        loss = loss_fn(yb, outputs[count])
    grads = tape.gradient(loss, acts, unconnected_gradients="zero")
    return [np.asarray(a) for a in acts], [np.asarray(g) for g in grads]


def _loss_for(user_model, model, y):
    """The batch-mean loss the Taylor criterion differentiates."""
    import keras

    if getattr(user_model, "compiled", False) and isinstance(user_model.loss, (str, keras.losses.Loss)):
        loss = keras.losses.get(user_model.loss)
        if isinstance(loss, keras.losses.Loss):
            return loss  # reduces to the batch mean
        # A loss function gives per-example values: take their mean.
        return lambda y_true, y_pred: keras.ops.mean(loss(y_true, y_pred))
    y = np.asarray(y)
    from tfopt import _compat

    last = _compat.producer(model.outputs[0])
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    from_logits = activation != "softmax"
    if y.ndim == 1 or y.shape[-1] == 1:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
