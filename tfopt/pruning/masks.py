"""Pure mask math: which weights to zero, given magnitudes and a sparsity.

Every function takes tensors and returns tensors built with `keras.ops`, so
they run inside a compiled train step (and under XLA: all shapes are
static). Nothing here owns state; the wrapper decides when to call them.

Selection is exact: `magnitude_mask` zeros exactly
`n - round(n * (1 - sparsity))` elements (tfmot's rounding), ties broken by
position. The k-th smallest magnitude is found by a radix select on the
float32 bit pattern (three histogram passes) instead of a full sort, because
TensorFlow's CPU sort costs ~10 ms for 80k weights and would dominate a
small model's train step. `magnitude_mask_near` gives the same masks starting
from the previous threshold (one histogram pass in the usual case); the
wrapper uses it, XLA-compiled, for large weights. `grow_mask` (TensorFlow
outside XLA only: data-dependent shapes) gives them again, cheaper, when the
mask only grows by the few weights near the previous threshold.
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


# Up to this many elements one sort ranks faster than the radix select, whose
# three histogram passes (2048 + 1024 + 1024 buckets) cost about the same at
# any small size. Per weight, in a graph of 50 such updates, on the 2-core
# Xeon at load 11-14: 72 elements 0.08 vs 0.32 ms, 576: 0.17-0.34 vs
# 0.48-0.56 ms, 1024: 0.26 vs 0.35 ms, 2048: 0.62 vs 0.53 ms (radix ahead).
SORT_MAX_SIZE = 1024


def magnitude_mask_sorted(magnitudes, sparsity):
    """`magnitude_mask` by one sort: the same mask and threshold.

    Ranks the elements by (magnitude, position) with one `argsort` of a
    unique int64 key, so ties are broken by position as in
    `magnitude_mask`. Faster than the radix select for small tensors (up to
    `SORT_MAX_SIZE` elements); its cost grows as n log n.

    Args:
        magnitudes: Non-negative tensor of any shape.
        sparsity: Scalar in [0, 1).

    Returns:
        `(mask, threshold)` as in `magnitude_mask`.
    """
    flat = ops.reshape(ops.cast(magnitudes, "float32"), (-1,))
    size = flat.shape[0]
    k = num_to_prune(size, sparsity)
    positions = ops.arange(size, dtype="int32")
    # The bit pattern orders like the value for x >= 0; the position makes
    # every key unique.
    bits = ops.cast(ops.view(flat, "int32"), "int64")
    order = ops.cast(ops.argsort(bits * size + ops.cast(positions, "int64")), "int32")
    rank = ops.scatter(order[:, None], positions, (size,))
    mask = ops.reshape(ops.cast(rank >= k, "float32"), ops.shape(magnitudes))
    kth = ops.take(flat, ops.take(order, ops.maximum(k - 1, 0)))
    return mask, ops.where(k > 0, kth, 0.0)


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


def block_mask(magnitudes, sparsity, block_size, pooling="AVG", previous_threshold=None):
    """Mask that zeros whole `block_size` blocks of the 2-D weight view.

    Blocks are ranked by their pooled magnitude (`"AVG"` or `"MAX"`); the
    weakest `sparsity` fraction of blocks is zeroed: exact in whole blocks,
    so element sparsity is rounded to a block. Call `check_block_size` first.
    With `previous_threshold` the blocks are selected by
    `magnitude_mask_near` (same result, faster during gradual pruning).

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
    if previous_threshold is None:
        block_keep, threshold = magnitude_mask(pooled, sparsity)
    else:
        block_keep, threshold = magnitude_mask_near(pooled, sparsity, previous_threshold)
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


def global_threshold_masks(magnitudes_list, sparsity, previous_threshold=None):
    """Masks for several tensors sharing one magnitude threshold.

    The smallest `sparsity` fraction of all elements together is zeroed, so
    the total sparsity is exact while each tensor's differs. With
    `previous_threshold` the selection is `magnitude_mask_near` (same
    result, faster during gradual pruning).

    Returns:
        `(masks, threshold)`: a list of masks and the shared threshold.
    """
    flats = [ops.reshape(ops.cast(m, "float32"), (-1,)) for m in magnitudes_list]
    joined = ops.concatenate(flats, axis=0)
    if previous_threshold is None:
        mask, threshold = magnitude_mask(joined, sparsity)
    else:
        mask, threshold = magnitude_mask_near(joined, sparsity, previous_threshold)
    masks, start = [], 0
    for flat, original in zip(flats, magnitudes_list):
        size = flat.shape[0]
        masks.append(ops.reshape(mask[start : start + size], ops.shape(original)))
        start += size
    return masks, threshold


