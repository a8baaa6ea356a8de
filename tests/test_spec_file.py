"""--spec FILE.toml: the same fields as the command line, validated with one-line errors."""
from __future__ import annotations

import pandas as pd
import pytest

from studies.cli import main


def test_spec_file_runs_like_the_command_line_and_flags_override(tmp_path, capsys):
    spec = tmp_path / "cc.toml"
    spec.write_text('model = "toy"\nwidths = [16, 32]\nsteps = 2\nseeds = 1\nschemes = "loraplus"\n'
                    'device = "cpu"\n')
    assert main(["coord-check", "--spec", str(spec), "--out", str(tmp_path / "a")]) == 0
    assert main(["coord-check", "--model", "toy", "--widths", "16,32", "--steps", "2", "--seeds", "1",
                 "--schemes", "loraplus", "--device", "cpu", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    assert main(["coord-check", "--spec", str(spec), "--steps", "3", "--out", str(tmp_path / "c")]) == 0
    assert pd.read_csv(tmp_path / "c" / "results.csv").step.max() == 3  # the command line wins


def test_ranges_lists_and_switches(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text('model = "toy"\nwidths = [32]\neta_a_range = [1e-3, 1.0]\neta-b-range = [1e-3, 1.0]\n'
                    'per_decade = 1\nsteps = 2\neval_at = [2]\nseeds = 1\noptimizer = "adam"\ntest_size = 8\n')
    assert main(["lr-grid", "--spec", str(spec), "--out", str(tmp_path / "g")]) == 0
    assert pd.read_csv(tmp_path / "g" / "grid.csv").eta_a.nunique() == 4


@pytest.mark.parametrize("text,expected", [
    ('modle = "toy"\n', "unknown field 'modle' for coord-check; allowed:"),
    ('widths = [16, -32]\nmodel = "toy"\n', "widths must be positive"),
    ('steps = "many"\n', "invalid int value"),
    ('force = "yes"\n', "must be true or false"),
    ('model = "toy\n', "not valid TOML"),
])
def test_bad_spec_files_name_the_field(tmp_path, capsys, text, expected):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "never"
    assert main(["coord-check", "--spec", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and expected in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_spec_file(tmp_path, capsys):
    assert main(["coord-check", "--spec", str(tmp_path / "none.toml")]) == 2
    assert "No such file" in capsys.readouterr().err
