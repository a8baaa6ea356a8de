# %% [markdown]
# # Lesson 2: the LoRA toy model and the three terms of one update
#
# The paper's toy model is f(x) = (W* + b a^T) x with x in R^n, a in R^n, b a scalar (rank 1, one
# output). One gradient step on the loss (f - y)^2 / 2 changes the LoRA output b a^T x by
#
#     delta1 = b (da^T x)          A's move seen through the old b
#     delta2 = db (a^T x)          B's move applied to the old feature
#     delta3 = db (da^T x)         both moves together
#
# With U = f - y: da = -eta_a U b x and db = -eta_b U a^T x, so
# delta1 = -eta_a b^2 U ||x||^2 and delta2 = -eta_b (a^T x)^2 U. Here ||x||^2 = Theta(n) (n aligned
# terms, Lesson 1) and a^T x = Theta(1), so delta1 = Theta(eta_a n) and delta2 = Theta(eta_b).
# Both are Theta(1) exactly when eta_a = Theta(1/n) and eta_b = Theta(1). The package derives
# this step by step:

# %%
import torch

from figures.coord_check import plot_coord_check
from figures.course import QUICK, save
from scaling.theory import predict
from scaling.verdicts import compare
from studies.run.runner import run_coord_check
from studies.run.spec import CoordCheckSpec

torch.set_num_threads(1)
print(predict("toy", "sgd", "2", gA=-1, gB=0, step=2).to_text(explain=True))

# %% [markdown]
# Now measure: train the toy model under gradient descent at many widths with eta_a = c (n/128)^-1
# and eta_b = c (LoRA+), Init[2] (b random, a = 0), and fit each delta's slope against n.

# %%
widths = (256, 512, 1024, 2048) if QUICK else (256, 512, 1024, 2048, 4096, 8192, 16384)
spec = CoordCheckSpec(model="toy", optimizer="sgd", init="2", schemes=("loraplus",), widths=widths,
                      steps=3, seeds=tuple(range(8 if QUICK else 32)))
results = run_coord_check(spec, torch.device("cpu"), progress=False)
exponents = compare(results, steps=(2, 3))
print(exponents[["metric", "step", "slope", "ci_low", "ci_high", "predicted", "verdict"]].to_string(index=False))
save(plot_coord_check(results, 3, exponents[exponents.step == 3], title="toy model, SGD, Init[2], LoRA+"),
     "lesson2_toy")

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson2.md`)
# 1. Under Init[1] (a random, b = 0), which delta is exactly zero at step 1, and why? Check it
#    with `predict("toy", "sgd", "1", -1, 0, 1)` and in `results` after changing the init.
# 2. With one shared rate eta = c (n/128)^g, which g makes delta1 Theta(1), and what happens to
#    delta2 then? (This is the paper's Proposition 1.)
# 3. The fit needs n >> batch size (8 here). Why? Hint: x_i^T x_j for i != j.

# %%
d = exponents[(exponents.step == 3) & exponents.metric.isin(["delta1", "delta2", "delta3"])]
assert (d.verdict != "FAIL").all(), d