# -- warm-started selection -------------------------------------------------
#
# During gradual pruning the threshold moves little between two updates, so
# instead of a three-pass radix select from scratch, the k-th smallest
# magnitude is located by one histogram pass around the previous threshold's
# bit pattern. The buckets are 1 ulp wide next to it and widen with the
# distance (2**_FINE_BITS buckets per octave of distance, like a float), so
# they cover every float32. Each bucket holds the count and the sum of its
# elements' bit patterns: when the k-th is alone in its bucket (the usual
# case, since buckets near the threshold are narrower than the gaps between
# neighbouring weights) the sum is its exact bit pattern. Otherwise each
# further pass splits its bucket into 2**_REFINE_BITS sub-buckets (at most
# two passes, more only for a bucket of equal values, which is exact once a
# bucket is 1 ulp wide).

_FINE_BITS = 10
_REFINE_BITS = 12
_HALF = (32 - _FINE_BITS) << _FINE_BITS  # bucket ids of one side
_BUCKETS = 2 * _HALF  # 45056 = 704 * 64
_REFINE_BUCKETS = (1 << _REFINE_BITS) + 64  # + below, above; a multiple of 64


def _log_bucket(distance):
    """Monotone bucket of a non-negative int32 distance, in [0, _HALF)."""
    # The floor of log2(distance) from the float32 exponent, corrected where
    # int -> float rounding went up to the next power of two.
    e = ops.right_shift(ops.view(ops.cast(distance, "float32"), "int32"), 23) - 127
    e = ops.minimum(e, 30)
    e = ops.where(ops.left_shift(1, ops.maximum(e, 0)) > distance, e - 1, e)
    shift = ops.maximum(e - _FINE_BITS, 0)
    return shift * (1 << _FINE_BITS) + ops.right_shift(distance, shift)


def _bucket_range(bucket, center):
    """`(lowest bit pattern, log2 width)` of a bucket of `_log_bucket` ids."""
    signed = bucket - _HALF
    p = ops.abs(signed)
    shift = ops.maximum(ops.right_shift(p, _FINE_BITS) - 1, 0)
    top = p - shift * (1 << _FINE_BITS)
    low = ops.where(
        signed >= 0,
        center + ops.left_shift(top, shift),
        center - ops.left_shift(top + 1, shift) + 1,
    )
    return low, shift


def _first_reaching(counts, k, rows):
    """`(i, before, through)`: first bucket whose cumulative count >= k.

    `before`/`through` are the cumulative counts before and through bucket
    `i`. A two-level scan (rows, then one row), so no long cumsum is needed.
    Assumes `sum(counts) >= k >= 1`.
    """
    table = ops.reshape(counts, (rows, -1))
    row_cum = ops.cumsum(ops.sum(table, axis=1))
    row = ops.cast(ops.argmax(ops.cast(row_cum >= k, "int32")), "int32")
    row_before = ops.where(row > 0, ops.take(row_cum, ops.maximum(row - 1, 0)), 0)
    cum = ops.cumsum(ops.take(table, row, axis=0)) + row_before
    col = ops.cast(ops.argmax(ops.cast(cum >= k, "int32")), "int32")
    before = ops.where(col > 0, ops.take(cum, ops.maximum(col - 1, 0)), row_before)
    index = row * table.shape[1] + col
    return index, before, ops.take(cum, col)


def _locate_kth(bits, k, center):
    """A bit-pattern range `[low, high]` that pins the k-th smallest (k >= 1).

    Returns `(low, high, before, count)`: the k-th smallest of the
    non-negative float32 bit patterns `bits` lies in `[low, high]`, which
    holds `count` elements (`before` are below it), and either `count == 1`
    or `low == high`. Exact for any `center` in [0, 0x7F800000]; one pass
    over `bits` when the answer is near `center`.
    """
    d = bits - center
    distance = _log_bucket(ops.abs(d))
    ids = ops.where(d >= 0, distance, -distance) + _HALF
    counts = ops.segment_sum(ops.ones_like(bits), ids, num_segments=_BUCKETS)
    bucket, before, _ = _first_reaching(counts, k, 64)
    low, shift = _bucket_range(bucket, center)
    count = ops.take(counts, bucket)

    def refine(low, shift, before, count):
        # Split [low, low + 2**shift) into 2**step sub-buckets, plus one
        # for everything below (id 0) and one for everything above.
        low = ops.maximum(low, 0)  # no bit pattern is negative
        step = ops.minimum(shift, _REFINE_BITS)
        sub = shift - step
        ids = ops.clip(ops.right_shift(bits - low, sub), -1, ops.left_shift(1, step)) + 1
        counts = ops.segment_sum(ops.ones_like(bits), ids, num_segments=_REFINE_BUCKETS)
        bucket, before, _ = _first_reaching(counts, k, 64)
        return low + ops.left_shift(bucket - 1, sub), sub, before, ops.take(counts, bucket)

    low, shift, before, count = ops.while_loop(
        lambda low, shift, before, count: ops.logical_and(count > 1, shift > 0),
        refine,
        (low, shift, before, count),
    )
    high = low + (ops.left_shift(1, shift) - 1)
    return low, high, before, count


