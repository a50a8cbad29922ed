import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tfopt.pruning import masks


def _kept_count(n, sparsity):
    return int(np.round(np.float32(n) * np.float32(1.0 - np.float32(sparsity))))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3000),
    sparsity=st.floats(0.0, 0.99),
    zeros=st.integers(0, 50),
    seed=st.integers(0, 2**16),
)
def test_magnitude_mask_prunes_exactly_k_smallest(n, sparsity, zeros, seed):
    rng = np.random.default_rng(seed)
    values = np.abs(rng.normal(size=n)).astype("float32")
    values[: min(zeros, n)] = 0.0
    mask, threshold = masks.magnitude_mask(values, sparsity)
    mask = np.asarray(mask)
    expected_pruned = n - _kept_count(n, sparsity)
    assert int((mask == 0).sum()) == expected_pruned
    if 0 < expected_pruned < n:
        assert values[mask == 0].max() <= values[mask == 1].min()
        assert float(threshold) == np.sort(values)[expected_pruned - 1]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2000), seed=st.integers(0, 2**16), data=st.data())
def test_kth_smallest_equals_numpy_sort(n, seed, data):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.integers(-8, 4)
    values = (np.abs(rng.normal(size=n)) * scale).astype("float32")
    k = data.draw(st.integers(1, n))
    assert float(masks.kth_smallest(values, k)) == np.sort(values)[k - 1]


def test_ties_are_broken_by_position():
    values = np.ones((4, 8), "float32")
    mask, _ = masks.magnitude_mask(values, 0.25)
    mask = np.asarray(mask).reshape(-1)
    assert (mask == 0).sum() == 8
    np.testing.assert_array_equal(mask[:8], 0)


def test_block_mask_zeros_whole_blocks_by_average():
    weights = np.zeros((4, 4), "float32")
    weights[:2, :2] = 1.0  # strongest block
    weights[2:, 2:] = 0.5
    weights[:2, 2:] = 0.1
    weights[2:, :2] = np.array([[0.9, 0.0], [0.0, 0.0]])  # avg 0.225, max 0.9
    avg, _ = masks.block_mask(weights, 0.5, (2, 2), "AVG")
    np.testing.assert_array_equal(np.asarray(avg), [[1, 1, 0, 0]] * 2 + [[0, 0, 1, 1]] * 2)
    mx, _ = masks.block_mask(weights, 0.5, (2, 2), "MAX")
    np.testing.assert_array_equal(np.asarray(mx), [[1, 1, 0, 0]] * 2 + [[1, 1, 0, 0]] * 2)


def test_block_mask_on_conv_kernel_uses_2d_view():
    rng = np.random.default_rng(0)
    kernel = np.abs(rng.normal(size=(3, 3, 4, 8))).astype("float32")
    mask, _ = masks.block_mask(kernel, 0.5, (4, 2), "AVG")
    view = np.asarray(mask).reshape(36, 8)
    blocks = view.reshape(9, 4, 4, 2)
    # Every block is all ones or all zeros, and half of them are zero.
    sums = blocks.sum(axis=(1, 3))
    assert set(np.unique(sums)) <= {0.0, 8.0}
    assert (sums == 0).sum() == 18


@pytest.mark.parametrize("m_by_n", [(2, 4), (1, 4), (3, 4), (1, 2)])
def test_m_by_n_mask_keeps_largest_in_each_input_channel_group(m_by_n):
    zeros, group = m_by_n
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 8, 5)).astype("float32")
    mask, _ = masks.m_by_n_mask(np.abs(kernel), m_by_n)
    mask = np.asarray(mask)
    groups = np.moveaxis(mask, 2, -1).reshape(-1, group)
    values = np.moveaxis(np.abs(kernel), 2, -1).reshape(-1, group)
    np.testing.assert_array_equal(groups.sum(-1), group - zeros)
    for row, kept in zip(values, groups):
        assert set(np.argsort(-row, kind="stable")[: group - zeros]) == set(np.flatnonzero(kept))


def test_m_by_n_on_dense_kernel_groups_input_axis():
    kernel = np.arange(8 * 3, dtype="float32").reshape(8, 3)  # (in, out)
    mask, _ = masks.m_by_n_mask(kernel, (2, 4))
    mask = np.asarray(mask)
    # Along the input axis the two largest of each group of 4 survive.
    np.testing.assert_array_equal(mask[:, 0], [0, 0, 1, 1, 0, 0, 1, 1])


