"""The lr-grid study: grid, tidy table, optima, figures and report; bad inputs."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from studies.cli import main
from studies.lr_grid import LrGridSpec, best_pairs, curve_frame, log_grid, run_lr_grid, train_grid
from studies.reports import lr_grid as lr_grid_report
from tests.conftest import run_context
from studies.run.spec import SpecError
from toy_models.models import ModelConfig, build_model
from toy_models.population import Population


def test_log_grid_includes_both_ends():
    g = log_grid(1e-3, 10, 3)
    assert g[0] == pytest.approx(1e-3) and g[-1] == pytest.approx(10) and len(g) == 13
    assert np.allclose(np.diff(np.log10(g)), 1 / 3)


def tiny_spec(**kw):
    base = dict(model="toy", widths=(64, 128), eta_a_range=(1e-3, 1.0), eta_b_range=(1e-3, 1.0), per_decade=1,
                steps=4, eval_at=(2, 4), seeds=(0, 1), optimizer="adam", test_size=16)
    return LrGridSpec(**{**base, **kw})


def test_each_grid_run_equals_its_own_population():
    """Blocks and the grid layout must not change any run: pair j of the grid trains exactly
    like a population holding that pair alone."""
    spec = tiny_spec()
    c = train_grid(spec, 64, 1, torch.device("cpu"))
    eta_a, eta_b = spec.pairs()
    for j in (0, 5, 15):
        model = build_model("toy", spec.model_config(64), 1)
        solo = Population(model, [eta_a[j]], [eta_b[j]], "adam").run(4, measure=False, test_size=16)
        assert np.allclose(c["train"][:, j], solo.metrics["loss"][:, 0, 0].numpy(), rtol=1e-6, equal_nan=True)
        assert np.allclose(c["test"][:, j], solo.metrics["test_loss"][:, 0, 0].numpy(), rtol=1e-6, equal_nan=True)


def test_tidy_table_and_best_curves(tmp_path):
    spec = tiny_spec()
    grid, curves = run_lr_grid(spec, run_context(tmp_path, spec.to_dict()))
    n_pairs = len(spec.pairs()[0])
    assert len(grid) == 2 * 2 * 2 * 2 * n_pairs  # widths x seeds x steps x splits x pairs
    assert {"model", "width", "eta_a", "eta_b", "seed", "step", "split", "loss", "diverged"} <= set(grid.columns)
    table = curve_frame(spec, curves, grid)
    assert set(table.pair) == {"best", "best equal-rate"}
    eq = table[table.pair == "best equal-rate"]
    assert np.allclose(eq.eta_a, eq.eta_b)
    assert table.step.max() == spec.steps


def test_best_pairs_ignore_pairs_that_diverged_on_any_seed():
    eta = np.array([1.0, 1.0, 2.0])
    cube = np.array([[0.1, np.nan, 0.5], [0.1, 0.01, 0.5]])  # pair 1 is best on one seed, diverged on the other
    b = best_pairs(cube, eta, np.array([1.0, 2.0, 2.0]))
    assert b == {"best": 0, "best equal-rate": 0}


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


@pytest.mark.heavy(5)
def test_cli_writes_report_and_figures_and_figures_redraws(tmp_path, capsys, monkeypatch):
    """The golden lr-grid report: its title, one section per evaluated (step, split), the
    figures; the fitted slopes it states are lambda_fit.csv's. ``figures --from`` redraws
    the same report from the stored tables."""
    out = tmp_path / "grid"
    args = ["lr-grid", "--model", "toy", "--widths", "64,128", "--eta-a-range", "1e-3:1", "--eta-b-range", "1e-3:1",
            "--per-decade", "1", "--steps", "4", "--eval-at", "4", "--seeds", "2", "--optimizer", "adam",
            "--test-size", "16", "--executor", "inline", "--out", str(out)]
    assert main(args) == 0
    for name in ("grid.csv", "curves.csv", "optima.csv", "lambda_fit.csv", "meta.json", "report.md"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "heatmap_n64_t4_train.png").is_file()
    assert (out / "figures" / "heatmap_n128_t4_test.png").is_file()
    assert (out / "figures" / "lambda_t4_train.pdf").is_file()
    report = (out / "report.md").read_text()
    assert headings(report) == ["# lr-grid: toy, adam, init 1", "## t = 4, train loss", "## t = 4, test loss",
                                "## Figures"]
    fits = pd.read_csv(out / "lambda_fit.csv")
    assert sorted(zip(fits.step, fits.split)) == [(4, "test"), (4, "train")]
    assert np.isfinite(fits[["slope", "ci_low", "ci_high"]]).all().all() and (fits.n_widths == 2).all()
    optima = pd.read_csv(out / "optima.csv")
    assert len(optima) == 2 * 2 and set(optima.width) == {64, 128}  # (split, width)
    (out / "report.md").unlink()
    monkeypatch.setattr(lr_grid_report, "save_figure", lambda fig, stem: plt.close(fig))  # drawn above
    assert main(["figures", "--from", str(out), "--gallery", ""]) == 0
    assert (out / "report.md").read_text() == report


@pytest.mark.parametrize("args,expected", [
    (["--eta-a-range", "1:0.1"], "eta-a-range"),
    (["--eta-a-range", "fast"], "LOW:HIGH"),
    (["--eval-at", "10,500"], "beyond --steps"),
    (["--per-decade", "0"], "per-decade"),
    (["--model", "resnet"], "unknown model"),
    (["--init", "1"], "paper-mlp"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_lr_grid_input_is_one_line_and_exit_2(args, expected, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["lr-grid", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and expected in err and "\n" not in err
    assert not out.exists()


def test_figures_from_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["figures", "--from", str(tmp_path)]) == 2
    assert "no stored run" in capsys.readouterr().err
    (tmp_path / "meta.json").write_text('{"study": "lr-grid", "spec": {}}')
    assert main(["figures", "--from", str(tmp_path), "--gallery", ""]) == 2
    assert "not a complete lr-grid run" in capsys.readouterr().err


def test_heatmap_marks_a_partly_diverged_pair_as_diverged_not_near_optimal():
    """The pair with the lowest loss on its surviving seeds diverged on one seed: the heatmap
    leaves it out of the colour scale and the near-optimal set, and its legend says why."""
    import matplotlib.pyplot as plt

    from figures.lr_grid import plot_heatmap

    eta = np.array([1e-3, 1e-2, 1e-1])
    rows = []
    for seed in range(3):
        for i, a in enumerate(eta):
            for j, b in enumerate(eta):
                loss = 1.0 + i + j
                diverged = False
                if (i, j) == (2, 2):  # best on seeds 1 and 2, diverged on seed 0
                    loss, diverged = (np.nan, True) if seed == 0 else (0.01, False)
                rows.append({"width": 8, "step": 5, "split": "train", "seed": seed, "eta_a": a, "eta_b": b,
                             "loss": loss, "diverged": diverged})
    fig = plot_heatmap(pd.DataFrame(rows), 8, 5, "train")
    ax = fig.axes[0]
    near = next(c for c in ax.collections if c.get_label().startswith("pairs within"))
    assert np.allclose(near.get_offsets(), [[1e-3, 1e-3]])  # the best trainable pair, not (0.1, 0.1)
    colours = ax.collections[0].get_array()
    assert np.ma.is_masked(colours[-1]) and colours.count() == 8  # the pair is not coloured by its survivors
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(label.startswith("diverged on 1 to 2 of 3 seeds") for label in labels)
    plt.close(fig)