def magnitude_mask_near(magnitudes, sparsity, previous_threshold):
    """`magnitude_mask`, warm-started from the previous threshold.

    Gives exactly the mask and threshold of `magnitude_mask` (the same
    `n - round(n * (1 - sparsity))` elements pruned, ties broken by
    position) for any `previous_threshold`; it is faster when the new
    threshold is close to it, as between two steps of gradual pruning:
    then one histogram pass over the magnitudes usually finds it (up to
    three when the weights near the threshold are dense), and one more
    pass builds the mask.

    Args:
        magnitudes: Non-negative tensor of any shape.
        sparsity: Scalar in [0, 1).
        previous_threshold: Scalar, e.g. the threshold of the last update.

    Returns:
        `(mask, threshold)` as in `magnitude_mask`.
    """
    flat = ops.reshape(ops.cast(magnitudes, "float32"), (-1,))
    size = flat.shape[0]
    k = num_to_prune(size, sparsity)
    bits = ops.view(flat, "int32")
    center = ops.view(ops.cast(previous_threshold, "float32"), "int32")
    center = ops.clip(center, 0, 0x7F800000)  # a finite non-negative value
    none = ops.convert_to_tensor(-1, "int32")
    low, high, before, count = ops.cond(
        k > 0,
        lambda: _locate_kth(bits, k, center),
        lambda: (none, none, ops.zeros((), "int32"), ops.zeros((), "int32")),
    )
    # Prune everything below `low`, and in [low, high] the first `k - before`
    # by position: all of it, except for ties (`low == high`, more equal
    # values than room), where `last` is the position of the last pruned one.
    cut = k - before
    positions = ops.arange(size, dtype="int32")

    def last_tied():
        tied = ops.cast(ops.equal(bits, low), "int32")
        return ops.cast(ops.argmax(ops.cast(ops.cumsum(tied) >= cut, "int32")), "int32")

    last = ops.cond(cut < count, last_tied, lambda: ops.convert_to_tensor(size, "int32"))
    inside = ops.logical_and(bits >= low, bits <= high)
    pruned = ops.logical_or(bits < low, ops.logical_and(inside, positions <= last))
    mask = ops.reshape(1.0 - ops.cast(pruned, "float32"), ops.shape(magnitudes))
    # The k-th itself: the largest pruned value, in [low, high].
    kth = ops.max(ops.where(inside, bits, -1))
    threshold = ops.where(k > 0, ops.view(ops.maximum(kth, 0), "float32"), 0.0)
    return mask, threshold


def update_mask(weight, mask, sparsity, previous_threshold, block_size=(1, 1), pooling="AVG"):
    """One warm-started magnitude-mask update of a weight (no N:M).

    The magnitudes are those of the masked weight, so pruned weights stay
    pruned while sparsity grows. Same result as `magnitude_mask` (or
    `block_mask`) of `abs(weight * mask)`; written as one function so that
    the caller can compile it whole (XLA fuses the passes over the weight).

    Args:
        weight: The raw weight tensor.
        mask: Its current mask (0 or 1, same shape).
        sparsity: Scalar in [0, 1).
        previous_threshold: The threshold of the last update (any value is
            correct; a close one is fast).
        block_size: `(rows, cols)`; `(1, 1)` prunes single weights.
        pooling: `"AVG"` or `"MAX"`, for blocks.

    Returns:
        `(mask, threshold)`.
    """
    magnitudes = ops.abs(ops.cast(weight, "float32") * ops.cast(mask, "float32"))
    if tuple(block_size) != (1, 1):
        return block_mask(magnitudes, sparsity, block_size, pooling, previous_threshold)
    return magnitude_mask_near(magnitudes, sparsity, previous_threshold)


