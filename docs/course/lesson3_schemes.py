# %% [markdown]
# # Lesson 3: why one learning rate cannot work, and what LoRA+ does
#
# Proposition 1 of the paper: with eta_A = eta_B = Theta(n^c), no c makes both sides of the update
# Theta(1). Proposition 2 / Theorem 1: eta_A = Theta(1/n), eta_B = Theta(1) does, so
# eta_B / eta_A = Theta(n). We run the coordinate check of an n x n LoRA layer under Adam and
# four schemes (all with the same rates at n0 = 128):
#
# | scheme | gA | gB | predicted |
# |---|---|---|---|
# | loraplus | -1 | 0 | efficient: every delta Theta(1) |
# | lora-inv | -1 | -1 | lazy: every delta Theta(1/n) |
# | lora-sqrt | -1/2 | -1/2 | unstable: Z_A grows like n^{1/2} |
# | lora-const | 0 | 0 | unstable: everything grows like n |

# %%
import torch

from figures.coord_check import plot_coord_check
from figures.course import QUICK, save
from figures.phase import phase_points, plot_phase_diagram
from scaling.phase import phase_diagram
from scaling.verdicts import compare
from studies.run.runner import run_coord_check
from studies.run.spec import CoordCheckSpec

torch.set_num_threads(1)
widths = (128, 256, 512, 1024) if QUICK else (128, 256, 512, 1024, 2048, 4096)
spec = CoordCheckSpec(model="linear", optimizer="adam", init="1", widths=widths, steps=3,
                      seeds=tuple(range(3 if QUICK else 8)))
results = run_coord_check(spec, torch.device("cpu"), progress=False)
exponents = compare(results, steps=(3,))
table = exponents.pivot_table(index="scheme", columns="metric", values="slope")[["delta1", "delta2", "delta3", "z_a"]]
print(table.round(2))
save(plot_coord_check(results, 3, exponents, title="n x n LoRA layer, Adam, Init[1], step 3"), "lesson3_coord_check")

# %% [markdown]
# The phase diagram puts every (gA, gB) in its class; the points are the four schemes measured
# above, coloured by the share of their checks that PASS.

# %%
save(plot_phase_diagram(phase_diagram("adam", "1", "linear"), phase_points(exponents)), "lesson3_phase")

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson3.md`)
# 1. Read the slopes: which scheme has every delta near 0, which near -1, and which grow?
# 2. lora-sqrt's z_a slope is below its predicted +1/2 at these widths. Why? (Hint: Z_A = Z_A(0) +
#    the updates; compare `dz_a`.)
# 3. Find, on the phase diagram, all (gA, gB) that are efficient under Init[2] (`theory --init 2
#    --phase-diagram`). Why is there more than one point?

# %%
loraplus = table.loc["loraplus"]
assert (loraplus.abs() < 0.2).all() and (table.loc["lora-inv", ["delta1", "delta2", "delta3"]] < -0.8).all()
