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
    with pytest.raises(SystemExit, match="baselines directory .*does not exist"):
        cli.main(["bench", "--suite", "quick", "--baselines", str(tmp_path / "no"),
                  "--out", str(tmp_path)])
    from tfopt import bench

    if not bench.gpu_devices():
        with pytest.raises(SystemExit, match="sees no GPU"):
            cli.main(["bench", "--device", "gpu", "--out", str(tmp_path)])


# -- issue 12: the user's own files ------------------------------------------

import json
import os
import sys

import keras
import numpy as np

from tfopt import export


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A trained tiny CNN saved as .keras, its data as .npz, and bad files."""
    root = tmp_path_factory.mktemp("user")
    x, y = digits(300)
    keras.utils.set_random_seed(0)
    model = compile_model(cnn())
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    files = {"keras": str(root / "model.keras"), "npz": str(root / "data.npz"),
             "rep": str(root / "rep.npy"), "tflite": str(root / "model.tflite"),
             "corrupt": str(root / "corrupt.keras"), "text": str(root / "notes.txt"),
             "root": root}
    model.save(files["keras"])
    np.savez(files["npz"], x=x, y=y)
    np.save(files["rep"], x[:40])
    export.to_tflite(model, files["tflite"], batch_size=1)
    with open(files["corrupt"], "wb") as handle:
        handle.write(b"\x00not a zip archive\x00" * 50)
    with open(files["text"], "w") as handle:
        handle.write("1 2 3\n4 5 6\n")
    return files


def _fails(argv, capsys):
    """Runs the CLI, expects a user error: exit 2, one stderr line, no traceback."""
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_help_and_argument_errors_do_not_import_tensorflow():
    code = (
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "from tfopt import cli\n"
        "for argv in (['--help'], ['export', '--help'], ['export'], ['bench', '--threads', 'x']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
        "print('seconds', time.perf_counter() - start)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds = float(done.stdout.split("seconds")[-1])
    assert seconds < 2.0, f"tfopt --help took {seconds:.2f} s"


@pytest.mark.parametrize("command", ["export", "sparsity", "compress", "bench"])
def test_corrupt_and_wrong_kind_model_files_are_named(user_files, tmp_path, capsys, command):
    out = str(tmp_path / "out.tflite")
    extra = {"export": ["--out", out],
             "compress": ["--data", user_files["npz"], "--recipe", "float", "--out", out],
             "bench": ["--data", user_files["npz"], "--out", str(tmp_path / "b")],
             "sparsity": []}[command]
    err = _fails([command, user_files["corrupt"], *extra], capsys)
    assert "corrupt.keras" in err and "corrupt or another format" in err
    err = _fails([command, user_files["text"], *extra], capsys)
    assert "notes.txt" in err and "not" in err
    if command != "bench":  # bench takes a .tflite: it times it
        err = _fails([command, user_files["tflite"], *extra], capsys)
        assert "model.tflite" in err and "TFLite file" in err


def test_inspect_names_a_keras_or_text_file(user_files, capsys):
    err = _fails(["inspect", user_files["keras"]], capsys)
    assert "model.keras is not a TFLite file: it is a Keras .keras model" in err
    err = _fails(["inspect", user_files["text"]], capsys)
    assert "notes.txt is not a TFLite file" in err
    with pytest.raises(ValueError, match="model.keras is not a TFLite file"):
        export.inspect_tflite(user_files["keras"])


def test_output_path_is_checked_before_loading_or_converting(user_files, tmp_path, capsys):
    missing = str(tmp_path / "no" / "dir" / "x.tflite")
    # The model file is corrupt too: the path error coming first shows the order.
    for argv in (["export", user_files["corrupt"], "--out", missing],
                 ["compress", user_files["corrupt"], "--data", user_files["npz"],
                  "--recipe", "prune-50", "--out", missing]):
        err = _fails(argv, capsys)
        assert "--out" in err and "does not exist" in err
    err = _fails(["bench", user_files["tflite"], "--json", missing], capsys)
    assert "--json" in err and "does not exist" in err


def test_representative_data_errors(user_files, tmp_path, capsys):
    out = str(tmp_path / "x.tflite")
    err = _fails(["export", user_files["keras"], "--out", out, "--quantization", "dynamic",
                  "--representative-data", user_files["rep"]], capsys)
    assert "only used by --quantization int8 or int16x8" in err
    err = _fails(["export", user_files["keras"], "--out", out,
                  "--representative-data", user_files["rep"]], capsys)
    assert "would be ignored" in err
    err = _fails(["export", user_files["keras"], "--out", out, "--quantization", "int8",
                  "--representative-data", user_files["text"]], capsys)
    assert "notes.txt is not a .npy/.npz file" in err and "pickled" not in err
    assert not os.path.exists(out)


def test_converter_prints_are_silenced_unless_verbose(user_files, tmp_path, capfd):
    out = str(tmp_path / "q.tflite")
    argv = ["export", user_files["keras"], "--out", out, "--quantization", "int8",
            "--representative-data", user_files["rep"]]
    assert cli.main(argv) == 0
    quiet = capfd.readouterr()
    assert "wrote" in quiet.out and "fully_quantize" not in quiet.err
    assert cli.main(argv + ["--verbose"]) == 0
    loud = capfd.readouterr()
    assert "fully_quantize" in loud.err  # the same run prints it when asked


def test_bench_a_tflite_file(user_files, tmp_path, capsys):
    record = str(tmp_path / "bench.json")
    assert cli.main(["bench", user_files["tflite"], "--runs", "50", "--min-seconds", "0.05",
                     "--threads", "1", "--json", record]) == 0
    text = capsys.readouterr().out
    assert "p50" in text and "p90" in text and "p99" in text and "CONV_2D" in text
    facts = json.load(open(record))
    assert facts["size_bytes"] == os.path.getsize(user_files["tflite"])
    assert facts["latency"]["n"] >= 50 and facts["latency"]["num_threads"] == 1
    assert 0 < facts["latency"]["p50_ms"] <= facts["latency"]["p99_ms"]
    assert facts["environment"]["cpu"]


def test_bench_a_keras_model_on_user_data(user_files, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["bench", user_files["keras"], "--data", user_files["npz"], "--out", str(out),
                     "--recipes", "ptq-int8,prune-50", "--epochs", "1",
                     "--runs", "50", "--min-seconds", "0.05"]) == 0
    results = json.load(open(out / "results.json"))
    rows = {row["recipe"]: row for row in results["rows"]}
    assert list(rows) == ["float", "ptq-int8", "prune-50"]
    assert all(row["status"] == "ok" for row in rows.values()), rows
    assert abs(rows["prune-50"]["sparsity"] - 0.5) < 0.01
    assert rows["ptq-int8"]["size_bytes"] < rows["float"]["size_bytes"]
    assert rows["float"]["top1_agreement"] == 1.0 and rows["float"]["tflite_accuracy"] > 0.5
    assert (out / "results.md").read_text().count("| prune-50 |") == 1
    assert "rows ok, 0 failed" in capsys.readouterr().out


def test_compress_trains_strips_exports_and_verifies(user_files, tmp_path, capsys):
    out, report = str(tmp_path / "p80.tflite"), str(tmp_path / "report.json")
    assert cli.main(["compress", user_files["keras"], "--data", user_files["npz"],
                     "--recipe", "prune-80", "--epochs", "1", "--out", out,
                     "--report", report]) == 0
    text = capsys.readouterr().out
    assert "verified on 60 held-out examples" in text and out in text
    facts = json.load(open(report))
    assert abs(facts["sparsity"] - 0.8) < 0.01 and facts["top1_agreement"] >= 0.95
    kernels = [w for w in export.inspect_tflite(out)["weights"] if len(w["shape"]) >= 2]
    assert max(w["zero_fraction"] for w in kernels) >= 0.79


def test_compress_qat_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 210)):
        os.makedirs(tmp_path / "images" / label)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (8, 8, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.save(tmp_path / "img.keras")
    out = str(tmp_path / "img.tflite")
    assert cli.main(["compress", str(tmp_path / "img.keras"), "--data", str(tmp_path / "images"),
                     "--recipe", "qat-int8", "--epochs", "1", "--out", out]) == 0
    assert "int8" in capsys.readouterr().out
    facts = export.inspect_tflite(out)
    assert {w["dtype"] for w in facts["weights"] if len(w["shape"]) >= 2} == {"int8"}


def test_bench_options_another_form_would_ignore_are_errors(user_files, tmp_path, capsys):
    err = _fails(["bench", user_files["tflite"], "--suite", "standard"], capsys)
    assert "--suite is only read by `tfopt bench --suite`" in err
    err = _fails(["bench", user_files["tflite"], "--data", user_files["npz"]], capsys)
    assert "--data is only read by `tfopt bench MODEL.keras`" in err
    err = _fails(["bench", "--suite", "quick", "--runs", "10"], capsys)
    assert "--runs" in err and "would ignore it" in err
    err = _fails(["bench", user_files["keras"]], capsys)
    assert "needs --data" in err