def test_global_threshold_hits_total_sparsity_while_layers_differ():
    rng = np.random.default_rng(2)
    small = np.abs(rng.normal(size=(20, 10))).astype("float32") * 0.1
    large = np.abs(rng.normal(size=(300,))).astype("float32")
    result, threshold = masks.global_threshold_masks([small, large], 0.6)
    result = [np.asarray(m) for m in result]
    pruned = sum(int((m == 0).sum()) for m in result)
    assert pruned == 500 - _kept_count(500, 0.6)
    assert (result[0] == 0).mean() > 0.9 > (result[1] == 0).mean()
    everything = np.concatenate([small.ravel(), large])
    kept = np.concatenate([m.ravel() for m in result]) == 1
    assert everything[~kept].max() <= everything[kept].min()


@pytest.mark.parametrize(
    "shape, block, message",
    [((5, 4), (2, 2), "does not tile"), ((6,), (2, 1), "rank >= 2")],
)
def test_bad_block_sizes(shape, block, message):
    with pytest.raises(ValueError, match=message):
        masks.check_block_size(shape, block, "w")


def test_m_by_n_needs_divisible_input_channels():
    with pytest.raises(ValueError, match=r"axis -2 has 3\) to be divisible by 4"):
        masks.check_m_by_n((3, 3, 3, 8), (2, 4), "conv/kernel")


# -- warm-started selection (magnitude_mask_near / update_mask) ------------


def _reference(magnitudes, sparsity):
    """Exact numpy reference: the k smallest by (value, position) pruned."""
    flat = np.asarray(magnitudes, "float32").reshape(-1)
    k = flat.size - _kept_count(flat.size, sparsity)
    pruned = np.argsort(flat, kind="stable")[:k]
    mask = np.ones(flat.size, "float32")
    mask[pruned] = 0.0
    threshold = np.sort(flat)[k - 1] if k else np.float32(0.0)
    return mask.reshape(np.shape(magnitudes)), np.float32(threshold)


def _magnitudes(rng, n, kind):
    """n magnitudes at a random scale: normal, many zeros, ties or all equal."""
    values = (np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-6, 3)).astype("float32")
    if kind == "zeros":
        values[: rng.integers(0, n + 1)] = 0.0
    elif kind == "ties":
        values = np.round(values / values.max() * 4).astype("float32")
    elif kind == "equal":
        values[:] = 0.25
    return values


def _assert_same(result, expected):
    mask, threshold = result
    np.testing.assert_array_equal(np.asarray(mask), expected[0])
    assert np.float32(threshold) == expected[1]


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 3000),
    sparsity=st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.999]) | st.floats(0.0, 0.999),
    kind=st.sampled_from(["normal", "zeros", "ties", "equal"]),
    seed=st.integers(0, 2**16),
)
def test_magnitude_mask_near_is_exact_for_any_previous_threshold(n, sparsity, kind, seed):
    rng = np.random.default_rng(seed)
    values = _magnitudes(rng, n, kind)
    expected = _reference(values, sparsity)
    t = float(expected[1])
    for previous in (0.0, t, np.nextafter(t, 1, dtype="float32"), t * 1.001, t * 0.9,
                     t * 3.0, 1e30, float(rng.choice(values))):
        _assert_same(masks.magnitude_mask_near(values, sparsity, previous), expected)


@pytest.mark.parametrize("data", ["spread", "clustered"])
@pytest.mark.parametrize("distance", [0, 1, -1, 1023, -1024, 5000, -5000, 2**21, -(2**21),
                                      2**25, -(2**25), 2**30])
def test_locate_kth_for_any_distance_to_the_answer(distance, data):
    # The first pass's buckets widen with the distance from `center`; the
    # k-th is exact whether it is alone in its bucket or needs refining
    # passes (clustered: many values a few ulps apart, and repeated ones).
    rng = np.random.default_rng(abs(distance))
    if data == "spread":
        values = np.abs(rng.normal(size=4096)).astype("float32")
    else:
        base = np.float32(0.37).view("int32")
        values = (base + rng.integers(0, 600, size=4096)).astype("int32").view("float32")
    bits = values.view("int32")
    for k in (1, 17, 2048, 4096):
        kth = np.sort(bits)[k - 1]
        center = np.int32(min(max(int(kth) - distance, 0), 0x7F800000))
        low, high, before, count = (int(v) for v in masks._locate_kth(bits, k, center))
        assert low <= kth <= high
        assert before == int((bits < low).sum()) < k <= before + count
        assert count == int(((bits >= low) & (bits <= high)).sum())
        assert count == 1 or low == high


