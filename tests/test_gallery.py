"""figures --from: every kind of stored run is redrawn into its own directory, or skipped in one
line saying why; nothing is written outside the runs unless --gallery asks for it."""
from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from studies import catalogue, companions, validate
from studies.cli import main
from studies.reports import lr_grid as lr_grid_report
from studies.reports import validate as validate_report
from tests.conftest import small_validate
from tests.test_companions import tiny_variants

TINY_SUITE = validate.SuiteSettings(widths={"toy": (64, 128), "linear": (32, 64), "mlp": (32, 64)},
                                    seeds={"toy": 2, "linear": 2, "mlp": 2}, steps=2)
LR_GRID = ["lr-grid", "--model", "toy", "--widths", "32,64", "--eta-a-range", "1e-3:1", "--eta-b-range", "1e-3:1",
           "--per-decade", "1", "--steps", "3", "--eval-at", "3", "--seeds", "2", "--optimizer", "adam",
           "--test-size", "0", "--executor", "inline"]  # the train split alone: half the heatmaps to draw


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run from tmp_path: a default that wrote a gallery (figures/gallery) would land here."""
    monkeypatch.chdir(tmp_path)


def files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def assert_redrawn_in_place(run: Path, capsys) -> None:
    """Delete a run's figures and report, redraw them with the default options, and check they
    came back inside the run and nothing was written next to it."""
    shutil.rmtree(run / "figures")
    (run / "report.md").unlink()
    outside = files(Path.cwd())
    assert main(["figures", "--from", str(run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{run}: redrew ")
    assert list((run / "figures").glob("*.png")) and list((run / "figures").glob("*.pdf"))
    assert (run / "report.md").is_file()
    new = set(files(Path.cwd())) - set(outside)
    assert all(name.startswith(str(run.relative_to(Path.cwd()))) for name in new), new
    assert not (Path.cwd() / "figures").exists()


@pytest.mark.parametrize("study", companions.STUDIES)
def test_companion_run_redraws_in_place(study, monkeypatch, capsys):
    monkeypatch.setattr(companions, "variants", tiny_variants)
    assert main(["study", study, "--executor", "inline", "--out", f"runs/{study}"]) == 0
    capsys.readouterr()
    assert_redrawn_in_place(Path.cwd() / "runs" / study, capsys)


@pytest.mark.heavy(3)
def test_bert_width_run_redraws_in_place(monkeypatch, capsys):
    pytest.importorskip("peft")
    from studies.factory_check import FactoryCheckSpec
    from studies.families.bert import BertFamily

    class Tiny(catalogue.Family):
        def spec(self, quick=False):
            return FactoryCheckSpec(factory=BertFamily(layers=1, vocab=32, seq_len=8, batch_size=8, pretrain_steps=2),
                                    widths=(64, 128), seeds=(0, 1), schemes=self.schemes, steps=3, base_width=64)

    study = catalogue.FAMILIES["bert-width"]
    monkeypatch.setitem(catalogue.FAMILIES, "bert-width", Tiny(study.family, study.title, study.figure, seeds=2))
    assert main(["study", "bert-width", "--quick", "--executor", "inline", "--out", "runs/bert"]) == 0
    capsys.readouterr()
    assert_redrawn_in_place(Path.cwd() / "runs" / "bert", capsys)


def test_finetune_run_redraws_in_place(tiny_model_dir, capsys):
    from tests.test_finetune import ROWS, write

    data = Path.cwd() / "sst2"
    data.mkdir()
    write(data / "train.tsv", ("label", "sentence"), ROWS)
    write(data / "dev.tsv", ("label", "sentence"), ROWS[:4])
    assert main(["finetune", "--model", str(tiny_model_dir), "--data", str(data), "--ratios", "1,4", "--lrs", "1e-3",
                 "--steps", "3", "--seeds", "1", "--batch-size", "2", "--eval-every", "1", "--monitor-every", "1",
                 "--rank", "2", "--no-bracket", "--executor", "inline", "--out", "runs/ft"]) == 0
    capsys.readouterr()
    assert_redrawn_in_place(Path.cwd() / "runs" / "ft", capsys)


@pytest.mark.heavy(10)
def test_a_directory_of_runs_of_every_kind(monkeypatch, capsys):
    """The README's runs/ after coord-check, validate and lr-grid, plus an unfinished run, a
    benchmark and a stray directory, redrawn with --gallery: exit 0, one line each, every run
    redrawn in its own directory, the rest untouched, and the gallery holds each run's figures
    under its name. (Without --gallery nothing is written outside a run: assert_redrawn_in_place,
    the same code path, on single runs above.)"""
    small_validate(monkeypatch, TINY_SUITE)
    # two of validate's settings, which draw one figure of each kind (coordinate check, first-step loss decrease,
    # phase diagram): the gallery redraws and collects a run of each kind; test_validate draws the whole suite
    monkeypatch.setattr(validate, "CONFIGS", [("mlp", "adam", "2"), ("toy", "sgd", "1")])
    runs = Path.cwd() / "runs"
    assert main(["coord-check", "--model", "linear", "--widths", "32,64", "--steps", "2", "--seeds", "1",
                 "--executor", "inline", "--out", "runs/cc"]) in (0, 1)
    with monkeypatch.context() as undone:  # the figures are drawn by the redraw below (and each command's own test)
        undone.setattr(validate_report, "draw_figures", lambda *a: {})
        undone.setattr(lr_grid_report, "save_figure", lambda fig, stem: plt.close(fig))
        assert main(["validate", "--quick", "--executor", "inline", "--out", "runs/validate"]) in (0, 1)
        assert main([*LR_GRID, "--out", "runs/grid"]) == 0
    shutil.copytree(runs / "grid", runs / "unfinished")
    (runs / "unfinished" / "meta.json").unlink()
    (runs / "bench").mkdir()
    (runs / "bench" / "bench.json").write_text("{}")
    (runs / "notes").mkdir()
    capsys.readouterr()
    before = files(runs)

    gallery = Path.cwd() / "gallery"
    assert main(["figures", "--from", "runs", "--gallery", str(gallery)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    per_run = [line for line in lines if line.startswith("runs/")]
    said = {Path(line.split(":")[0]).name: line for line in per_run}
    assert len(per_run) == len(said) == 6, lines
    assert all("redrew" in said[name] for name in ("grid", "cc", "validate"))
    assert "unfinished" in said["unfinished"] and "bench.json" in said["bench"] and "no meta.json" in said["notes"]
    after = files(runs)
    changed = {name for name in after if before.get(name) != after[name]}
    assert {name.split("/")[0] for name in changed} == {"grid", "cc", "validate"}, changed
    assert not (Path.cwd() / "figures").exists()
    copied = sorted(p.name for p in gallery.iterdir())
    assert {name.split("__")[0] for name in copied} == {"grid", "cc", "validate"}
    assert {"grid__lambda_t3_train.png", "grid__lambda_t3_train.pdf"} <= set(copied)
    drawn = {f"validate__{p.name}" for p in (runs / "validate" / "figures").glob("*.png")}
    assert {name for name in copied if name.startswith("validate__") and name.endswith(".png")} <= drawn


def test_unknown_kind_is_skipped_and_a_file_is_not_a_gallery(capsys):
    run = Path.cwd() / "runs" / "mystery"
    run.mkdir(parents=True)
    (run / "meta.json").write_text('{"spec": {}}')
    assert main(["figures", "--from", "runs"]) == 0
    assert "skipped, an unknown kind of run (no study" in capsys.readouterr().out
    (run / "meta.json").write_text('{"study": "rank"}')  # damaged: a redrawable kind without its spec
    assert main(["figures", "--from", "runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "has no spec" in err and err.count("\n") == 1
    Path("taken").write_text("")
    assert main(["figures", "--from", "runs", "--gallery", "taken"]) == 2
    assert capsys.readouterr().err.startswith("error: --gallery taken")


from tests.test_finetune import tiny_model_dir  # noqa: E402,F401  (the fixture, shared)
