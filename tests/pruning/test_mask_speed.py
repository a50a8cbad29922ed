"""The fast mask-update paths stay exact and compile where they must."""

import collections

import keras
import numpy as np
import tensorflow as tf

from tfopt import pruning
from tfopt.pruning import wrapper


def test_grow_path_is_used_outside_xla_only():
    # Recorded while tracing, under a private outer graph: TensorFlow marks
    # an XLA trace on the outer (default) graph, and the process-wide eager
    # one is shared with any thread tracing a jit_compile function at the
    # same moment (a flake of a loaded run).
    seen = {}

    def record(name):
        def function():
            seen[name] = wrapper._dynamic_shapes_allowed()
            return tf.constant(0)
        return function

    with tf.Graph().as_default():
        tf.function(record("graph")).get_concrete_function()
        tf.function(record("xla"), jit_compile=True).get_concrete_function()
    assert seen == {"graph": True, "xla": False}


def test_large_weight_update_compiles_in_an_xla_train_step(monkeypatch):
    # Every weight takes the large-weight path; under jit_compile=True it
    # must not trace the grow path's data-dependent shapes.
    monkeypatch.setattr(wrapper, "WARM_START_MIN_SIZE", 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(12), keras.layers.Dense(4)])
    model = pruning.prune_low_magnitude(
        model, pruning_schedule=pruning.PolynomialDecay(0.0, 0.6, 0, 9, frequency=1))
    model.compile("adam", "mse", jit_compile=True)
    rng = np.random.default_rng(0)
    model.fit(rng.random((80, 16)), rng.random((80, 4)), batch_size=8, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])
    for row in pruning.sparsity_report(model)["layers"]:
        assert row["zeros"] == row["size"] - round(row["size"] * 0.4), row


def test_grow_path_trains_exactly_like_radix_select(monkeypatch):
    # A 64x64 kernel on a slow ramp: most updates take the grow path (counted
    # by a variable that only its branch increments); masks and weights
    # equal those of the radix select.
    import tensorflow as tf

    from tfopt.pruning import masks

    rng = np.random.default_rng(0)
    x, y = rng.random((80, 64)).astype("float32"), rng.random((80, 4)).astype("float32")

    def train(min_size):
        monkeypatch.setattr(wrapper, "WARM_START_MIN_SIZE", min_size)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64), keras.layers.Dense(4)])
        model = pruning.prune_low_magnitude(
            model, pruning_schedule=pruning.PolynomialDecay(0.0, 0.5, 0, 300, frequency=1),
            layers=[model.layers[0].name])
        model.compile("adam", "mse")
        model.fit(x, y, batch_size=4, verbose=0, shuffle=False,
                  callbacks=[pruning.UpdatePruningStep()])
        masks_now = [m.numpy() for w in pruning.api.pruning_wrappers(model) for m in w.masks]
        return masks_now + model.get_weights()

    grown = tf.Variable(0)
    original = masks.grow_mask

    def counted(*args):
        with tf.control_dependencies([grown.assign_add(1)]):
            return tuple(tf.identity(t) for t in original(*args))

    monkeypatch.setattr(masks, "grow_mask", counted)
    grow = train(4096)
    assert int(grown.numpy()) >= 15  # of 20 updates
    for a, b in zip(grow, train(1 << 62)):
        np.testing.assert_array_equal(a, b)


def _train_step_graph(model):
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    step = tf.function(lambda x, y: model.train_step((x, y)))
    return step.get_concrete_function(
        tf.TensorSpec((4, 8)), tf.TensorSpec((4, 2))).graph


def _stack(schedules):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8,))]
        + [pruning.PruneLowMagnitude(keras.layers.Dense(8), pruning_schedule=s)
           for s in schedules]
        + [keras.layers.Dense(2)])


