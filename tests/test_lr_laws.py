"""lr-laws: edge brackets, the search in rounds against a fine grid, fits and verdicts against
hand-given predictions, optima and the ratio profile, the command and its bad inputs."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from scaling.edges import Criterion, corner_frame, fit_edge_law, locate_edge, refine, width_summary
from scaling.profile import ratio_profile, slice_optimum
from studies.cli import main
from studies.lr_grid import log_grid, train_pairs
from scaling.laws import LawPrediction
from studies.lr_laws.analysis import analyse, edge_table, judge, factory_shapes, law_prediction, paired_configs
from studies.lr_laws.config import ConfigKey, LawsConfig, SliceSpec, catalogue, select_configs
from studies.lr_laws.fig2 import dead_start, fig2_table
from studies.lr_laws.search import laws_shard
from studies.reports import lr_laws as lr_laws_report
from studies.run.spec import SpecError
from toy_models.models import ModelConfig, build_model
from toy_models.population import Population

CPU = torch.device("cpu")


# -- edges -----------------------------------------------------------------------------------------
def test_locate_edge_brackets_the_first_failure_above_the_first_success():
    rates = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    b = locate_edge(rates, [False, True, True, False, True, False])   # slow, trains, trains, fails, re-enters
    assert (b.lo, b.hi, b.censored, b.reentries) == (1e-1, 1.0, "", 1)
    assert b.edge == pytest.approx(np.sqrt(0.1))
    shuffled = locate_edge(rates[::-1], [False, True, False, True, True, False])
    assert (shuffled.lo, shuffled.hi) == (1e-1, 1.0)


def test_censored_edges_are_flagged_never_invented():
    below = locate_edge([1.0, 2.0], [False, False])
    above = locate_edge([1.0, 2.0], [False, True])
    assert below.censored == "below" and np.isnan(below.edge)
    assert above.censored == "above" and np.isnan(above.edge) and above.lo == 2.0


def test_refine_puts_points_evenly_inside_the_bracket():
    pts = refine(1.0, 16.0, 3)
    assert np.allclose(pts, [2.0, 4.0, 8.0])


def test_criterion_adam_fraction_and_gd_divergence():
    loss0, lossT = np.array([1.0, 1.0, 1.0, 1.0]), np.array([0.4, 0.6, np.nan, 0.1])
    div = np.array([-1, -1, 5, 30])  # run 2 diverged at step 5; run 3 diverged after T
    assert Criterion(20, 0.5).trainable(loss0, lossT, div).tolist() == [True, False, False, True]
    assert Criterion(20).trainable(loss0, lossT, div).tolist() == [True, True, False, True]
    assert Criterion(20, 1.0).name == "f1@T20" and Criterion(50).name == "diverged@T50"
    with pytest.raises(ValueError):
        Criterion(20, 1.5)


def test_criterion_best_keeps_a_share_of_the_slices_largest_fall():
    """A language model's fine-tune: every rate ends below its start (7.3), large rates on the
    plateau of a blind guess (5.5); the best falls to 4.0. 'start' f = 1 calls all of them
    trained, 'best' 0.8 only those within 80% of the best fall (loss <= 7.3 - 0.8 x 3.3 = 4.66)."""
    loss0 = np.full(6, 7.3)
    lossT = np.array([7.2, 5.0, 4.0, 4.5, 5.5, np.nan])
    div = np.array([-1, -1, -1, -1, -1, 3])
    best = Criterion(20, 0.8, "best")
    assert best.trainable(loss0, lossT, div).tolist() == [False, False, True, True, False, False]
    assert Criterion(20, 1.0).trainable(loss0, lossT, div).tolist() == [True] * 5 + [False]
    assert best.name == "best0.8@T20" and best.relative and not Criterion(20, 1.0).relative
    assert "largest fall" in best.describe()
    assert locate_edge([1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0], best.trainable(loss0, lossT, div)).edge == pytest.approx(
        np.sqrt(10.0))
    # the verdict is relative: the same run passes or fails with what it is judged against
    assert best.trainable(loss0[:2], lossT[:2], div[:2]).tolist() == [False, True]
    assert not best.trainable(loss0[:1], np.array([7.5]), div[:1]).any()  # nothing fell: nothing trains
    # where the best run reaches zero, best q reads as start with f = 1 - q
    zero = np.array([0.0, 0.1, 0.3, 0.9])
    assert Criterion(5, 0.8, "best").trainable(np.ones(4), zero, -np.ones(4)).tolist() == \
        Criterion(5, 0.2).trainable(np.ones(4), zero, -np.ones(4)).tolist()
    assert (Criterion(5, 0.5).kind, Criterion(5).kind) == ("start", "diverged")
    for bad in (dict(fraction=None, kind="best"), dict(fraction=0.5, kind="diverged"), dict(fraction=0.5, kind="min")):
        with pytest.raises(ValueError):
            Criterion(5, **bad)


def test_a_relative_criterion_is_judged_per_slice_in_the_search_and_the_table():
    """search_slices refines with 'best' on each slice's own runs, and edge_table reads it so."""
    config = tiny_config(optimizer="adam", criteria=(Criterion(10, 0.5, "best"), Criterion(10, 1.0)),
                         refine_rounds=1)
    runs = laws_shard(config, 64, 1, 0, CPU)
    edges = edge_table(runs, [config])
    for key, g in runs.groupby("slice"):
        ok = Criterion(10, 0.5, "best").trainable(g.loss_0, g.loss_t10, g.diverged_step)
        row = edges[(edges.slice == key) & (edges.criterion == "best0.5@T10")].iloc[0]
        b = locate_edge(g.rate, ok)
        assert (row.lo, row.hi) == (b.lo, b.hi) or (np.isnan(row.lo) and np.isnan(b.lo))
        assert row.primary
    assert runs["round"].max() == 1  # the 'best' brackets were refined
    assert LawsConfig.from_dict(config.to_dict()).criteria == config.criteria