def _pruning_steps(shape, seed, steps=30):
    """Weights drifting step by step (small moves, jumps, ties, all equal)
    with a target sparsity that mostly grows, sometimes falls."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=shape).astype("float32") * 0.05
    for step in range(steps):
        if step == 10:
            weights = np.round(weights * 40) / 40  # many ties
        elif step == 20:
            weights = np.full(shape, 0.01, "float32")  # all equal
        elif step % 7 == 6:
            weights = weights * 1.7  # a large jump: radix fallback
        else:
            weights = weights + rng.normal(size=shape).astype("float32") * 1e-4
        sparsity = min(0.99, 0.04 * step) if step != 15 else 0.2  # falls once
        yield weights.astype("float32"), np.float32(sparsity if step != 25 else 0.0)


def test_compiled_update_matches_reference_over_consecutive_steps():
    from tfopt.pruning import wrapper

    update = wrapper._compiled_update()  # XLA-compiled, as in training
    mask = np.ones((40, 24), "float32")
    threshold = np.float32(0.0)
    for weights, sparsity in _pruning_steps((40, 24), seed=0):
        expected = _reference(np.abs(weights * mask), sparsity)
        result = update(weights, mask, sparsity, threshold, (1, 1), "AVG")
        _assert_same(result, expected)
        mask, threshold = np.asarray(result[0]), np.float32(result[1])


def test_compiled_block_update_matches_reference_over_consecutive_steps():
    from tfopt.pruning import wrapper

    update = wrapper._compiled_update()
    mask = np.ones((40, 24), "float32")
    threshold = np.float32(0.0)
    for weights, sparsity in _pruning_steps((40, 24), seed=1):
        pooled = np.abs(weights * mask).reshape(20, 2, 6, 4).max(axis=(1, 3))
        block_keep, block_threshold = _reference(pooled, sparsity)
        expected = (np.repeat(np.repeat(block_keep, 2, 0), 4, 1), block_threshold)
        result = update(weights, mask, sparsity, threshold, (2, 4), "MAX")
        _assert_same(result, expected)
        mask, threshold = np.asarray(result[0]), np.float32(result[1])


def test_compiled_global_masks_match_reference_over_consecutive_steps():
    from tfopt.pruning import wrapper

    select = wrapper.compiled_global_masks()
    masks_now = [np.ones((16, 12), "float32"), np.ones((50,), "float32")]
    threshold = np.float32(0.0)
    drift = zip(_pruning_steps((16, 12), seed=2), _pruning_steps((50,), seed=3))
    for (a, sparsity), (b, _) in drift:
        b = b * 3.0  # the second tensor has larger weights
        magnitudes = [np.abs(a * masks_now[0]), np.abs(b * masks_now[1])]
        joined, expected_threshold = _reference(
            np.concatenate([m.reshape(-1) for m in magnitudes]), sparsity
        )
        result, got_threshold = select(magnitudes, sparsity, threshold)
        np.testing.assert_array_equal(np.asarray(result[0]).reshape(-1), joined[:192])
        np.testing.assert_array_equal(np.asarray(result[1]), joined[192:])
        assert np.float32(got_threshold) == expected_threshold
        masks_now = [np.asarray(m) for m in result]
        threshold = np.float32(got_threshold)


# -- growing the mask from the previous threshold (masks.grow_mask) ---------


def _slow_steps(shape, seed, steps=36):
    """Gradual pruning as in training: small drifts and small sparsity
    steps (the grow path's case), with ties, exact zeros, all-equal
    weights, a jump, falling sparsity, sparsity 0 and near 1."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=shape).astype("float32") * 0.05
    for step in range(steps):
        if step == 8:
            weights = np.round(weights * 400) / 400  # ties, some exact zeros
        elif step == 20:
            weights = np.full(shape, 0.01, "float32")  # all equal
        elif step == 24:
            weights = weights * 0.5  # a jump: many candidates
        else:
            weights = weights + rng.normal(size=shape).astype("float32") * 1e-4
        sparsity = 0.3 + 0.003 * step
        if step == 14:
            sparsity = 0.2  # falls once
        elif step == 27:
            sparsity = 0.0
        elif step >= 32:
            sparsity = 0.99 + 0.002 * (step - 32)  # near 1
        yield weights.astype("float32"), np.float32(sparsity)


@pytest.mark.parametrize("seed", [4, 5])
def test_grow_or_update_matches_reference_over_consecutive_steps(seed):
    import tensorflow as tf

    from tfopt.pruning import wrapper

    update = tf.function(wrapper._grow_or_update)  # a graph, as in training
    mask = np.ones((64, 48), "float32")
    threshold = np.float32(0.0)
    grown = 0
    for weights, sparsity in _slow_steps((64, 48), seed):
        expected = _reference(np.abs(weights * mask), sparsity)
        grown += bool(masks.grow_mask_candidates(weights, mask, sparsity, threshold)[0])
        result = update(weights, mask, sparsity, threshold)
        _assert_same(result, expected)
        mask, threshold = np.asarray(result[0]), np.float32(result[1])
    assert grown >= 15  # most steps took the grow path, the others fell back


def test_grow_mask_breaks_ties_at_the_cut_by_position():
    rng = np.random.default_rng(0)
    weights = rng.uniform(1.0, 2.0, size=4096).astype("float32")
    weights[rng.choice(4096, 100, replace=False)] = -0.5  # 100 equal magnitudes
    mask = np.ones(4096, "float32")
    mask[np.argsort(np.abs(weights), kind="stable")[:1000]] = 0.0  # pruned, 0.5s included
    weights[mask == 0] = rng.uniform(0.0, 0.4, size=1000)  # drifted while pruned
    weights[np.flatnonzero(mask)[::37]] = 0.5  # kept ones joining the tie
    sparsity = np.float32(1050 / 4096)  # the cut falls among the 0.5s
    ok, delta, index, values = masks.grow_mask_candidates(weights, mask, sparsity, 0.45)
    assert bool(ok) and 0 < int(delta) == 50 < int((np.asarray(values) == 0.5).sum())
    _assert_same(masks.grow_mask(mask, delta, index, values),
                 _reference(np.abs(weights * mask), sparsity))


@pytest.mark.parametrize(
    "case", ["sparsity_falls", "kept_zero", "too_few_candidates", "too_many_candidates"]
)
def test_grow_mask_declines_where_it_would_be_wrong_or_slow(case):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=4096).astype("float32")
    mask, threshold = (np.asarray(v) for v in masks.magnitude_mask(np.abs(weights), 0.5))
    sparsity, previous = np.float32(0.501), threshold
    if case == "sparsity_falls":
        sparsity = np.float32(0.4)
    elif case == "kept_zero":  # a kept 0.0 ties with the pruned zeros
        weights[np.flatnonzero(mask)[0]] = 0.0
    elif case == "too_few_candidates":
        previous = np.float32(threshold * 0.5)  # far below the answer
    else:
        previous = np.float32(threshold * 4.0)  # most weights are candidates
    assert not bool(masks.grow_mask_candidates(weights, mask, sparsity, previous)[0])


# -- small weights: one sort ----------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 1024),
    sparsity=st.sampled_from([0.0, 0.5, 0.999, 0.9999999]) | st.floats(0.0, 0.9999999),
    kind=st.sampled_from(["normal", "zeros", "ties", "equal"]),
    seed=st.integers(0, 2**16),
)
def test_sorted_mask_equals_reference(n, sparsity, kind, seed):
    values = _magnitudes(np.random.default_rng(seed), n, kind)
    _assert_same(masks.magnitude_mask_sorted(values, sparsity), _reference(values, sparsity))


def test_sorted_mask_matches_reference_over_consecutive_steps():
    # As the wrapper uses it (masked magnitudes, in a graph): drifts, ties,
    # all equal, sparsity falling once and 0 once; a 4-D conv kernel.
    import tensorflow as tf

    update = tf.function(masks.magnitude_mask_sorted)
    shape = (3, 3, 8, 8)
    mask = np.ones(shape, "float32")
    for weights, sparsity in _pruning_steps(shape, seed=3):
        expected = _reference(np.abs(weights * mask), sparsity)
        result = update(np.abs(weights * mask), sparsity)
        _assert_same(result, expected)
        mask = np.asarray(result[0])
