"""One place per decision: the pruning parameters, the stored schedule, the
Keras private APIs, the lazy search stack, and the README's extension examples."""

import pathlib
import re
import keras
import numpy as np
import pytest

from tfopt import pruning
from tfopt.pruning import channel_mask
from tfopt.pruning import importance
from tfopt.pruning import registry
from tfopt.pruning import schedules
from tfopt.pruning import structured
from tfopt.pruning.params import PruningParams

ROOT = pathlib.Path(__file__).resolve().parents[2]
L = keras.layers


# -- validated parameters ---------------------------------------------------------


def test_pruning_params_normalise_and_freeze():
    params = PruningParams(block_size=[1, 4], sparsity_m_by_n=None)
    assert params.block_size == (1, 4) and params.scope == "layer"
    with pytest.raises(AttributeError):
        params.scope = "global"  # frozen
    dense = L.Dense(8)
    dense.build((None, 6))
    with pytest.raises(ValueError, match="block_size"):
        PruningParams(block_size=(1, 5)).check_weights(dense, [dense.kernel])
    with pytest.raises(ValueError, match="sparsity_m_by_n"):
        PruningParams(sparsity_m_by_n=(2, 4)).check_weights(L.BatchNormalization(), [dense.kernel])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"scope": "everywhere"}, ValueError, "scope="),
    ({"scope": "global", "block_size": (2, 2)}, ValueError, "scope='global'"),
    ({"block_size": (0, 1)}, ValueError, "block_size="),
    ({"sparsity_m_by_n": (4, 4)}, ValueError, "sparsity_m_by_n="),
    ({"block_pooling_type": "MEAN"}, ValueError, "block_pooling_type="),
    ({"pruning_schedule": 0.5}, TypeError, "pruning_schedule must be"),
])
def test_one_validation_for_model_and_layer(kwargs, error, match):
    model = keras.Sequential([keras.Input((4,)), L.Dense(8)])
    # The model API and the wrapper raise the same error from one check.
    with pytest.raises(error, match=match):
        PruningParams(**kwargs)
    with pytest.raises(error, match=match):
        pruning.prune_low_magnitude(model, **kwargs)
    with pytest.raises(error, match=match):
        pruning.PruneLowMagnitude(L.Dense(8), **kwargs)


def test_gradual_channel_pruning_checks_the_schedule_the_same_way():
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), L.Flatten(), L.Dense(10)])
    with pytest.raises(TypeError, match="pruning_schedule must be"):
        pruning.prune_channels_gradually(model, None)


# -- structured pruning: names, one stored schedule --------------------------------


def test_paired_names_and_old_aliases():
    assert pruning.strip_structured is pruning.strip_channels is structured.strip_channels
    assert pruning.prunable_layers is pruning.channel_groups is structured.prunable_layers
    assert "strip_channels" in pruning.__all__ and "channel_groups" in pruning.__all__


