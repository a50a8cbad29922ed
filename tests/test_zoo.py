"""The zoo builders and tasks (the smallest ones; the full zoo is the benchmark)."""

import keras
import numpy as np
import pytest

from tfopt import zoo
from tfopt.bench import suites


@pytest.mark.parametrize("name", ["kws_conv1d", "unet", "detection_head"])
def test_zoo_model_builds_and_trains_on_its_task(name):
    model = zoo.build(name)
    again = zoo.build(name)  # same seed, same initial weights
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    (x, y), (x_test, y_test) = zoo.task(name, n_train=32, n_test=8)
    assert model.input_shape[1:] == x.shape[1:]
    outputs = model.outputs
    labels = y if isinstance(y, tuple) else (y,)
    assert len(outputs) == len(labels)
    # Class/mask logits: one per label position; boxes: 4 numbers in [0, 1].
    assert tuple(outputs[0].shape[1:-1]) == labels[0].shape[1:]
    assert labels[0].min() >= 0 and labels[0].max() < outputs[0].shape[-1]
    history = zoo.compile_model(model).fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_vit_with_position_embedding_saves_and_loads(tmp_path):
    model = zoo.build("vit_tiny")
    path = str(tmp_path / "vit.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = zoo.task("vit_tiny", n_train=4, n_test=4)[0][0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_zoo_suite_lists_every_model_and_refuses_unknown_names():
    from tfopt.bench import zoo_suite

    cases = suites.get_suite("zoo")
    assert [case.name for case in cases] == zoo.names()
    assert len(zoo.names()) == 16
    recipes = [recipe.name for recipe in cases[0].recipes]
    assert recipes[:3] == ["float", "ptq-int8 b1", f"ptq-int8 b{zoo_suite.BATCH_N}"]
    assert {"prune-50", "prune-80", "qat-int8", "channels-50", "tfmot-prune-50",
            "tfmot-qat-int8"} <= set(recipes)
    with pytest.raises(ValueError, match="Unknown zoo model 'resnet9'"):
        zoo_suite.cases(["resnet9"])
    with pytest.raises(ValueError, match="Unknown zoo model"):
        zoo.build("resnet9")