# -- the search ------------------------------------------------------------------------------------
def tiny_config(**kw) -> LawsConfig:
    base = dict(model="toy", optimizer="sgd", init="1", widths=(64,), ranks=(1,), r0=1, seeds=(0,),
                slices=(SliceSpec("b-edge", held=1e-2, held_n=-1.0, rate_range=(1e-3, 1e3)),
                        SliceSpec("one-rate", rate_range=(1e-4, 1e3))),
                criteria=(Criterion(30),), per_decade=2, refine_points=3, refine_rounds=2)
    return LawsConfig(**{**base, **kw})


def test_rounds_find_the_edge_a_fine_grid_finds():
    """The bracket after two rounds (2 per decade, then 3 + 3 points) must contain the crossing
    that a 32-per-decade grid over the same range sees."""
    config = tiny_config()
    runs = laws_shard(config, 64, 1, 0, CPU)
    edges = edge_table(runs, [config]).set_index("slice")
    model = build_model("toy", config.model_config(64, 1), 0)
    for s in config.slices:
        fine = log_grid(*s.rate_range, 32)
        a, b = s.rates(fine, 64, 1, config.n0, config.r0)
        c = train_pairs(model, a, b, "sgd", 30)
        ok = Criterion(30).trainable(c["train"][0], c["train"][30], c["diverged_step"])
        f = locate_edge(fine, ok)
        e = edges.loc[s.key]
        assert not e.censored and not f.censored
        assert f.lo <= e.hi * (1 + 1e-9) and f.hi >= e.lo * (1 - 1e-9), (s.key, f, e.lo, e.hi)
        assert e.hi / e.lo < 10 ** 0.5 ** (1 / 16) * 1.001  # 2 per decade, then /4 twice
    assert runs["round"].max() == 2 and len(runs) == 13 + 15 + 2 * 2 * 3  # grids, then 3 + 3 per slice


def test_each_candidate_trains_like_its_own_population():
    config = tiny_config(optimizer="adam", criteria=(Criterion(10, 1.0),), refine_rounds=1)
    runs = laws_shard(config, 64, 1, 0, CPU)
    model = build_model("toy", config.model_config(64, 1), 0)
    for _, r in runs.iloc[[0, 7, len(runs) - 1]].iterrows():
        solo = Population(model, [r.eta_a], [r.eta_b], "adam").run(10, measure=False)
        assert solo.metrics["loss"][10, 0, 0].item() == pytest.approx(r.loss_t10, rel=1e-5, nan_ok=True)


