"""Companion studies (init, rank, contribution) and the gallery, on tiny settings."""
from __future__ import annotations

import pandas as pd
import pytest

from studies import companions
from studies.cli import main
from studies.companions import Variant
from tests.conftest import run_context
from studies.run.spec import CoordCheckSpec


def tiny_variants(study, quick):
    if study == "init":
        return [Variant(f"linear, init {i}", CoordCheckSpec(model="linear", init=i, schemes=("loraplus",), widths=(32,),
                                                            steps=3, seeds=(0, 1))) for i in ("1", "2", "zero")]
    if study == "rank":
        return [Variant(f"{s}|{r}", CoordCheckSpec(model="mlp", init="1", schemes=("loraplus",), widths=(32,), steps=3,
                                                   seeds=(0,), rank=r, alpha=8.0, alpha_scaling=s))
                for s in ("r", "sqrt-r") for r in (1, 2, 4)]
    return [Variant("linear", CoordCheckSpec(model="linear", init="1", schemes=("lora-const", "loraplus"),
                                             widths=(32, 64), steps=4, seeds=(0, 1)))]


@pytest.mark.parametrize("study", companions.STUDIES)
def test_study_writes_summary_figure_and_report_and_gallery_collects_it(study, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(companions, "variants", tiny_variants)
    out = tmp_path / "runs" / study
    assert main(["study", study, "--out", str(out)]) == 0
    for name in ("results.csv", "summary.csv", "meta.json", "report.md", f"figures/{study}.png", f"figures/{study}.pdf"):
        assert (out / name).is_file(), name
    # the golden companion report: a title and summary.csv as its one table, then the figure
    report = (out / "report.md").read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert [line for line in report.splitlines() if line.startswith("#")] == [f"# study {study}"]
    table = [line for line in report.splitlines() if line.startswith("|")]
    assert [c.strip() for c in table[0].strip("|").split("|")] == list(summary.columns)
    assert len(table) == 2 + len(summary) > 2 and report.split("\n---\n")[0].rstrip().endswith(f"![{study}](figures/{study}.png)")
    assert "glossary" in report.split("\n---\n")[-1]  # every report ends pointing at the glossary
    gallery = tmp_path / "gallery"
    assert main(["figures", "--from", str(tmp_path / "runs"), "--gallery", str(gallery)]) == 0
    assert (gallery / f"{study}__{study}.png").is_file() and (gallery / f"{study}__{study}.pdf").is_file()


def test_init_study_both_zero_never_moves(monkeypatch, tmp_path):
    monkeypatch.setattr(companions, "variants", tiny_variants)
    results = companions.run("init", True, run_context(tmp_path))
    zero = results[results.variant.str.endswith("zero")]
    loss = zero[zero.metric == "loss"].groupby("step").value.mean()
    assert loss.nunique() == 1  # both gradients are zero: the saddle is never left
    assert (zero[zero.metric == "delta1"].value == 0).all() and (zero[zero.metric == "delta2"].value == 0).all()


def test_unknown_study_and_bad_gallery_source(tmp_path, capsys):
    assert main(["study", "depth", "--out", str(tmp_path / "x")]) == 2
    assert "unknown study" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["figures", "--from", str(tmp_path)]) == 2
    assert "no stored run" in capsys.readouterr().err
