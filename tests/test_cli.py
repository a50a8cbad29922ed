import shutil
import subprocess

import pytest
from ai_edge_litert.interpreter import Interpreter

from tfopt import cli
from tfopt import pruning
from tests.pruning.helpers import cnn
from tests.pruning.helpers import compile_model
from tests.pruning.helpers import digits


def test_export_and_sparsity_commands_on_a_wrapped_model(tmp_path, capsys):
    x, y = digits(64)
    model = compile_model(pruning.prune_low_magnitude(
        cnn(), pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1)))
    model.fit(x, y, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    saved = str(tmp_path / "wrapped.keras")
    model.save(saved)
    out = str(tmp_path / "model.tflite")
    assert cli.main(["export", saved, "--out", out]) == 0
    assert "bytes" in capsys.readouterr().out
    Interpreter(model_path=out).allocate_tensors()
    assert cli.main(["sparsity", saved]) == 0
    table = capsys.readouterr().out
    assert "conv2d" in table and "0.5000" in table


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="No such model file"):
        cli.main(["sparsity", str(tmp_path / "nope.keras")])


def test_console_script_is_installed():
    script = shutil.which("tfopt")
    assert script, "the tfopt console script is not on PATH (pip install -e .)"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "bench" in result.stdout and "inspect" in result.stdout


def test_bench_rejects_unknown_suite_and_missing_gpu(tmp_path):
    with pytest.raises(SystemExit, match="Unknown suite 'huge'"):
        cli.main(["bench", "--suite", "huge", "--out", str(tmp_path)])
    from tfopt import bench

    if not bench.gpu_devices():
        with pytest.raises(SystemExit, match="sees no GPU"):
            cli.main(["bench", "--device", "gpu", "--out", str(tmp_path)])