def test_schedule_is_stored_once_and_survives_save(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = L.Flatten()(L.Conv2D(4, 3)(x))
    model = keras.Model(inputs, L.Dense(10)(x))
    schedule = pruning.PolynomialDecay(0.0, 0.5, 0, 20, frequency=1)
    wrapped = pruning.prune_channels_gradually(model, schedule, criterion="l2")
    masks = channel_mask.channel_masks(wrapped)
    assert len(masks) >= 2
    holding = [m for m in masks if m.pruning_schedule is not None]
    assert len(holding) == 1 and holding[0].criterion == "l2"
    followers = [m for m in masks if m is not holding[0]]
    assert all(m.get_config()["pruning_schedule"] is None and m.criterion is None for m in followers)
    path = str(tmp_path / "masked.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    lead, loaded_schedule, criterion = channel_mask.channel_plan(channel_mask.channel_masks(loaded))
    assert lead.name == holding[0].name and criterion == "l2"
    assert loaded_schedule.get_config() == schedule.get_config()
    # A model saved when every mask held the schedule still loads and leads with the first.
    old = [channel_mask.ChannelMask(schedule, "l1", name=f"m{i}") for i in range(2)]
    assert channel_mask.channel_plan(old)[0] is old[0]


def test_update_tracker_catches_up_missed_steps():
    tracker = schedules.UpdateTracker(pruning.PolynomialDecay(0.0, 0.5, 2, 60, frequency=4))
    due = [tracker.due(step)[0] for step in (0, 1)]
    assert due == [False, False]
    assert tracker.due(4)[0]           # step 2 (a pruning step) fell between calls
    assert not tracker.due(5)[0]
    assert tracker.due(6)[0]           # a pruning step itself


# -- Keras private APIs only through tfopt._compat ---------------------------------

# Files of other owners that still reach Keras/KerasTuner internals directly
# (listed for the integrator); everything else goes through tfopt/_compat.py.
_NOT_YET = set()


def test_keras_private_apis_only_in_compat():
    pattern = re.compile(r"from keras(_tuner)?\.src|import keras(_tuner)?\.src|\._keras_history|"
                         r"\._inbound_nodes|\._nodes_by_depth|\._run_through_graph|\._flatten_layers|"
                         r"\._distribute_strategy|\"_distribute_strategy\"|\"_keras_history\"|\._symbolic_build|\._maybe_symbolic_build|"
                         r"\._in_multi_worker_mode")
    offenders = []
    for path in sorted((ROOT / "tfopt").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name == "tfopt/_compat.py" or name in _NOT_YET:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _module_level_imports(path):
    """Modules imported when `path` is imported (not those inside functions)."""
    import ast

    names = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                names.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names.append(child.module)
                names.extend(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def _file_of(module):
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_importing_pruning_does_not_load_the_search_stack(tmp_path):
    # `import tfopt` registers the layers of these subpackages when Keras
    # loads; none of them (nor `tfopt.pruning`) may reach keras_tuner at
    # import time. Checked statically over module-level imports: a check by
    # subprocess costs a TensorFlow import (~10-30 s on 2 busy cores).
    import tfopt

    roots = ["tfopt", "tfopt.pruning"] + [f"tfopt.{name}" for name in tfopt._REGISTERING]
    seen, stack, reached = set(), list(roots), set()
    while stack:
        module = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        reached.add(module.split(".")[0] if not module.startswith("tfopt") else module)
        parts = module.split(".")
        # Importing a.b.c imports a and a.b first.
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = _file_of(module) if module.startswith("tfopt") else None
        if path is not None:
            stack.extend(_module_level_imports(path))
    assert "tfopt.pruning.params" in reached and "tfopt.pruning.channel_gradual" in reached
    assert "keras_tuner" not in reached
    assert not [m for m in reached if m.startswith("tfopt.tuning")]
    # The check sees module-level imports (in try/if/class too), not those in functions.
    sample = tmp_path / "sample.py"
    sample.write_text("try:\n    from keras_tuner.src import engine\nexcept ImportError:\n    pass\n"
                      "def later():\n    import tfopt.tuning\n", encoding="utf-8")
    assert _module_level_imports(sample) == ["keras_tuner.src", "keras_tuner.src.engine"]


# -- the README's "How to extend tfopt" examples run as written ---------------------


def _readme_example(name):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- extend-example: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert match, f"README example {name!r} not found"
    return match.group(1)


def test_readme_layer_table_example_runs():
    before = dict(registry.PRUNE_TABLE)
    try:
        exec(compile(_readme_example("layer-table"), "README:layer-table", "exec"), {})  # noqa: S102
        assert len(registry.PRUNE_TABLE) == len(before) + 1
    finally:
        registry.PRUNE_TABLE.clear()
        registry.PRUNE_TABLE.update(before)


def test_readme_criterion_example_runs():
    before = dict(importance.WEIGHT_SCORES)
    try:
        exec(compile(_readme_example("criterion"), "README:criterion", "exec"), {})  # noqa: S102
        kernel = np.array([[1.0, -3.0], [2.0, 0.5]])
        np.testing.assert_allclose(importance.WEIGHT_SCORES["max_abs"](kernel), [2.0, 3.0])
        assert "max_abs" in importance.criteria()
    finally:
        importance.WEIGHT_SCORES.clear()
        importance.WEIGHT_SCORES.update(before)
