"""Pure mask math: which weights to zero, given magnitudes and a sparsity.

Every function takes tensors and returns tensors built with `keras.ops`, so
they run inside a compiled train step (and under XLA: all shapes are
static). Nothing here owns state; the wrapper decides when to call them.

Selection is exact: `magnitude_mask` zeros exactly
`n - round(n * (1 - sparsity))` elements (tfmot's rounding), ties broken by
position. The k-th smallest magnitude is found by a radix select on the
float32 bit pattern (three histogram passes) instead of a full sort, because
TensorFlow's CPU sort costs ~10 ms for 80k weights and would dominate a
small model's train step.
"""

from keras import ops

# Radix digits (in bits) of a non-negative float32's 31 significant bits.
_RADIX_DIGITS = (11, 10, 10)


def num_to_prune(num_elements, sparsity):
    """Number of elements to zero: `n - round(n * (1 - sparsity))`."""
    n = ops.cast(num_elements, "float32")
    keep = ops.round(n * (1.0 - ops.cast(sparsity, "float32")))
    return ops.cast(n - keep, "int32")


def kth_smallest(values, k):
    """The k-th smallest (1-based) of a flat non-negative float32 tensor.

    Exact for any k in [1, size]; k = 0 gives 0.0. A radix select over
    the IEEE-754 bit pattern, which orders like the value for x >= 0.
    """
    bits = ops.view(ops.cast(values, "float32"), "int32")
    k = ops.cast(k, "int32")
    prefix = ops.zeros((), "int32")
    before = ops.zeros((), "int32")  # elements with a smaller prefix
    in_bucket = None
    shift = 31
    for width in _RADIX_DIGITS:
        shift -= width
        digit = ops.bitwise_and(ops.right_shift(bits, shift), (1 << width) - 1)
        ones = ops.ones_like(digit) if in_bucket is None else ops.cast(in_bucket, "int32")
        # A segment sum with a static number of buckets is a histogram that
        # XLA can compile (ops.bincount sizes its output from the data).
        counts = ops.segment_sum(ones, digit, num_segments=1 << width)
        cumulative = ops.cumsum(counts) + before
        bucket = ops.cast(ops.argmax(ops.cast(cumulative >= k, "int32")), "int32")
        before = ops.where(
            bucket > 0, ops.take(cumulative, ops.maximum(bucket - 1, 0)), before
        )
        prefix = prefix * (1 << width) + bucket
        in_bucket = ops.equal(ops.right_shift(bits, shift), prefix)
    return ops.view(prefix, "float32")


def magnitude_mask(magnitudes, sparsity):
    """Mask zeroing the smallest `sparsity` fraction of `magnitudes`.

    Args:
        magnitudes: Non-negative tensor of any shape (e.g. `abs(weights)`).
        sparsity: Scalar in [0, 1).

    Returns:
        `(mask, threshold)`: a float32 mask of the same shape (0 = pruned)
        and the largest pruned magnitude (0.0 when nothing is pruned).
    """
    flat = ops.reshape(ops.cast(magnitudes, "float32"), (-1,))
    k = num_to_prune(flat.shape[0], sparsity)
    threshold = kth_smallest(flat, k)
    below = flat < threshold
    # Ties at the threshold: prune the first ones by position, so exactly
    # k elements are pruned even when many magnitudes are equal (e.g. zeros).
    tied = ops.cast(ops.equal(flat, threshold), "int32")
    room = k - ops.sum(ops.cast(below, "int32"))
    pruned = ops.logical_or(
        below, ops.logical_and(tied > 0, ops.cumsum(tied) <= room)
    )
    mask = ops.reshape(1.0 - ops.cast(pruned, "float32"), ops.shape(magnitudes))
    return mask, ops.where(k > 0, threshold, 0.0)


def as_matrix(weights):
    """Views a weight as 2-D `(prod(shape[:-1]), shape[-1])` (rank >= 2)."""
    shape = weights.shape
    rows = 1
    for dim in shape[:-1]:
        rows *= dim
    return ops.reshape(weights, (rows, shape[-1]))