def test_wrappers_share_one_update_function_per_shape_and_schedule():
    # Five same-shape layers with equal schedules (distinct objects) call one
    # update function; the layer with another schedule calls its own. The
    # selection (segment sums of the radix select) and the cond are not in
    # the train step's own graph (about 250 ops per wrapper when they were).
    ramp = [pruning.PolynomialDecay(0.0, 0.5, 0, 10, frequency=1) for _ in range(5)]
    model = _stack(ramp + [pruning.ConstantSparsity(0.25, 0, frequency=1)])
    model.compile("adam", "mse")
    graph = _train_step_graph(model)
    calls = [op.get_attr("f").name for op in graph.get_operations()
             if op.type in ("PartitionedCall", "StatefulPartitionedCall")]
    assert sorted(collections.Counter(calls).values()) == [1, 5], calls
    types = {op.type for op in graph.get_operations()}
    assert "UnsortedSegmentSum" not in types and "If" not in types and "StatelessIf" not in types

    # Each layer follows its own schedule (the sharing did not mix them up).
    rng = np.random.default_rng(0)
    model.fit(rng.random((48, 8)), rng.random((48, 2)), batch_size=4, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])
    zeros = [row["zeros"] for row in pruning.sparsity_report(model)["layers"]][:6]
    assert zeros == [32] * 5 + [16], zeros


def test_shared_update_trains_exactly_like_the_inline_update(monkeypatch):
    # The shared function (with the sort for small weights) trains exactly
    # like main's update (inline in every wrapper, radix select): masks,
    # thresholds and weights after a ramp are equal element for element.
    from tfopt.pruning import masks

    rng = np.random.default_rng(1)
    x, y = rng.random((48, 8)).astype("float32"), rng.random((48, 2)).astype("float32")
    sort_max = masks.SORT_MAX_SIZE

    def train(inline):
        monkeypatch.setattr(wrapper, "_INLINE_UPDATES", inline)
        monkeypatch.setattr(masks, "SORT_MAX_SIZE", 0 if inline else sort_max)
        model = _stack([pruning.PolynomialDecay(0.0, 0.7, 0, 10, frequency=1)
                        for _ in range(3)])
        model.compile("adam", "mse")
        model.fit(x, y, batch_size=4, verbose=0, shuffle=False,
                  callbacks=[pruning.UpdatePruningStep()])
        state = [v.numpy() for w in pruning.api.pruning_wrappers(model)
                 for v in (*w.masks, *w.thresholds)]
        return state + model.get_weights()

    shared, inline = train(False), train(True)
    assert float(np.mean(shared[0] == 0)) > 0.6
    for a, b in zip(shared, inline):
        np.testing.assert_array_equal(a, b)


class _PythonIfSchedule(pruning.PruningSchedule):
    """0.25 before step 4, then 0.5: Python `if` on the step tensor."""

    def __call__(self, step):
        if step < 4:  # AutoGraph turns this into a cond
            sparsity = 0.25
        else:
            sparsity = 0.5
        return tf.constant(True), tf.cast(sparsity, tf.float32)

    def get_config(self):
        return {}

    def end_sparsity(self):
        return 0.5


def test_a_users_schedule_keeps_autograph_in_the_shared_update():
    model = _stack([_PythonIfSchedule(), _PythonIfSchedule()])
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    fit = dict(batch_size=4, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    model.fit(rng.random((8, 8)), rng.random((8, 2)), **fit)  # steps 0-1
    assert [r["zeros"] for r in pruning.sparsity_report(model)["layers"]][:2] == [16, 16]
    model.fit(rng.random((16, 8)), rng.random((16, 2)), **fit)  # steps 2-5
    assert [r["zeros"] for r in pruning.sparsity_report(model)["layers"]][:2] == [32, 32]


def test_shared_update_cache_is_bounded_and_evicted_models_keep_training(monkeypatch):
    # Each user schedule object gets its own shared function; a long process
    # (a search) must not keep them all. An evicted function's model keeps
    # its traced copy and still prunes on schedule.
    monkeypatch.setattr(wrapper, "_SHARED", collections.OrderedDict())
    monkeypatch.setattr(wrapper, "_SHARED_MAX", 2)
    rng = np.random.default_rng(0)
    fit = dict(batch_size=4, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    models = []
    for _ in range(3):
        model = _stack([_PythonIfSchedule()])
        model.compile("adam", "mse")
        model.fit(rng.random((8, 8)), rng.random((8, 2)), **fit)  # steps 0-1: 0.25
        models.append(model)
        assert len(wrapper._SHARED) <= 2
    first = models[0]  # its function was evicted by the third model's
    first.fit(rng.random((16, 8)), rng.random((16, 2)), **fit)  # steps 2-5: 0.5 from step 4
    assert pruning.sparsity_report(first)["layers"][0]["zeros"] == 32
