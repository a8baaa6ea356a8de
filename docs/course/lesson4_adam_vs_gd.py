# %% [markdown]
# # Lesson 4: Adam against gradient descent, and the loss normalisation
#
# With SGD an update is the gradient times the rate, so its size carries the size of the output
# gradient. Averaging the squared error over the n output coordinates ("mean") instead of summing
# it ("sum") divides that gradient by n, and every SGD exponent moves with it. Adam divides each
# entry of the update by the running size of its own gradient: the 1/n cancels and the exponents
# do not depend on the normalisation. (The toy model of Lesson 2 has one output, where mean and
# sum coincide; `scaling.theory` states its SGD convention for that reason.)
#
# Experiment: the n x n LoRA layer, rates eta_A = eta_B = c (n/128)^-1, under SGD and Adam, each
# with both normalisations.

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

from figures.course import QUICK, save
from figures.style import label_log_axis, series_looks
from scaling.gamma import fit_power_law
from studies.run.runner import run_coord_check
from studies.run.spec import CoordCheckSpec

torch.set_num_threads(1)
widths = (128, 256, 512, 1024) if QUICK else (128, 256, 512, 1024, 2048, 4096)
rows = []
for optimizer, scheme in (("sgd", "gA=-1,gB=-1,cA=0.02,cB=0.02"), ("adam", "gA=-1,gB=-1,cA=0.01,cB=0.01")):
    for reduction in ("mean", "sum"):
        spec = CoordCheckSpec(model="linear", optimizer=optimizer, init="1", schemes=(scheme,), widths=widths,
                              steps=2, seeds=(0, 1, 2), loss_reduction=reduction)
        r = run_coord_check(spec, torch.device("cpu"), progress=False)
        for metric in ("delta2", "dz_b"):
            m = r[(r.metric == metric) & (r.step == 2)]
            fit = fit_power_law(m.width, m.value, m.seed)
            rows.append({"optimizer": optimizer, "loss": reduction, "metric": metric, "slope": fit.slope,
                         "curve": m.groupby("width").value.median()})
table = pd.DataFrame(rows)
print(table.pivot_table(index=["optimizer", "loss"], columns="metric", values="slope").round(2))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
looks = dict(zip(("mean", "sum"), series_looks(2)))
for ax, optimizer in zip(axes, ("sgd", "adam")):
    for row in table[(table.optimizer == optimizer) & (table.metric == "dz_b")].itertuples():
        ax.plot(row.curve.index, row.curve.values, **looks[row.loss].line(),
                label=f"loss {row.loss} over outputs: slope {row.slope:+.2f}")
    label_log_axis(ax, widths)
    ax.set(yscale="log", title=f"{optimizer}: dz_b at step 2", xlabel="width n",
           ylabel="dz_b (RMS over coordinates, median over seeds)")
    ax.legend()
save(fig, "lesson4_adam_vs_gd")

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson4.md`)
# 1. By how much does the SGD slope move between "mean" and "sum", and why exactly that much?
# 2. Under SGD with "mean", which (gA, gB) would make this layer efficient? Derive it from
#    Lesson 2 with the output gradient Theta(1/n) per coordinate.
# 3. Why is the Adam update still not exactly invariant to the normalisation at step 1?
#    (Hint: epsilon.)

# %%
slopes = table.pivot_table(index=["optimizer", "loss"], columns="metric", values="slope")
assert abs(slopes.loc[("adam", "mean"), "dz_b"] - slopes.loc[("adam", "sum"), "dz_b"]) < 0.15
assert slopes.loc[("sgd", "sum"), "dz_b"] - slopes.loc[("sgd", "mean"), "dz_b"] > 0.5
