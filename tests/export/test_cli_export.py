"""`tfopt inspect` and `tfopt export --quantization` on real files."""

import numpy as np
import pytest

from tfopt import cli
from tfopt import export


@pytest.fixture(scope="module")
def saved_model(trained_cnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "cnn.keras"
    trained_cnn.save(str(path))
    return str(path)


def test_export_int8_with_digits_then_inspect(saved_model, trained_cnn, digits8,
                                              tmp_path, capsys):
    _, (x_test, y_test) = digits8
    out = str(tmp_path / "int8.tflite")
    assert cli.main(["export", saved_model, "--out", out, "--quantization", "int8",
                     "--representative-data", "digits8"]) == 0
    assert "int8" in capsys.readouterr().out
    facts = export.inspect_tflite(out)
    assert {w["dtype"] for w in facts["weights"] if len(w["shape"]) >= 2} == {"int8"}
    report = export.verify(out, trained_cnn, x_test, y_test)
    assert abs(report["tflite_accuracy"] - report["keras_accuracy"]) <= 0.05

    assert cli.main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert f"{facts['size_bytes']} bytes" in text and f"{facts['gzip_bytes']} gzipped" in text
    assert "CONV_2D" in text and "FULLY_CONNECTED" in text
    assert "input:" in text and "float32" in text
    assert "elements" in text and "zeros" in text
    assert " int8 " in text and "720" in text


def test_export_with_npy_representative_data_and_int8_io(saved_model, digits8,
                                                         tmp_path, capsys):
    (x, _), _ = digits8
    npy = tmp_path / "rep.npy"
    np.save(npy, x[:50])
    out = str(tmp_path / "io.tflite")
    assert cli.main(["export", saved_model, "--out", out, "--quantization", "int8",
                     "--representative-data", str(npy), "--int8-io"]) == 0
    capsys.readouterr()
    assert cli.main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert "input:" in text and "int8" in text and "zero_point=-128" in text


def test_cli_errors_are_messages(saved_model, tmp_path):
    out = str(tmp_path / "x.tflite")
    with pytest.raises(SystemExit, match="needs representative_data"):
        cli.main(["export", saved_model, "--out", out, "--quantization", "int8"])
    with pytest.raises(SystemExit, match="No such --representative-data file"):
        cli.main(["export", saved_model, "--out", out, "--quantization", "int8",
                  "--representative-data", str(tmp_path / "none.npy")])
    with pytest.raises(SystemExit, match="digits8, digits16"):
        cli.main(["export", saved_model, "--out", out, "--quantization", "int8",
                  "--representative-data", "digits12"])
    with pytest.raises(SystemExit, match=r"examples of shape \(16, 16, 1\)"):
        cli.main(["export", saved_model, "--out", out, "--quantization", "int8",
                  "--representative-data", "digits16"])
    with pytest.raises(SystemExit, match="No such TFLite file"):
        cli.main(["inspect", str(tmp_path / "missing.tflite")])
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="bad.tflite is not a TFLite file"):
        cli.main(["inspect", str(bad)])
