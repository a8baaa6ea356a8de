# %% [markdown]
# # Lesson 7: the trainable region, its edges and its corner
#
# Lessons 3 and 4 fixed a scheme, eta = c n^gamma, and asked what the feature updates do. A user
# asks the converse: at width n, which (eta_A, eta_B) train at all, which is best, and how do both
# move as n grows? This lesson answers with the *edges* of the trainable region.
#
# **The argument (Adam, Init[1]).** Adam's steps are sign-like, so after t steps B ~ eta_B t and
# dA z ~ eta_A n t (aligned with the input). The output moves by
# delta2 ~ eta_B max(1, eta_A n) and delta1 ~ delta3 ~ eta_B eta_A n. It stays O(1) while
# * eta_B <= c_B: the **B edge**, width-free, and
# * eta_A eta_B <= c / n: the **product edge**; at a held eta_B it is an **A edge**, eta_A ~ 1/n.
#
# LoRA+'s point is the **corner** where the two meet: eta_B ~ c_B, eta_A ~ 1/n, so
# lambda_c = eta_B / eta_A ~ n. With ONE shared rate the product edge gives eta^2 n <= c, so
# eta ~ n^-1/2 (Z_A grows like n^1/2 inside the layer without reaching the output: the
# initialisation paper's "internal instability").
#
# **Why edges and not optima.** Once A0 is negligible, Adam's dynamics are invariant under
# (A, B, eta_A, eta_B) -> (kA, B/k, k eta_A, eta_B/k): the loss depends on eta_A eta_B along a ridge,
# so a loss argmin can slide along it and need not identify lambda at all. An edge is where the
# loss turns from falling to rising: sharp, and its scaling is what the theory predicts.
#
# **The criterion.** Adam seldom overflows; past an edge the loss oscillates above its start. A run
# *trains* when its loss at step T is at most f times its start; the edge is the largest rate that
# still trains (here f = 1, T = 20: the output-stability edge).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from figures.course import QUICK, save
from figures.style import series_colours
from scaling import laws
from scaling.edges import Criterion, fit_edge_law
from studies.lr_laws.analysis import edge_table, transfer_curves
from studies.lr_laws.config import LawsConfig, SliceSpec
from studies.lr_laws.search import laws_shard
from scaling.edges import corner_frame

torch.set_num_threads(1)
widths = (64, 128, 256, 512) if QUICK else (64, 128, 256, 512, 1024, 2048)
slices = (SliceSpec("b-edge", held=1e-2, held_n=-1.0, rate_range=(1e-3, 1e4)),  # eta_A = 0.01 (n/64)^-1
          SliceSpec("a-edge", held=3e-2, rate_range=(1e-6, 1e2)),                # eta_B = 0.03
          SliceSpec("one-rate", rate_range=(1e-6, 1e2)),
          SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(1e-7, 1e1)))     # LoRA+: eta_B = 16 (n/64) eta_A
config = LawsConfig(model="linear", optimizer="adam", init="1", widths=widths, seeds=(0, 1, 2, 3), slices=slices,
                    criteria=(Criterion(20, 1.0),), batch_size=8, per_decade=3)
# every candidate rate of one (width, seed) is a run of ONE population; two refinement rounds follow
runs = pd.concat([laws_shard(config, w, 4, s, torch.device("cpu")) for w in widths for s in config.seeds])
edges = edge_table(runs, [config])
print(f"{len(runs)} runs, {len(runs) / len(edges):.0f} per edge on average")

# %% [markdown]
# **Measure the slopes** and set them against the gamma calculus (`scaling.laws`). The fit is the
# package's usual one: log-log slope over widths with a bootstrap interval over seeds.

# %%
measured = {}
for s in slices:
    fit, _ = fit_edge_law(edges[edges.slice == s.key], "width")
    pred = laws.predict_edge("linear", "adam", "1", s.name, (s.held_n, s.held_r)).exponent
    measured[s.name] = (fit, pred)
    print(f"{s.name:9s} edge ~ n^{fit.slope:+.2f} [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]   predicted n^{pred:+.2f}")
corner = corner_frame(edges, ["config", "width"])
corner_fit, _ = fit_edge_law(corner, "width")
print(f"corner lambda_c ~ n^{corner_fit.slope:+.2f} [{corner_fit.ci_low:+.2f}, {corner_fit.ci_high:+.2f}]   "
      f"predicted n^{laws.predict_corner('linear', 'adam', '1').exponent:+.2f}")

# %% [markdown]
# **The muP-style transfer plot.** Loss at T over its start against log2 of the rate, one curve
# per width. With one shared rate the curves slide left as n grows (the edge moves like n^-1/2); in
# LoRA+'s parametrisation (eta_A = c / n, eta_B = 16 c / 64) they lie on top of each other: the base
# rate c found at one width transfers to every width.