# -- growing a mask by the few weights that cross the threshold -------------
#
# Between two updates of gradual pruning the mask usually only grows: the
# new pruned set is the old one plus the `delta = k - zeros` smallest kept
# weights. Those lie at or just above the previous threshold (the kept
# weights that moved below it since the last update, and the next ones up),
# so they are found among that small candidate set (tens to thousands)
# instead of in a histogram of every weight. The candidates have a
# data-dependent count, so this path needs TensorFlow's own kernels (no XLA,
# no JAX jit); the wrapper uses it on the TensorFlow backend outside XLA and
# falls back to `update_mask` whenever its preconditions do not hold.

# At most this many candidates (or this fraction of the elements) are ranked
# by `top_k`; beyond that the histogram pass is cheaper.
_GROW_MAX_CANDIDATES = 1 << 15
_GROW_MAX_FRACTION = 8


def grow_mask_candidates(weight, mask, sparsity, previous_threshold):
    """The candidates of `grow_mask`: one pass over the weight.

    Args:
        weight: The raw weight tensor.
        mask: Its current mask (0 or 1, same shape).
        sparsity: Scalar in [0, 1), the target of this update.
        previous_threshold: The threshold of the last update.

    Returns:
        `(ok, delta, index, values)`: whether the grown mask is exact
        (sparsity did not fall below the mask's zeros, at least `delta`
        candidates, not too many, and no kept weight is exactly zero, which
        would tie with the pruned zeros), how many weights to prune now,
        and the flat positions and magnitudes of the candidates (the kept
        weights up to a bound just above `previous_threshold`), in position
        order. Every kept weight outside them is larger than all of them.
    """
    flat = ops.reshape(ops.cast(weight, "float32"), (-1,))
    keep = ops.reshape(ops.cast(mask, "float32"), (-1,))
    size = flat.shape[0]
    k = num_to_prune(size, sparsity)
    if size < (1 << 24):  # a float32 sum of 0/1 values is exact below 2**24
        kept = ops.cast(ops.sum(keep), "int32")
    else:
        kept = ops.sum(ops.cast(keep > 0, "int32"))
    zeros = size - kept
    delta = k - zeros
    # Candidates: the kept weights up to a bound a little above the previous
    # threshold, widened so that about 8 * (delta + 32) more are expected
    # there than below it (density ~ zeros / threshold near a small
    # threshold): enough even when the threshold moves up between updates.
    widen = 8.0 * ops.cast(ops.maximum(delta, 0) + 32, "float32") / ops.cast(
        ops.maximum(zeros, 1), "float32"
    )
    bound = ops.cast(previous_threshold, "float32") * (1.0 + widen)
    magnitude = ops.abs(flat)
    candidate = ops.logical_and(keep > 0, magnitude <= bound)
    (index,) = ops.nonzero(candidate)
    values = ops.take(magnitude, index)
    count = ops.shape(values)[0]
    limit = min(_GROW_MAX_CANDIDATES, max(size // _GROW_MAX_FRACTION, 1))
    ok = ops.logical_and(
        ops.logical_and(delta >= 0, count >= delta),
        ops.logical_and(count <= limit, ops.logical_not(ops.any(ops.equal(values, 0.0)))),
    )
    return ok, delta, index, values


def grow_mask(mask, delta, index, values):
    """Prunes the `delta` smallest candidates (ties by position).

    Args:
        mask: The current mask.
        delta, index, values: From `grow_mask_candidates`, when its `ok`
            is true.

    Returns:
        `(mask, threshold)`, exactly those of `update_mask` for the same
        step.

    Example:

    ```python
    ok, delta, index, values = grow_mask_candidates(w, mask, 0.5, threshold)
    if ok:
        mask, threshold = grow_mask(mask, delta, index, values)
    ```
    """
    shape = ops.shape(mask)
    flat = ops.reshape(ops.cast(mask, "float32"), (-1,))

    def grow():
        # top_k of the negated magnitudes: the smallest first, and equal
        # ones in position order (the candidates are in position order).
        smallest, order = ops.top_k(-values, delta)
        pruned = ops.take(index, order)[:, None]
        grown = ops.scatter_update(flat, pruned, ops.zeros_like(smallest))
        return grown, -smallest[delta - 1]

    def same():
        return flat, ops.zeros((), "float32")

    grown, threshold = ops.cond(delta > 0, grow, same)
    # delta == 0: the k-th smallest magnitude is one of the pruned zeros.
    return ops.reshape(grown, shape), threshold
