"""The suites are one declarative table; tfmot rows need a baselines directory."""

import keras
import numpy as np
import pytest

from tfopt.bench import harness
from tfopt.bench import report
from tfopt.bench import suites

FAST = harness.Settings(warmup=2, runs=20, min_seconds=0.0, device="cpu", latency_rounds=1)


def test_suites_are_rows_of_one_table(tmp_path):
    quick, standard = suites.get_suite("quick"), suites.get_suite("standard")
    assert [c.name for c in standard] == [row.name for row in suites.TABLE]
    names = [c.name for c in standard]
    assert [c.name for c in quick] == [n for n in names if n in {c.name for c in quick}]
    assert all(case.recipes[0].name == "float" for case in standard)
    assert all(isinstance(case, harness.Case) for case in quick)
    # Fresh recipe objects per call: one run cannot leak state into the next.
    assert quick[0].recipes[0] is not suites.get_suite("quick")[0].recipes[0]
    with pytest.raises(ValueError, match="does not exist"):
        suites.get_suite("quick", baselines=str(tmp_path / "missing"))


def test_tfmot_rows_are_skipped_without_a_baselines_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(suites.BASELINES_ENV, raising=False)

    def build():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
        return model, (x, None, x, None)

    case = harness.Case("tiny", build, [suites.float_recipe(), suites.tfmot_prune_recipe(0.5)],
                        random_weights=True)
    rows = harness.run_case(case, FAST, str(tmp_path))
    assert rows[0]["status"] == "ok" and rows[0]["p50_ms"] == rows[0]["cpu_p50_ms"] > 0
    assert rows[1]["status"] == "skipped" and "no baselines directory" in rows[1]["reason"]
    text = report.markdown({"suite": "t", "command": "pytest", "environment": report.environment(),
                            "settings": {"num_threads": 1, "runs": 1, "min_seconds": 0},
                            "rows": rows})
    assert "| tfmot-prune-50 | skipped: no baselines directory" in text
    assert "1 row(s) skipped" in text and "failed" not in text.split("## tiny")[0]
    # With a directory that lacks the script, the row fails and says why.
    monkeypatch.setenv(suites.BASELINES_ENV, str(tmp_path))
    rows = harness.run_case(case, FAST, str(tmp_path))
    assert rows[1]["status"] == "failed" and "not found" in rows[1]["reason"]