def test_a_slice_holds_its_rate_as_stated():
    s = SliceSpec("ratio", held=16.0, held_n=1.0)
    a, b = s.rates([1e-3], 256, 4, 64, 4)
    assert b[0] / a[0] == pytest.approx(16.0 * 4)
    a, b = SliceSpec("b-edge", held=1e-2, held_n=-1.0).rates([0.5], 128, 4, 64, 4)
    assert (a[0], b[0]) == (pytest.approx(5e-3), 0.5)


# -- fits and verdicts -----------------------------------------------------------------------------
def synthetic_edges(slope: float, widths=(64, 128, 256, 512, 1024), seeds=8, noise=0.05, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"config": "c", "width": w, "seed": s, "edge": 3.0 * w ** slope * np.exp(noise * rng.normal()),
             "censored": ""} for w in widths for s in range(seeds)]
    return pd.DataFrame(rows)


def test_fit_recovers_the_slope_and_the_verdict_rule_judges_it():
    fit, left = fit_edge_law(synthetic_edges(-1.0), "width")
    assert left == [] and fit.ci_low < -1.0 < fit.ci_high and fit.ci_high - fit.ci_low < 0.2
    assert judge(fit, LawPrediction.given(-1.0), 0.15)[0] == "PASS"
    assert judge(fit, LawPrediction.given(0.0), 0.15)[0] == "FAIL"
    verdict, why = judge(fit, LawPrediction.given(None, "none", "a ridge"), 0.15)
    assert verdict == "INCONCLUSIVE" and "a ridge" in why


def test_a_censored_width_is_left_out_and_listed():
    e = synthetic_edges(-0.5)
    e.loc[(e.width == 1024) & (e.seed == 3), ["edge", "censored"]] = [np.nan, "above"]
    fit, left = fit_edge_law(e, "width")
    assert left == [1024] and fit.n_widths == 4
    summary = width_summary(e, ["config"], "width").set_index("width")
    assert summary.loc[1024, "censored_seeds"] == 1 and np.isnan(summary.loc[1024, "edge"])
    assert summary.loc[64, "edge_low"] <= summary.loc[64, "edge"] <= summary.loc[64, "edge_high"]


def test_a_robust_centre_resists_an_outlying_seed():
    """8 seeds, one of them 30 times off at the widest width: the mean's slope is dragged off the
    law; the median's and the trimmed mean's stay on it, and the median's interval stays narrow
    (a resample reaches its outlier only with 4 copies of 8, about 1%; the trimmed mean's with 2,
    about 26%). Without the outlier the three agree."""
    clean = synthetic_edges(-1.0, seeds=8, noise=0.3)
    bad = clean.copy()
    bad.loc[(bad.width == 1024) & (bad.seed == 2), "edge"] *= 30.0
    mean, median, trimmed = (fit_edge_law(bad, "width", center=c)[0] for c in ("mean", "median", "trimmed"))
    assert mean.slope > -0.9
    assert abs(median.slope + 1) < 0.05 and abs(trimmed.slope + 1) < 0.05
    assert median.ci_low <= -1.0 <= median.ci_high and median.ci_high - median.ci_low < 0.15
    assert trimmed.ci_low <= -1.0 <= trimmed.ci_high
    for c in ("median", "trimmed"):
        assert fit_edge_law(clean, "width", center=c)[0].slope == pytest.approx(
            fit_edge_law(clean, "width")[0].slope, abs=0.03)
    summary = width_summary(bad, ["config"], "width", center="median").set_index("width")
    assert summary.loc[1024, "edge"] == pytest.approx(3.0 * 1024 ** -1.0, rel=0.2)
    assert width_summary(bad, ["config"], "width").set_index("width").loc[1024, "edge"] > 1.3 * 3.0 / 1024
    with pytest.raises(SpecError, match="seed centre"):
        tiny_config(center="mode")


def test_corner_is_b_edge_over_a_edge_per_seed():
    edges = pd.DataFrame({"config": "c", "width": [64, 64, 128, 128], "seed": [0, 0, 0, 0],
                          "slice": ["b-edge", "a-edge", "b-edge", "a-edge"], "edge_eta_a": [0.01, 2.0, 0.005, 1.0],
                          "edge_eta_b": [4.0, 0.03, 4.0, 0.03], "censored": ["", "", "", "below"]})
    c = corner_frame(edges, ["config", "width"]).set_index("width")
    assert c.loc[64, "edge"] == pytest.approx(2.0) and c.loc[64, "censored"] == ""
    assert "A edge below" in c.loc[128, "censored"]