def check_block_size(shape, block_size, name="weight"):
    """Raises ValueError unless `block_size` tiles the 2-D view of `shape`."""
    if len(shape) < 2 and tuple(block_size) != (1, 1):
        raise ValueError(
            f"block_size={tuple(block_size)} needs a weight of rank >= 2, "
            f"but {name} has shape {tuple(shape)}."
        )
    if len(shape) < 2:
        return
    rows = 1
    for dim in shape[:-1]:
        rows *= dim
    if rows % block_size[0] or shape[-1] % block_size[1]:
        raise ValueError(
            f"block_size={tuple(block_size)} does not tile {name}: its 2-D "
            f"view is ({rows}, {shape[-1]}) (all axes but the last flattened), "
            "and each dimension must be divisible by the block's. Choose a "
            "block size that divides it, or leave this layer unpruned."
        )


def block_mask(magnitudes, sparsity, block_size, pooling="AVG"):
    """Mask that zeros whole `block_size` blocks of the 2-D weight view.

    Blocks are ranked by their pooled magnitude (`"AVG"` or `"MAX"`); the
    weakest `sparsity` fraction of blocks is zeroed: exact in whole blocks,
    so element sparsity is rounded to a block. Call `check_block_size` first.

    Returns:
        `(mask, threshold)` as in `magnitude_mask`, the threshold being a
        pooled block magnitude.
    """
    rows_b, cols_b = block_size
    matrix = as_matrix(ops.cast(magnitudes, "float32"))
    rows, cols = matrix.shape
    blocks = ops.reshape(matrix, (rows // rows_b, rows_b, cols // cols_b, cols_b))
    pool = ops.max if pooling == "MAX" else ops.mean
    pooled = pool(blocks, axis=(1, 3))
    block_keep, threshold = magnitude_mask(pooled, sparsity)
    mask = ops.repeat(ops.repeat(block_keep, rows_b, axis=0), cols_b, axis=1)
    return ops.reshape(mask, ops.shape(magnitudes)), threshold


def check_m_by_n(shape, m_by_n, name="weight"):
    """Raises ValueError unless `m_by_n` can be applied to a weight shape."""
    zeros, group = m_by_n
    if len(shape) < 2:
        raise ValueError(
            f"sparsity_m_by_n={tuple(m_by_n)} groups weights along the "
            f"input-channel axis, which {name} (shape {tuple(shape)}) lacks."
        )
    if shape[-2] % group:
        raise ValueError(
            f"sparsity_m_by_n={tuple(m_by_n)} needs the input-channel axis of "
            f"{name} (shape {tuple(shape)}, axis -2 has {shape[-2]}) to be "
            f"divisible by {group}. Leave this layer unpruned (see the "
            "`layers` argument) or choose another pattern."
        )


def m_by_n_mask(magnitudes, m_by_n):
    """Mask with at least `m` zeros in every `n` consecutive input channels.

    `m_by_n=(2, 4)` is 2:4 sparsity: of every 4 consecutive weights along the
    input-channel axis (axis -2 of Keras kernels, the innermost axis of
    TFLite's layout) the 2 largest are kept. Ties are broken by position.
    Call `check_m_by_n` first.
    """
    zeros, group = m_by_n
    keep = group - zeros
    values = ops.cast(magnitudes, "float32")
    rank = len(values.shape)
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    moved = ops.transpose(values, perm)  # input channels innermost
    groups = ops.reshape(moved, (-1, group))
    # Rank of each element inside its group (0 = largest), by comparing every
    # pair: O(n^2) for n = 4 is a handful of elementwise ops, no sort.
    a = groups[:, :, None]
    b = groups[:, None, :]
    index = ops.arange(group)
    earlier = index[None, None, :] < index[None, :, None]
    beats = ops.logical_or(b > a, ops.logical_and(ops.equal(b, a), earlier))
    position = ops.sum(ops.cast(beats, "int32"), axis=-1)
    kept = ops.cast(position < keep, "float32")
    mask = ops.transpose(ops.reshape(kept, moved.shape), perm)
    return mask, ops.zeros((), "float32")


def global_threshold_masks(magnitudes_list, sparsity):
    """Masks for several tensors sharing one magnitude threshold.

    The smallest `sparsity` fraction of all elements together is zeroed, so
    the total sparsity is exact while each tensor's differs.

    Returns:
        `(masks, threshold)`: a list of masks and the shared threshold.
    """
    flats = [ops.reshape(ops.cast(m, "float32"), (-1,)) for m in magnitudes_list]
    joined = ops.concatenate(flats, axis=0)
    mask, threshold = magnitude_mask(joined, sparsity)
    masks, start = [], 0
    for flat, original in zip(flats, magnitudes_list):
        size = flat.shape[0]
        masks.append(ops.reshape(mask[start : start + size], ops.shape(original)))
        start += size
    return masks, threshold
