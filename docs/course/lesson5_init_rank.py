# %% [markdown]
# # Lesson 5: initialisation and scaling choices
#
# Three questions practitioners often ask:
# * Why B = 0 and A random (Init[1]), and not the reverse (Init[2])?
# * What if both are zero?
# * Why alpha/r, and is alpha/sqrt(r) (rsLoRA) better?
#
# **Both zero**: dL/dA = B^T (...) = 0 and dL/dB = (...) (A z)^T = 0, so no step ever moves
# anything; training never leaves the saddle. **Init[1] vs Init[2]**: under Init[2] the first
# update of A reaches the output through a random B0, and in a layer whose n outputs the loss sees
# directly, B0 is nearly orthogonal to what the target needs (see the control in `validate`'s report: A's
# own target is Theta(n^-1/2)), so A overshoots and the model trains slowly until B turns.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from figures.course import QUICK, save
from figures.style import label_log_axis, series_looks
from studies.run.runner import run_coord_check
from studies.run.spec import CoordCheckSpec

torch.set_num_threads(1)
steps = 20 if QUICK else 60
losses = {}
for init in ("1", "2", "zero"):
    spec = CoordCheckSpec(model="linear", optimizer="adam", init=init, schemes=("loraplus",), widths=(512,),
                          steps=steps, seeds=(0, 1))
    r = run_coord_check(spec, torch.device("cpu"), progress=False)
    losses[init] = r[r.metric == "loss"].groupby("step").value.mean()
    print(f"init {init}: loss {losses[init].iloc[0]:.3f} -> {losses[init].iloc[-1]:.4f}")

# %% [markdown]
# **Rank.** The update of Z_B is scale x (a sum over the r coordinates of Z_A). Under Adam, dB's
# entries are +-eta_B with signs aligned to Z_A, so the sum is aligned: Theta(r x scale). alpha/r
# keeps it rank-stable; alpha/sqrt(r) makes it grow like sqrt(r).

# %%
ranks = (1, 2, 4, 8, 16, 32) if QUICK else (1, 2, 4, 8, 16, 32, 64, 128)
sizes = {"r": [], "sqrt-r": []}
for scaling in sizes:
    for r_ in ranks:
        spec = CoordCheckSpec(model="mlp", optimizer="adam", init="1", schemes=("loraplus",), widths=(256,),
                              steps=2, seeds=(0, 1), rank=r_, alpha=8.0, alpha_scaling=scaling)
        res = run_coord_check(spec, torch.device("cpu"), progress=False)
        v = res[(res.metric == "delta2") & (res.step == 2) & (res.layer == "hidden1")].value
        sizes[scaling].append(float(np.exp(np.log(v).mean())))
slopes = {k: np.polyfit(np.log(ranks[2:]), np.log(v[2:]), 1)[0] for k, v in sizes.items()}
print({k: round(v, 2) for k, v in slopes.items()})

# %% [markdown]
# **A term the limit drops (the B0 path).** Under Init[2] the first step moves only A, and the
# features change by B0 dA z: Theta(n^(1 + gA)) per coordinate, but along B0's random columns.
# A hidden layer of the mlp reaches the loss through a readout v with entries Theta(1/n), which
# sees that change only as a random sum: the loss falls by Theta(n^(gA + 1/2)). Under Init[1]
# B moves first, its step is built from v itself, and the loss falls by Theta(n^gB). For LoRA+
# both inits are "efficient", yet their first steps scale differently: n^0 against n^-1/2.
# That n^-1/2 term vanishes in the limit, but at n = 128 it is a sixth of the loss, and it is
# behind the mlp's Init[2] late-step excess in `validate` (docs/investigations/init2_b0_path.md).

# %%
from scaling.gamma import fit_power_law
from scaling.theory import first_step_loss_drop

widths = (128, 256, 512, 1024) if QUICK else (128, 256, 512, 1024, 2048, 4096)
drops, drop_fits = {}, {}
for init in ("1", "2"):
    spec = CoordCheckSpec(model="mlp", optimizer="adam", init=init, schemes=("loraplus",), widths=widths,
                          steps=1, seeds=tuple(range(6)))
    r = run_coord_check(spec, torch.device("cpu"), progress=False)
    d = r[(r.metric == "loss_drop") & (r.step == 1)]          # both hidden layers, every seed
    drops[init] = d.groupby("width").value.apply(lambda v: float(np.exp(np.log(v).mean())))
    drop_fits[init] = fit_power_law(d.width, d.value, d.seed)
    predicted = first_step_loss_drop("mlp", "adam", init, -1, 0).exponent
    print(f"init {init}: first-step loss decrease ~ n^{drop_fits[init].slope:+.2f} "
          f"[{drop_fits[init].ci_low:+.2f}, {drop_fits[init].ci_high:+.2f}], predicted n^{predicted:+.1f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.0), layout="constrained")
init_looks = dict(zip(("1", "2", "zero"), series_looks(3)))
init_names = {"1": "Init[1] (B = 0)", "2": "Init[2] (A = 0)", "zero": "both zero"}
for init, curve in losses.items():
    axes[0].plot(curve.index, curve.values, **init_looks[init].line(), markevery=max(1, steps // 10),
                 label=init_names[init])
axes[0].set(yscale="log", title="linear n = 512, Adam, LoRA+ rates", xlabel="step",
            ylabel="training loss (mean over 2 seeds)")
axes[0].legend()
for (scaling, v), look in zip(sizes.items(), series_looks(2)):
    axes[1].plot(ranks, v, **look.line(),
                 label=f"alpha/{'r' if scaling == 'r' else 'sqrt(r)'} (slope {slopes[scaling]:+.2f})")
label_log_axis(axes[1], ranks)
axes[1].set(yscale="log", title="delta2 at step 2 against rank (mlp, n = 256)", xlabel="rank r",
            ylabel="delta2 (RMS over coordinates, geometric mean)")
axes[1].legend()
for init, curve in drops.items():
    axes[2].plot(curve.index, curve.values, **init_looks[init].line(),
                 label=f"{init_names[init]}: slope {drop_fits[init].slope:+.2f}")
label_log_axis(axes[2], widths)
axes[2].set(yscale="log", title="first-step loss decrease per layer (mlp, LoRA+)", xlabel="width n",
            ylabel="loss decrease (geometric mean over layers, seeds)")
axes[2].legend()
save(fig, "lesson5_init_rank")

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson5.md`)
# 1. Rerun the first cell with `teacher="b0-aligned"` in the spec (the teacher inside span(B0)).
#    What happens to Init[2], and what does that say about the cause?
# 2. Under SGD instead of Adam, redo the rank argument: is the r-sum still aligned?
# 3. How would you choose alpha once you have fixed alpha/r? (The forum's "set alpha to the first r
#    tried" answer, restated.)
# 4. Under lora-inv (gA = gB = -1) and Init[2], through which path does the mlp's output learn,
#    and how fast per step? Check your answer against the training-progress table in
#    `validate`'s report.

# %%
assert losses["zero"].nunique() == 1 and losses["1"].iloc[-1] < 0.5 * losses["2"].iloc[-1]
assert slopes["sqrt-r"] - slopes["r"] > 0.3
assert abs(drop_fits["1"].slope - 0.0) < 0.15 and abs(drop_fits["2"].slope + 0.5) < 0.15
