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
fig, ax = plt.subplots(figsize=(5.4, 3.8), layout="constrained")
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

# %% [markdown]
# ## When the slope is not the exponent: corrections to scaling
#
# Real quantities are rarely one clean sum. Take an aligned sum of n terms plus the *sizes* of
# N = 4 random sums over the same terms, y = sum_j |x_j| + sum_{i <= 4} |sum_j eps_ij |x_j||.
# The random sums never cancel the aligned one because only their magnitudes are added, as when
# Adam follows the sign of a random-sum gradient: the loss still falls by it (the "B0 path" of
# lesson 5 is this). The gamma calculus keeps the largest term, gamma = 1, and the next one,
# n^{1/2}: y = c n (1 + d n^{-1/2}), with the correction exponent omega = 1 - 1/2 = 1/2 known
# before any measurement. `fit_with_correction` fits the leading exponent and that correction
# together (omega is given, never fitted), with the same bootstrap over seeds.

# %%
from scaling.gamma import fit_with_correction

n_random = 4
mixed = []
for n in widths:
    for s in range(seeds):
        x = np.abs(rng.standard_normal(n))
        mixed.append((n, s, x.sum() + np.abs(rng.choice([-1, 1], (n_random, n)) @ x).sum()))
mixed = np.array(mixed)
straight, corrected = fit_with_correction(mixed[:, 0], mixed[:, 2], mixed[:, 1], omega=0.5)
print(f"straight slope:  {straight.slope:+.3f} [{straight.ci_low:+.3f}, {straight.ci_high:+.3f}]"
      f"  local slopes {' '.join(f'{v:+.2f}' for v in straight.local_slopes)}")
print(f"corrected gamma: {corrected.slope:+.3f} [{corrected.ci_low:+.3f}, {corrected.ci_high:+.3f}]"
      f"  (d n^-1/2 = {corrected.share:.2f} at n = {widths[0]})")

# %%
fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
means = np.array([np.exp(np.mean(np.log(mixed[mixed[:, 0] == n, 2]))) for n in widths])
ax.semilogx(widths, means / widths, "o", label="measured y / n")
grid = np.array(widths, float)
scale = np.exp(np.mean(np.log(means / grid ** corrected.slope / (1 + corrected.share * (grid / grid[0]) ** -0.5))))
ax.semilogx(grid, scale * grid ** (corrected.slope - 1) * (1 + corrected.share * (grid / grid[0]) ** -0.5), "-",
            label=f"corrected fit, gamma = {corrected.slope:.2f}")
ax.semilogx(grid, means[-1] / grid[-1] * (grid / grid[-1]) ** (straight.slope - 1), "--",
            label=f"straight line, slope = {straight.slope:.2f}")
ax.set(xlabel="n", ylabel="y / n", title="an n^1/2 correction bends the log-log line")
ax.legend()
save(fig, "lesson1_correction")

# %% [markdown]
# **Exercises** (continued)
# 4. The straight slope is below 1 and its local slopes climb towards 1. **Why does the straight
#    slope disagree** with the exponent, and why does the corrected fit not? At which width would
#    the straight slope over a factor 64 of widths be within 0.02 of 1?
# 5. Replace the magnitudes |sum_j eps_ij |x_j|| by the signed sums. Which omega does the
#    correction have now? (Hint: the seed mean of log y, and a zero-mean term.) Fit with it.

# %%
assert not straight.ci_low <= 1.0 <= straight.ci_high and straight.slope < 0.95
assert corrected.ci_low <= 1.0 <= corrected.ci_high and abs(corrected.slope - 1.0) < 0.06