def test_analyse_judges_every_law_against_the_given_predictions():
    """Synthetic runs in the shard format whose B edge is width-free and A edge ~ 1/n: the
    corner's slope is +1 and passes against +1, fails against 0."""
    rows = []
    for w in (64, 128, 256, 512):
        for seed in range(4):
            for name, held, edge in (("b-edge", 0.01 * 64 / w, 5.0), ("a-edge", 0.03, 300.0 / w)):
                for rate in log_grid(1e-4, 1e3, 48):
                    rows.append({"config": "toy/adam/init1/r", "model": "toy", "optimizer": "adam", "init": "1",
                                 "alpha_scaling": "r", "scale": 1.0, "width": w, "rank": 1, "seed": seed,
                                 "slice": name, "slice_name": name, "role": "edge", "held": held,
                                 "held_n": -1.0 if name == "b-edge" else 0.0, "held_r": 0.0, "round": 0, "rate": rate,
                                 "eta_a": held if name == "b-edge" else rate, "eta_b": rate if name == "b-edge" else held,
                                 "diverged_step": -1, "loss_0": 1.0,
                                 "loss_t20": 0.5 * rate / edge if rate < edge else 2.0, "cpu_s": 0.1})
    config = LawsConfig(model="toy", optimizer="adam", init="1", widths=(64, 128, 256, 512), ranks=(1,), r0=1,
                        seeds=tuple(range(4)), criteria=(Criterion(20, 1.0),),
                        slices=(SliceSpec("b-edge", held=0.01, held_n=-1.0), SliceSpec("a-edge", held=0.03)))

    def predictor(kind, c, s=None):
        return LawPrediction.given({"edge": {"b-edge": 0.0, "a-edge": -1.0}.get(getattr(s, "name", ""))}.get(kind, 1.0))
    laws = analyse(pd.DataFrame(rows), [config], predictor=predictor).laws.set_index("law")
    assert laws.loc["corner lambda_c", "slope"] == pytest.approx(1.0, abs=0.02)
    assert laws.loc["corner lambda_c", "verdict"] == "PASS" and laws.loc["B edge", "verdict"] == "PASS"

    def wrong(kind, c, s=None):
        return LawPrediction.given(0.0)
    assert analyse(pd.DataFrame(rows), [config], predictor=wrong).laws.set_index("law").loc[
        "corner lambda_c", "verdict"] == "FAIL"


# -- optima ----------------------------------------------------------------------------------------
def test_slice_optimum_finds_a_parabola_vertex_and_flags_an_end():
    x = np.log(log_grid(1e-3, 1.0, 3))
    true = np.log(0.02)
    star, value, interior = slice_optimum(x, (x - true) ** 2 + 1.0)
    assert interior and star == pytest.approx(true) and value == pytest.approx(1.0)
    star, _, interior = slice_optimum(x, -x)
    assert not interior and star == pytest.approx(x[-1])


def test_ratio_profile_tells_a_ridge_from_an_identified_optimum():
    lam, eta = np.log(np.logspace(-1, 5, 13)), np.log(np.logspace(-5, 1, 25))
    L, E = np.meshgrid(lam, eta, indexing="ij")
    bowl = np.exp(0.2 * (E + 6) ** 2 + 0.5 * (L - 5) ** 2)         # optimum at log lambda = 5 (interior)
    ridge = np.exp(0.2 * (2 * E + L + 9) ** 2)                      # only eta_A^2 lambda (the product) matters
    ident = ratio_profile(np.stack([bowl, bowl]), lam, eta, 0.25)
    flat = ratio_profile(np.stack([ridge, ridge]), lam, eta, 0.25)
    assert ident["identified"] and ident["log_ratio_star"] == pytest.approx(5.0, abs=0.6)
    assert not flat["identified"] and flat["span"] > 4 and "ridge" in flat["reason"]


