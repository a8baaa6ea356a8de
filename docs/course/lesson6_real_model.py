# %% [markdown]
# # Lesson 6: from theory to a real model
#
# On a pretrained transformer we cannot vary the width, but we can watch the two sides of every
# LoRA layer while it trains. `FeatureLearningMonitor` measures, every few steps and for every
# LoRA layer, delta1 (A's update seen through B) and delta2 (B's update applied to A's feature).
# Here: all-MiniLM-L6-v2 (hidden 384) with PEFT LoRA on query and value, SST-2, the same A rate
# (1e-3) with the LoRA+ ratio 1 and 16.
#
# A prediction first. PEFT starts B at 0 (Init[1]). With Adam, delta2 = dB A z grows like eta_B.
# delta1 = B dA z grows like eta_A times the size of B, and B has grown like eta_B. So raising
# eta_B multiplies *both* sides by the same factor: the balance delta1/delta2 should not move,
# while every delta grows about 16-fold.
#
# The data: SST-2, found where `loraplus-scaling finetune` finds it (`$LORAPLUS_SST2`, then
# `../shared/data/sst2` beside the repository, then `hf:glue/sst2` if `datasets` is installed).
# Without it the lesson runs on generated review sentences (`studies.sst2.write_sample`) and
# says so: the prediction is about how the optimiser moves the two sides of a LoRA layer, not
# about which sentences it reads, so it can be checked anywhere; the accuracies then say
# nothing about SST-2.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from transformers import AutoTokenizer

from figures.course import QUICK, save
from figures.style import series_looks
from studies.finetune import FinetuneSpec, finetune_run, load_data, resolve_model
from studies.run.spec import SpecError
from studies.sst2 import write_sample

# the quick setting (the tests'): 6 steps of 16 sentences cut to 16 tokens, evaluated at steps 0 and 6, so the
# monitor (steps 1, 6, 11, ...) measures step 6 after the first
settings = dict(steps=6 if QUICK else 150, train_limit=160 if QUICK else 2000, dev_limit=32 if QUICK else None,
                eval_every=6 if QUICK else 25, monitor_every=5, seeds=(0,),
                **(dict(batch_size=16, max_length=16) if QUICK else {}))
path = resolve_model("minilm")
tokenizer = AutoTokenizer.from_pretrained(path)
try:
    spec = FinetuneSpec(**settings)
    data, data_name = load_data(spec, tokenizer), "SST-2"
    print(f"data: SST-2 from {spec.data}")
except SpecError as err:
    sample = write_sample(Path(tempfile.gettempdir()) / "loraplus-scaling-course" / "sst2-sample", 2000, 500)
    spec = FinetuneSpec(data=str(sample), **settings)
    data, data_name = load_data(spec, tokenizer), "generated sentences"
    print(f"data: no SST-2 here ({err}).\nUsing generated review sentences instead, from {spec.data}.")
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

fig, ax = plt.subplots(figsize=(5.8, 4.2), layout="constrained")
for (ratio, per_layer), look in zip(summary.items(), series_looks(len(summary))):
    ax.scatter(per_layer.delta1, per_layer.delta2, marker=look.marker, color=look.colour,
               label=f"ratio eta_B/eta_A = {ratio:g}: one point per LoRA layer")
lim = [min(min(p.min()) for p in summary.values()), max(max(p.max()) for p in summary.values())]
ax.plot(lim, lim, color="grey", ls=":", label="delta1 = delta2 (balanced)")
ax.set(xscale="log", yscale="log", xlabel="delta1 = B dA z, A side (RMS over coordinates)",
       ylabel="delta2 = dB A z, B side (RMS)", title=f"MiniLM + {data_name}: each LoRA layer's two sides\n"
       "(median over steps > 1)")
ax.legend()
save(fig, "lesson6_real_model")

# %% [markdown]
# The balance barely moves between ratio 1 and 16, and delta2 grows with eta_B, as predicted: under
# Init[1], LoRA+'s larger B rate makes both sides move faster, and only A's rate (times n) sets
# their balance. That is why `FeatureLearningMonitor.summary()` phrases its advice through eta_A.
#
# **Exercises** (solutions in `solutions/lesson6.md`)
# 1. Which side is smaller here, and what would balance them? Use the theory of Lesson 2 with
#    B grown like eta_B t.
# 2. `monitor.summary()` suggests a ratio multiplier per layer. Run it on the ratio-1 monitor:
#    is its suggestion close to 16? Why might it differ between the query and value layers?
# 3. The accuracy difference after so few steps is not a fair comparison of LoRA and LoRA+. Why not,
#    and what does `loraplus-scaling finetune` do about it?

# %%
r1, r16 = (np.median(summary[r].delta1 / summary[r].delta2) for r in (1.0, 16.0))
growth = np.median(summary[16.0].delta2 / summary[1.0].delta2)
print(f"balance moved by a factor {r16 / r1:.2f}; delta2 grew {growth:.1f}-fold")
assert 0.5 < r16 / r1 < 2 and growth > 4  # the balance does not follow eta_B; the size does
