# %% [markdown]
# # Lesson 1: coordinate sizes and the gamma-operator
#
# Infinite-width arguments track every quantity by one number: its exponent gamma in
# v = Theta(n^gamma). Products add exponents, and a sum of n terms depends on how they line up:
#
# * n **independent** zero-mean Theta(1) terms add up to Theta(n^{1/2}) (a random walk);
# * n **aligned** Theta(1) terms add up to Theta(n).
#
# This 1/2-versus-1 rule decides everything in LoRA+: an Adam update dA of A's entries is
# aligned with the layer's input z, so dA z = Theta(eta_A n) (not eta_A sqrt(n)), and A's learning
# rate must shrink like 1/n while B's need not. Here we measure the rule.

# %%
import matplotlib.pyplot as plt
import numpy as np

from figures.course import QUICK, save
from figures.style import label_log_axis, series_looks
from scaling.gamma import fit_power_law

rng = np.random.default_rng(0)
widths = [2 ** k for k in range(6, 13 if QUICK else 17)]
seeds = 20
rows = []
for n in widths:
    for s in range(seeds):
        x = rng.standard_normal(n)                 # Theta(1) coordinates
        rows.append((n, s, abs(np.sum(rng.choice([-1, 1], n) * np.abs(x))), abs(np.sum(np.abs(x)))))
rows = np.array(rows)
independent = fit_power_law(rows[:, 0], rows[:, 2], rows[:, 1])
aligned = fit_power_law(rows[:, 0], rows[:, 3], rows[:, 1])
print(f"independent signs: slope {independent.slope:+.3f} [{independent.ci_low:+.3f}, {independent.ci_high:+.3f}]")
print(f"aligned signs:     slope {aligned.slope:+.3f} [{aligned.ci_low:+.3f}, {aligned.ci_high:+.3f}]")

# %%
fig, ax = plt.subplots(figsize=(5.4, 3.8))
for (col, label, fit), look in zip(((2, "independent signs", independent), (3, "aligned signs", aligned)),
                                   series_looks(2)):
    means = [np.exp(np.mean(np.log(rows[rows[:, 0] == n, col]))) for n in widths]
    ax.plot(widths, means, **look.line(), label=f"{label}: slope {fit.slope:+.2f}")
label_log_axis(ax, widths[::2])
ax.set(yscale="log", xlabel="number of terms n", ylabel=f"|sum of the n terms| (geometric mean, {seeds} seeds)",
       title="the 1/2 vs 1 rule")
ax.legend()
save(fig, "lesson1_gamma")

# %% [markdown]
# **What to take away.** The measured slopes are 1/2 and 1 within their intervals
# (`fit_power_law` bootstraps over seeds). In LoRA: Z_A = A0 z with A0 ~ N(0, 1/n) is a sum of n
# independent terms of size n^{-1/2}, so Z_A(0) = Theta(1); an Adam update dA = eta_A sign(...)
# aligned with z gives dA z = Theta(eta_A n).
#
# **Exercises** (solutions in `solutions/lesson1.md`)
# 1. What is gamma of a sum of n terms of which only sqrt(n) are aligned and the rest independent?
#    Predict, then measure it by editing the cell above.
# 2. z has Theta(1) coordinates and A0 ~ N(0, 1/n). What is gamma of ||A0||_F (r rows)?
#    And of A0 z?
# 3. Why does Adam's update align with z while SGD's gradient dA = (B^T g) z^T is *also* aligned?
#    What then differs between the two optimisers? (Lesson 4 returns to this.)

# %%
assert abs(independent.slope - 0.5) < 0.1 and abs(aligned.slope - 1.0) < 0.05
