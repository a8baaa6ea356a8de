# %% [markdown]
# # Lesson 6: from theory to a real model
#
# On a pretrained transformer we cannot vary the width, but we can watch the two sides of every
# LoRA layer while it trains. `FeatureLearningMonitor` measures, every few steps and for every
# LoRA layer, delta1 (A's update seen through B) and delta2 (B's update applied to A's feature).
# The theory says equal rates leave one side lazy at large width, and the ratio eta_B / eta_A = Theta(n)
# balances them. Here: all-MiniLM-L6-v2 (hidden 384) with PEFT LoRA on query and value, SST-2,
# ratio 1 against ratio 16.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import AutoTokenizer

from _common import QUICK, save
from studies.finetune import FinetuneSpec, finetune_run, load_data, resolve_model

torch.set_num_threads(2)
data_dir = Path.cwd().resolve().parents[2] / "shared" / "data" / "sst2"
spec = FinetuneSpec(data=str(data_dir), steps=20 if QUICK else 150, train_limit=512 if QUICK else 2000,
                    dev_limit=128 if QUICK else None, eval_every=10 if QUICK else 25, monitor_every=5, seeds=(0,))
path = resolve_model("minilm")
data = load_data(spec, AutoTokenizer.from_pretrained(path))
runs = {}
for ratio in (1.0, 16.0):
    evals, monitor = finetune_run(spec, path, data, ratio, 1e-3, seed=0)
    runs[ratio] = (evals, monitor)
    print(f"ratio {ratio:g}: dev accuracy {evals[-1]['dev_acc']:.3f} after {evals[-1]['step']} steps")

# %%
summary = {}
for ratio, (_, monitor) in runs.items():
    m = monitor[(monitor.step > 1) & monitor.metric.isin(["delta1", "delta2"])]
    per_layer = m.pivot_table(index="layer", columns="metric", values="value", aggfunc="median")
    summary[ratio] = per_layer
    print(f"ratio {ratio:g}: median over layers of delta1/delta2 = {np.median(per_layer.delta1 / per_layer.delta2):.3g}")

fig, ax = plt.subplots(figsize=(5.5, 3.8))
for ratio, per_layer in summary.items():
    ax.scatter(per_layer.delta1, per_layer.delta2, label=f"ratio {ratio:g}")
lim = [min(min(p.min()) for p in summary.values()), max(max(p.max()) for p in summary.values())]
ax.plot(lim, lim, color="grey", ls=":", label="delta1 = delta2")
ax.set(xscale="log", yscale="log", xlabel="delta1 (A side)", ylabel="delta2 (B side)",
       title="MiniLM + SST-2: each LoRA layer's two sides")
ax.legend()
save(fig, "lesson6_real_model")

# %% [markdown]
# **Exercises** (solutions in `solutions/lesson6.md`)
# 1. With ratio 1, which side is smaller, and by about how much? Compare with Lesson 2's
#    prediction for eta_A = eta_B at n = 384.
# 2. `monitor.summary()` suggests a ratio multiplier per layer. Run it on the ratio-1 monitor:
#    is its suggestion close to 16? Why might it differ between the query and value layers?
# 3. The accuracy difference after 20 steps is not a fair comparison of LoRA and LoRA+. Why not,
#    and what does `loraplus-scaling finetune` do about it?

# %%
r1, r16 = (np.median(summary[r].delta1 / summary[r].delta2) for r in (1.0, 16.0))
assert r16 < r1  # raising eta_B moves the balance towards B, as the theory says
