"""sparsity=True: TFLite's sparse weight format, checked to run before it is kept."""

import pytest
from ai_edge_litert.interpreter import Interpreter

from tfopt import export
from tests.export.conftest import kernels
from tests.export.conftest import representative


def test_float_sparse_export_loads_and_runs(pruned_cnn, digits8, tmp_path):
    _, (x_test, y_test) = digits8
    path = tmp_path / "sparse.tflite"
    result = export.to_tflite(pruned_cnn, str(path), sparsity=True)
    assert "DENSIFY" in result.ops
    sparse = [w for w in result.weights if w["sparse"]]
    assert sparse, "no weight was stored in the sparse format"
    for weight in sparse:
        assert weight["zero_fraction"] >= 0.75  # the pruned kernels
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.invoke()
    report = export.verify(result, pruned_cnn, x_test, y_test)
    assert report["max_abs_diff"] < 1e-5


def test_dense_kernels_report_their_zeros(pruned_cnn):
    result = export.to_tflite(pruned_cnn)
    zeros = [w["zero_fraction"] for w in kernels(result.weights)]
    assert len(zeros) == 2 and min(zeros) >= 0.79


def test_int8_with_sparsity_is_refused_clearly(pruned_cnn, digits8, tmp_path):
    # The converter writes this file, but XNNPACK cannot run it: to_tflite
    # must say so and leave no file behind.
    path = tmp_path / "int8_sparse.tflite"
    with pytest.raises(ValueError, match="cannot run.*int8 with EXPERIMENTAL_SPARSITY"):
        export.to_tflite(pruned_cnn, str(path), quantization="int8",
                         representative_data=representative(digits8),
                         sparsity=True)
    assert not path.exists()