def test_fig2_table_reads_the_best_pair_and_the_region_corner():
    rows = []
    a_grid, b_grid = log_grid(1e-3, 1.0, 3), log_grid(1e-3, 1.0, 3)
    for s in range(3):
        for a in a_grid:
            for b in b_grid:  # trains below eta_A = 0.1 and eta_B = 0.5; best at the corner
                ok = a <= 0.11 and b <= 0.5
                rows.append({"reading": "sgd/paper-mlp/initpaper", "split": "train", "step": 200, "seed": s,
                             "eta_a": a, "eta_b": b, "loss_0": 1.0, "diverged": not ok,
                             "loss": (0.9 - 0.1 * (np.log10(a * b) + 6) if ok else np.nan)})
    t = fig2_table(pd.DataFrame(rows)).iloc[0]
    assert t.a_edge == pytest.approx(0.1) and t.b_edge == pytest.approx(a_grid[a_grid <= 0.5].max())
    assert (t.best_eta_a, t.best_eta_b) == (pytest.approx(0.1), pytest.approx(t.b_edge))
    assert t.corner_ratio == pytest.approx(t.b_edge / 0.1)


def test_the_printed_fig2_model_cannot_train_under_init1_or_init2():
    d = dead_start()
    assert (d.max_abs_grad == 0).all() and (d.loss_0 == d.loss_20).all()


def test_teacher_rank_keeps_the_target_when_the_lora_rank_changes():
    y = [build_model("linear", ModelConfig(width=32, rank=r, teacher_rank=4), 0).train_batch(1)[1] for r in (1, 8)]
    assert torch.equal(y[0], y[1])
    with pytest.raises(ValueError):
        ModelConfig(width=32, rank=2, teacher_rank=64).check()


# -- the command -----------------------------------------------------------------------------------
def test_select_configs_narrows_and_overrides():
    configs = select_configs(["width"], quick=True, models=["linear"], inits=["1"], slices=["b-edge", "a-edge"],
                             laws=["edge", "corner"], widths=[64, 128], seeds=2, fraction=0.5, steps=10)
    assert len(configs) == 1
    c = configs[0]
    assert [s.name for s in c.slices] == ["b-edge", "a-edge"] and c.widths == (64, 128) and len(c.seeds) == 2
    assert c.criteria == (Criterion(10, 0.5),)


