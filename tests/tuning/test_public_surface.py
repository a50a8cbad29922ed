"""What the tuner asks of the hypermodel is public (no private attributes)."""

import keras_tuner
import pytest

from tfopt import tuning
from tests.tuning.conftest import tiny_hypermodel
from tests.tuning.conftest import tiny_mlp


def test_hypermodel_surface_the_tuner_uses():
    hypermodel = tiny_hypermodel({"width": [1.0, 0.5]})
    assert not hypermodel.build_takes_hp and not hypermodel.epochs_from_tuner
    hypermodel.use_tuner_epochs()
    assert hypermodel.epochs_from_tuner
    hp = keras_tuner.HyperParameters()
    hypermodel.config(hp)
    assert "epochs" not in hp.values  # the tuner's budget, not a hyperparameter
    small = hypermodel.architecture(hypermodel.baseline_config())
    assert small.count_params() == tiny_mlp(1.0).count_params()

    def build(hp):
        return tiny_mlp(hp.get("width"))

    assert tuning.CompressionHyperModel(build).build_takes_hp


def test_hypermodel_block_size_is_checked_early():
    with pytest.raises(ValueError, match="block_size"):
        tuning.CompressionHyperModel(tiny_mlp, block_size=(0, 4))
    # None would silently turn every "block" trial into unstructured pruning.
    with pytest.raises(ValueError, match="block_size=None"):
        tuning.CompressionHyperModel(tiny_mlp, block_size=None)
