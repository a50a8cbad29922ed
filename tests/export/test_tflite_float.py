import gzip

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfopt import export
from tfopt import pruning
from tests.pruning.helpers import cnn
from tests.pruning.helpers import compile_model
from tests.pruning.helpers import digits


def _run_tflite(content, x):
    interpreter = Interpreter(model_content=content)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_stripped_pruned_model_exports_and_matches_keras(tmp_path):
    x, y = digits(128)
    model = compile_model(pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.ConstantSparsity(0.8, 0, frequency=1)))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    stripped = pruning.strip_pruning(model)
    path = tmp_path / "pruned.tflite"
    result = export.to_tflite(stripped, str(path))
    content = path.read_bytes()
    assert result.content == content and result.size_bytes == len(content)
    assert result.gzip_bytes == len(gzip.compress(content, 9, mtime=0))
    np.testing.assert_allclose(_run_tflite(content, x), stripped.predict(x, verbose=0), atol=1e-5)
    dense = export.to_tflite(cnn())
    assert result.gzip_bytes < dense.gzip_bytes


def test_export_rejects_non_models_and_unbuilt_models():
    with pytest.raises(TypeError, match="takes a keras.Model"):
        export.to_tflite(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="not built"):
        export.to_tflite(keras.Sequential([keras.layers.Dense(2)]))
