"""`tfopt tune --example digits`: the embedded search end to end (tiny)."""

import csv
import json
import os

import pytest

from tfopt import cli


def test_tune_digits_writes_the_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "tune"
    options = ["--out", str(out), "--epochs", "1", "--train-examples", "128", "--tuner", "random"]
    cli.main(["tune", "--example", "digits", "--max-trials", "1"] + options)
    first = list(csv.DictReader(open(out / "trials.csv")))
    capsys.readouterr()
    # Resumes (the default): one more trial, the first kept as it was.
    cli.main(["tune", "--example", "digits", "--max-trials", "2"] + options)
    printed = capsys.readouterr().out
    assert "# Compression search" in printed and "trials.csv" in printed
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(first) == 1 and len(rows) == 2 and rows[0] == first[0]
    assert all(row["status"] in ("ok", "infeasible") for row in rows)
    assert all(0.0 <= float(row["test acc"]) <= 1.0 for row in rows)
    results = json.load(open(out / "results.json"))
    assert results["command"].startswith("tfopt tune --example digits --max-trials 2")
    assert results["environment"]["cores"] and results["baseline"]["size_bytes"] > 0
    assert results["summary"]["trials"] == 2
    assert os.path.getsize(out / "pareto.png") > 1000
    assert "Command: `tfopt tune" in (out / "trials.md").read_text()
    # --overwrite and --resume (the old flag, now the default) exclude each other.
    with pytest.raises(SystemExit):
        cli.main(["tune", "--example", "digits", "--overwrite", "--resume"] + options)
    assert "--resume: not allowed with argument --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["--max-accuracy-drop", "-1"], "max_accuracy_drop=-1.0 must be in"),
    (["--max-bytes", "10"], "max_bytes=10 cannot be met"),
])
def test_tune_bad_arguments_are_clear(tmp_path, argv, match):
    with pytest.raises(SystemExit, match=match):
        cli.main(["tune", "--example", "digits", "--out", str(tmp_path)] + argv)
