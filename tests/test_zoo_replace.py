"""`benchmarks/zoo.py --merge DIR --replace`: a re-run replaces a model's rows."""

import copy
import json

from tests.test_zoo import _zoo_script
from tests.test_zoo import quick_timing


def test_merge_replace_swaps_a_rerun_models_rows_budget_and_run(tmp_path, monkeypatch):
    script = _zoo_script()
    quick_timing(monkeypatch)
    out, rerun = str(tmp_path / "zoo"), tmp_path / "rerun"
    script.main(["--models", "kws_conv1d", "--epochs", "0", "--n-train", "16", "--n-test", "8",
                 "--no-tfmot", "--recipes", "float", "--out", out])
    saved = json.load(open(f"{out}/results.json"))
    # The same file with a second model, as if the zoo had two models.
    both = copy.deepcopy(saved)
    both["rows"].append(dict(saved["rows"][0], model="unet"))
    both["budgets"]["unet"] = dict(saved["budgets"]["kws_conv1d"])
    both["runs"][0]["models"] = ["kws_conv1d", "unet"]
    json.dump(both, open(f"{out}/results.json", "w"))
    # A re-run of kws_conv1d alone, with another budget and an extra field.
    redo = copy.deepcopy(saved)
    redo["rows"][0]["rerun_marker"] = True
    redo["budgets"]["kws_conv1d"]["epochs"] = 3
    redo["runs"] = [dict(saved["runs"][0], command="python benchmarks/zoo.py --models kws_conv1d "
                         "--epochs 3")]
    rerun.mkdir()
    json.dump(redo, open(rerun / "results.json", "w"))

    script.main(["--merge", str(rerun), "--out", out])  # without --replace: nothing new
    assert json.load(open(f"{out}/results.json"))["rows"] == both["rows"]

    script.main(["--merge", str(rerun), "--replace", "--out", out])
    merged = json.load(open(f"{out}/results.json"))
    assert sorted(r["model"] for r in merged["rows"]) == ["kws_conv1d", "unet"]
    kws = [r for r in merged["rows"] if r["model"] == "kws_conv1d"]
    assert len(kws) == 1 and kws[0]["rerun_marker"] is True
    assert merged["budgets"]["kws_conv1d"]["epochs"] == 3
    assert merged["budgets"]["unet"] == both["budgets"]["unet"]
    assert [run["models"] for run in merged["runs"]] == [["unet"], ["kws_conv1d"]]
    assert "--epochs 3" in open(f"{out}/results.md").read()


def test_replace_without_merge_is_an_error(tmp_path):
    import pytest

    with pytest.raises(SystemExit):
        _zoo_script().main(["--replace", "--out", str(tmp_path)])
