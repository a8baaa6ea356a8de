# %% [markdown]
# # Lesson 5: initialisation and scaling choices
#
# Three questions practitioners ask (THEORY.md):
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
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
import matplotlib.pyplot as plt
import numpy as np
import torch

from _common import QUICK, save
from studies.runner import run_coord_check
from studies.spec import CoordCheckSpec

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

# %%
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
for init, curve in losses.items():
    axes[0].semilogy(curve.index, curve.values, label=f"init {init}")
axes[0].set(title="linear n = 512, Adam, LoRA+ rates", xlabel="step", ylabel="loss")
axes[0].legend()
for scaling, v in sizes.items():
    axes[1].loglog(ranks, v, "o-", label=f"alpha/{'r' if scaling == 'r' else 'sqrt(r)'} (slope {slopes[scaling]:+.2f})")
axes[1].set(title="delta2 at step 2 against rank (mlp, n = 256)", xlabel="rank r")
axes[1].legend()
save(fig, "lesson5_init_rank")

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson5.md`)
# 1. Rerun the first cell with `teacher="b0-aligned"` in the spec (the teacher inside span(B0)).
#    What happens to Init[2], and what does that say about the cause?
# 2. Under SGD instead of Adam, redo the rank argument: is the r-sum still aligned?
# 3. How would you choose alpha once you have fixed alpha/r? (The forum's "set alpha to the first r
#    tried" answer, restated.)

# %%
assert losses["zero"].nunique() == 1 and losses["1"].iloc[-1] < 0.5 * losses["2"].iloc[-1]
assert slopes["sqrt-r"] - slopes["r"] > 0.3
