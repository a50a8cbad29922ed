"""The README's supported-layers tables are generated from the technique tables."""

import pathlib

import pytest

from tfopt import support
from tfopt.pruning import registry

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_section_equals_the_generated_tables():
    # Fails when a technique's table changes and the README was not
    # regenerated: run `python -m tfopt.support --write README.md`.
    text = README.read_text(encoding="utf-8")
    assert support.readme_section(text) == support.supported_layers_markdown()
    assert support.main(["--check", str(README)]) == 0


def test_pruning_table_rows_and_pending_tables():
    rows = registry.describe_table()
    assert all(len(row) == 3 and all(isinstance(c, str) and c for c in row) for row in rows)
    names = [row[0] for row in rows]
    for cls in registry.PRUNE_TABLE:  # one row per table entry, nothing dropped
        assert any(name.startswith(cls.__name__) for name in names), cls
    text = support.supported_layers_markdown(
        [("Pruning", "tfopt.pruning.registry"), ("No function", "tfopt.graph")])
    assert "| Dense | prunes kernel (N:M allowed) | kernel |" in text
    assert "_Table pending (`tfopt.graph.describe_table()`" in text
    # A table module that fails to import is an error, not a "pending" table.
    with pytest.raises(ImportError):
        support.supported_layers_markdown([("Later", "tfopt.no_such_module")])


def test_check_fails_on_a_stale_readme_and_write_mends_it(tmp_path, capsys):
    stale = tmp_path / "README.md"
    text = README.read_text(encoding="utf-8")
    stale.write_text(text.replace("| Dense | prunes kernel", "| Dense | keeps kernel"), encoding="utf-8")
    assert support.main(["--check", str(stale)]) == 1
    assert "--write" in capsys.readouterr().err
    assert support.main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    no_markers = tmp_path / "empty.md"
    no_markers.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no supported-layers section"):
        support.main(["--check", str(no_markers)])