@pytest.mark.parametrize("argv,fragment", [
    (["--slices", "c-edge"], "unknown slice 'c-edge'"),
    (["--inits", "3"], "unknown init '3'"),
    (["--scales", "cube-r"], "unknown scale 'cube-r'"),
    (["--laws", "valley"], "unknown law 'valley'"),
    (["--studies", "depth"], "unknown studie 'depth'"),
    (["--range", "1:1e-3"], "inverted"),
    (["--range", "1:1"], "empty"),
    (["--range", "0:1"], "0 < LOW"),
    (["--fraction", "0"], "--fraction"),
    (["--depth", "2"], "apply to the mlp only"),
    (["--models", "mlp", "--detach-lora-inputs"], "--depth 2 or more"),
    (["--models", "mlp", "--depth", "0"], "--depth must be a positive integer"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, argv, fragment):
    out = tmp_path / "never"
    assert main(["lr-laws", "--quick", "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0]
    assert not out.exists()


@pytest.mark.heavy(4)
def test_a_tiny_study_writes_the_tables_and_resumes(tmp_path, capsys, monkeypatch):
    argv = ["lr-laws", "--studies", "gd", "--quick", "--models", "toy", "--inits", "1", "--slices",
            "b-edge,a-edge", "--laws", "edge,corner", "--widths", "64,128", "--seeds", "2", "--executor", "inline",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    laws = pd.read_csv(tmp_path / "laws.csv")
    assert list(laws.columns[:12]) == ["law", "model", "optimizer", "init", "alpha_scaling", "variable", "predicted",
                                       "slope", "lo", "hi", "verdict", "reason"]
    assert set(laws.law) == {"B edge", "A edge", "corner lambda_c"}
    edges = pd.read_csv(tmp_path / "edges.csv")
    assert len(edges) == 2 * 2 * 2 and {"width", "seed", "slice", "edge", "censored"} <= set(edges.columns)
    # the golden lr-laws report: its sections in order (a section that disappears fails here)
    report = (tmp_path / "report.md").read_text()
    assert [line for line in report.splitlines() if line.startswith("#")] == [
        "# lr-laws: edges of the trainable region, the corner and the optimum, against theory", "## What it found",
        "## How it is measured", "## Laws (primary criterion)", "## Censored edges",
        "## How the slopes move with the criterion (f, T)", "## Optima", "## Search cost", "## Figures",
        "## Appendix: edges per width (geometric mean over seeds, 95% interval)"]
    monkeypatch.setattr(lr_laws_report, "draw_figures", lambda *a: {})  # drawn above; resuming is the point here
    assert main(argv) == 0
    assert json.loads((tmp_path / "meta.json").read_text())["resumed_shards"] == 4


# -- pairs, reasons and validate's law -----------------------------------------------------------
def test_paired_laws_pair_one_choice_only():
    names = [(n, a.label, b.label) for n, a, b in paired_configs(catalogue("width") + catalogue("rank"))]
    inits = [x for x in names if x[0].startswith("one-rate edge, Init")]
    # never a control; the stacked mlp pairs with itself at the same depth
    assert {(a, b) for _, a, b in inits} == {("linear/adam/init1/r", "linear/adam/init2/r"),
                                             ("mlp/adam/init1/r", "mlp/adam/init2/r"),
                                             ("mlp/adam/init1/r/depth 2", "mlp/adam/init2/r/depth 2")}
    scales = [x for x in names if x[0].startswith("one-rate edge, s =")]
    assert len(scales) == 2 * 3 and all(b.split("/")[3] == "r" for _, _, b in scales)


def test_known_reasons_quote_the_control_and_say_whether_it_restores_the_prediction():
    from studies.reports.lr_laws_known import LINEAR_INIT2, OVERSHOOT_CONTROL, overshoot

    def row(key, slope, verdict):
        return {"law": "one-rate edge", "config": key.label, "slope": slope, "lo": slope - 0.05, "hi": slope + 0.05,
                "predicted": -1.0, "verdict": verdict}
    fixed = overshoot(pd.DataFrame([row(LINEAR_INIT2, -1.8, "FAIL"), row(OVERSHOOT_CONTROL, -1.05, "PASS")]))
    assert len(fixed) == 1 and "n^-1.05" in fixed[0] and "the overshoot is the cause" in fixed[0]
    not_fixed = overshoot(pd.DataFrame([row(LINEAR_INIT2, -1.8, "FAIL"), row(OVERSHOOT_CONTROL, -1.7, "FAIL")]))
    assert "not the whole reason" in not_fixed[0]
    assert overshoot(pd.DataFrame([row(LINEAR_INIT2, -1.0, "PASS")])) == []


def test_validate_corner_law_runs_in_its_own_store_and_gives_its_rows(tmp_path, monkeypatch):
    from studies import validate
    from studies.run.context import RunContext, RunOptions
    small = replace(validate.corner_config(), widths=(64, 128, 256), seeds=(0, 1), per_decade=2)
    monkeypatch.setattr(validate, "corner_config", lambda: small)
    ctx = RunContext(RunOptions(out=tmp_path, device="cpu", executor="inline", progress=False), {"study": "t"})
    runs = validate.run_corner(ctx)
    laws = analyse(runs, [small], kinds=("edge", "corner")).laws
    assert list(laws.law) == ["B edge", "A edge", "corner lambda_c"]
    assert (tmp_path / "lr_corner" / "manifest.json").is_file()


def test_every_setting_that_trains_differently_reaches_the_label():
    from studies.lr_laws.config import ADAM_CRITERIA, adam_slices, check_labels
    # the catalogue's labels keep their names (stored runs and reports refer to them)
    labels = {c.label for s in ("width", "gd", "rank") for c in catalogue(s)}
    assert {"mlp/adam/init1/r", "linear/adam/init2/r/teacher b0-aligned", "mlp/adam/init2/r/B0 x 0.25",
            "toy/sgd/init1/r", "paper-mlp/sgd/initpaper/r", "linear/adam/init1/none/n=1024 vs r"} <= labels
    base = LawsConfig(model="mlp", optimizer="adam", init="1", widths=(64, 128), seeds=(0,),
                      slices=adam_slices(False)[:1], criteria=ADAM_CRITERIA[:1], batch_size=8)
    variants = [replace(base, depth=2), replace(base, depth=3), replace(base, batch_size=16),
                replace(base, batch_size=None), replace(base, dtype="float64"), replace(base, data="fresh"),
                replace(base, alpha=2.0), replace(base, n0=128), replace(base, depth=2, detach_lora_input=True)]
    names = [c.label for c in [base] + variants]
    assert len(set(names)) == len(names)
    assert names[1] == "mlp/adam/init1/r/depth 2" and names[4] == "mlp/adam/init1/r/batch 32"
    # what still shares a label (a search setting) is refused rather than merged
    with pytest.raises(SpecError, match="share the label.*seeds"):
        check_labels([base, replace(base, seeds=(0, 1))])
    check_labels([base, base])
    with pytest.raises(SpecError, match="stacked LoRA layers"):
        replace(base, detach_lora_input=True)


def test_a_stacked_mlp_is_judged_against_the_stacked_laws_and_a_factory_is_not():
    configs = {c.key: c for c in catalogue("width")}
    stack, control = configs[ConfigKey("mlp", "adam", "1", depth=2)], configs[ConfigKey("mlp", "adam", "1", depth=2,
                                                                                        detached=True)]
    b_edge = next(s for s in stack.slices if s.name == "b-edge")
    assert law_prediction("edge", stack, b_edge).exponent == pytest.approx(-0.25)
    assert law_prediction("edge", control, b_edge).exponent == pytest.approx(0.0)
    corner = law_prediction("corner", stack)
    assert (corner.exponent, corner.lower, corner.upper) == (None, pytest.approx(0.75), pytest.approx(1.25))
    init2 = configs[ConfigKey("mlp", "adam", "2", depth=2)]
    one_rate = next(s for s in init2.slices if s.name == "one-rate")
    assert law_prediction("edge", init2, one_rate).exponent == pytest.approx(-0.75)
    # quick: the Init[1] stack and its control, on the B edge and the one-rate edge
    quick = [c for c in catalogue("width", True) if c.depth == 2]
    assert [c.key for c in quick] == [ConfigKey("mlp", "adam", "1", depth=2),
                                      ConfigKey("mlp", "adam", "1", depth=2, detached=True)]
    # a factory's model is predicted by the chain and readout its shards recorded (factory_shapes)
    ref = "toy_models.as_factory:mlp_depth2"
    factory = replace(stack, model=ref, factory=ref, batch_size=None, depth=1)
    one_layer = next(s for s in configs[ConfigKey("mlp", "adam", "1")].slices if s.name == "b-edge")
    unknown = law_prediction("edge", factory, b_edge)  # nothing recorded: one layer, readout not declared
    assert unknown.exponent == law_prediction("edge", configs[ConfigKey("mlp", "adam", "1")], one_layer).exponent
    assert any("declares no readout" in n for n in unknown.notes)
    runs = pd.DataFrame({"config": [factory.label] * 2, "chain": [2, 2], "readout": ["mean-field", "mean-field"]})
    shapes = factory_shapes(runs)
    assert shapes == {factory.label: (2, "mean-field")}
    assert law_prediction("edge", factory, b_edge, shapes).exponent == pytest.approx(-0.25)
    standard = {factory.label: (2, "standard")}  # an aligned feature change moves the output by n^1/2
    assert law_prediction("edge", factory, b_edge, standard).exponent == pytest.approx(-0.5)
    one_rate_1 = next(s for s in stack.slices if s.name == "one-rate")
    assert law_prediction("edge", factory, one_rate_1, standard).exponent == pytest.approx(-0.75)
    assert law_prediction("corner", factory, None, standard).exponent is None  # the A edge is censored
    init2_factory = replace(factory, init="2")
    assert law_prediction("edge", init2_factory, b_edge, {init2_factory.label: (2, "standard")}).exponent is None
    # the stack's optimum: its edge moves, the optimum lies between that and the one-layer optimum
    optimum = law_prediction("optimum", stack, b_edge)
    assert optimum.exponent is None and (optimum.lower, optimum.upper) == (pytest.approx(-0.25), pytest.approx(0.0))


def test_a_depth_override_replaces_the_catalogues_own_stacks():
    chosen = select_configs(["width"], models=["mlp"], depth=3, detach=True)
    assert {c.depth for c in chosen} == {3} and all(c.detach_lora_input for c in chosen)
    assert {c.key for c in chosen} == {ConfigKey("mlp", "adam", i, depth=3, detached=True, **kw)
                                       for i, kw in (("1", {}), ("2", {}), ("2", {"b0_scale": 0.25}))}