# %%
curves = transfer_curves(runs, config)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
colour = dict(zip(widths, series_colours(len(widths))))
for ax, key, scale in ((axes[0], "one-rate", False), (axes[1], slices[3].key, True)):
    for w, g in curves[curves.slice == key].groupby("width"):
        x = g.rate * (w / 64 if scale else 1)
        ax.plot(np.log2(x), g.loss_ratio, ".-", color=colour[w], label=f"n = {w}")
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set(yscale="log", ylim=(None, 1e3), ylabel="loss(T) / loss(0)",
           xlabel="log2 eta (one rate)" if not scale else "log2 (eta_A n / 64) (LoRA+ base rate)")
    ax.legend(fontsize=7)
for (name, (fit, pred)), col in zip(measured.items(), series_colours(5)):
    e = edges[edges.slice_name == name].groupby("width").edge.apply(lambda v: np.exp(np.log(v).mean()))
    axes[2].loglog(e.index, e.values, "o-", color=col, label=f"{name}: {fit.slope:+.2f} (theory {pred:+.2f})")
c = corner.groupby("width").edge.apply(lambda v: np.exp(np.log(v).mean()))
axes[2].loglog(c.index, c.values, "s--", color=series_colours(5)[4], label=f"corner: {corner_fit.slope:+.2f} (theory +1)")
axes[2].set(xlabel="width n", ylabel="edge", title="edges and corner against n")
axes[2].legend(fontsize=7)
save(fig, "lesson7_lr_laws")

# %% [markdown]
# **From exponents to rates.** A practitioner tuned at a small width and wants the rates at a larger
# one. An edge law is a line in log-log coordinates, so it extrapolates: fit it on the widths
# measured and read it at the target width, with an interval from the seeds (bootstrap over seeds,
# `scaling.transfer.extrapolate`). Holding the exponent at the theory's value fits only the
# intercept and gives a narrower interval -- if the theory is right. The further the target lies
# beyond the widths measured, the wider the interval (and the louder the warning).

# %%
from scaling.transfer import extrapolate

target = 4 * widths[-1]
one_rate = edges[edges.slice_name == "one-rate"]
free = extrapolate(one_rate.width, one_rate.edge, one_rate.seed, target)
held = extrapolate(one_rate.width, one_rate.edge, one_rate.seed, target, exponent=-0.5)
for name, e in (("measured exponent", free), ("theory's exponent -1/2", held)):
    print(f"one-rate edge at n = {target} ({name}): {e.value:.3g} [{e.low:.3g}, {e.high:.3g}]  {e.warning()}")

# %% [markdown]
# `loraplus-scaling lr-laws --target-width N` does this for every configuration, for the edges and
# the optima (`recommended.csv`), and `--check-against RUN` sets the recommendations against a run
# that measured width N. The **transfer test** (`--studies transfer`) asks the practitioner's question
# directly: tune (eta_A, eta_B) and one shared rate at the narrowest width, move them by each rule --
# LoRA+ (eta_A ~ 1/n, eta_B held), one rate held, one rate by its measured law, muA's rule -- and
# compare each with the rates retuned at the wider width. `create_loraplus_optimizer(...,
# base_width=n0, width=n)` applies a rule in a training loop.
#
# **Stacked LoRA layers.** Everything above is for ONE LoRA layer. Real models stack them (query,
# value, fc1 in every block, each feeding the next block). Under Adam and Init[1] the error reaching a
# lower layer through the upper layer's B A aligns the lower layer's step with the upper layer's A,
# and the B edge then falls like n^-(L-1)/(2L) for L layers in series (`scaling.laws.predict_edge(...,
# depth=L)`); detaching the LoRA branches' inputs removes the link and gives the one-layer law back.
# The investigation note "Stacked LoRA layers" has the derivation and the measurements.

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson7.md`)
# 1. Derive the one-rate edge under Init[1] from the two output edges above. Then do it for
#    Init[2] (A0 = 0, B0 random): which term binds first, and what exponent follows?
# 2. Rerun with `criteria=(Criterion(20, 0.5),)` and with `Criterion(40, 1.0)`. The edges move;
#    do their slopes? What does that say about using a loss criterion under Adam?
# 3. Run Init[2] (`init="2"`) on the one-rate slice. `scaling.laws` predicts n^-1; the measurement
#    is steeper. Rerun with `teacher="b0-aligned"`: which assumption of the derivation failed?
# 4. Why can a loss argmin over (eta_A, eta_B) fail to identify lambda* under Init[1] when the corner
#    is sharp? Check with `loraplus-scaling lr-laws --studies width --laws profile`.

# %%
assert abs(measured["b-edge"][0].slope) < 0.15 and abs(measured["one-rate"][0].slope + 0.5) < 0.15
assert corner_fit.slope > 0.6 and measured["ratio"][0].slope < -0.8
