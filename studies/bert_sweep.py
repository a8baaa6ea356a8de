"""A width sweep of a real architecture: BERT-style encoders, LoRA-fine-tuned under LR schemes.

For each hidden size n (depth fixed, heads n/64, intermediate 4n) and seed:
  1. a BertForSequenceClassification built from config is pretrained for ``pretrain_steps``
     full-parameter Adam steps on a synthetic task (is the majority of the tokens in the
     lower half of the vocabulary?), so that the base is not random; the hidden matrices'
     rate follows Adam's width rule, pretrain_lr x n0/n, so the base is trained alike at
     every width (one rate for all widths leaves it collapsed from n = 512 on);
  2. for each scheme, PEFT LoRA (Init[1]-like: A random, B = 0) on query and value is trained
     with Adam on a second synthetic task (is the first token in the lower half?) on one fixed
     batch, eta_A = cA (n/n0)^gA and eta_B = cB (n/n0)^gB, and ``scaling.monitor`` measures
     every LoRA layer at every step.
The deltas are then fitted against n and judged against the theory exactly as in ``validate``
(``scaling.verdicts.compare``); each LoRA layer's input is a LayerNorm'd hidden state with
Theta(1) coordinates, so the prediction is that of an Adam LoRA layer (``mlp``'s, including its
rule that layers after the first get no sharp prediction under an unstable scheme).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from scaling.rules import parse_scheme
from studies.run.shards import Shard, ShardStore, run_shards
from studies.run.spec import SpecError, _positive_ints

N0 = 64


@dataclass(frozen=True)
class BertSweepSpec:
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    seeds: tuple[int, ...] = (0, 1, 2)
    schemes: tuple[str, ...] = ("lora-const", "loraplus")
    layers: int = 2
    vocab: int = 256
    seq_len: int = 16
    batch_size: int = 32
    pretrain_steps: int = 100
    pretrain_lr: float = 1e-3
    steps: int = 6
    rank: int = 4
    c_a: float = 1e-3
    c_b: float = 1e-3

    def __post_init__(self):
        object.__setattr__(self, "widths", _positive_ints("widths", self.widths))
        if any(w % 64 for w in self.widths):
            raise SpecError(f"hidden sizes must be multiples of 64 (head size 64), got {list(self.widths)}")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        try:
            [parse_scheme(s) for s in self.schemes]
        except ValueError as err:
            raise SpecError(str(err)) from None
        for name in ("layers", "vocab", "seq_len", "batch_size", "steps", "rank"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _batch(spec: BertSweepSpec, gen: torch.Generator, task: str):
    ids = torch.randint(1, spec.vocab, (spec.batch_size, spec.seq_len), generator=gen)
    low = ids < spec.vocab // 2
    labels = (low.float().mean(1) > 0.5).long() if task == "pretrain" else low[:, 0].long()
    return ids, labels


def pretrained_base(spec: BertSweepSpec, width: int, seed: int):
    """A briefly pretrained BERT-style classifier of hidden size ``width``: (state dict, config,
    mean pretraining loss over the last 10 steps; chance is log 2 = 0.693)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=spec.vocab, hidden_size=width, num_hidden_layers=spec.layers,
                     num_attention_heads=width // 64, intermediate_size=4 * width, max_position_embeddings=64,
                     num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg)
    # Adam's width rule for the hidden matrices (lr ~ n0/n; embeddings, biases and norms keep
    # pretrain_lr): with one lr for all widths the base collapses from n = 512 on (pretrain loss
    # stuck at chance, every token mapped to one hidden state, encoder gradients ~1e-8, below
    # Adam's eps), and the LoRA fine-tune then measures a dead network, not the width.
    hidden = [p for name, p in model.named_parameters() if p.ndim == 2 and "embeddings" not in name]
    others = [p for name, p in model.named_parameters() if not (p.ndim == 2 and "embeddings" not in name)]
    opt = torch.optim.Adam([{"params": hidden, "lr": spec.pretrain_lr * N0 / width},
                            {"params": others, "lr": spec.pretrain_lr}])
    gen = torch.Generator().manual_seed(1000 + seed)
    losses = []
    for _ in range(spec.pretrain_steps):
        ids, labels = _batch(spec, gen, "pretrain")
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return model.state_dict(), cfg, float(np.mean(losses[-10:]))


def lora_run(spec: BertSweepSpec, state, cfg, width: int, seed: int, scheme: str) -> pd.DataFrame:
    """LoRA fine-tune of one pretrained base under one scheme; the monitor's tidy table."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    from scaling.loraplus import create_loraplus_optimizer
    from scaling.monitor import FeatureLearningMonitor

    torch.manual_seed(10_000 + seed)  # the LoRA init: the same for every scheme
    base = BertForSequenceClassification(cfg)
    base.load_state_dict(state)
    model = get_peft_model(base, LoraConfig(r=spec.rank, lora_alpha=spec.rank, target_modules=["query", "value"],
                                            lora_dropout=0.0))
    sch = parse_scheme(scheme)
    ratio = width / N0
    eta_a, eta_b = spec.c_a * ratio ** sch.gA, spec.c_b * ratio ** sch.gB
    opt = create_loraplus_optimizer(model, torch.optim.Adam, lr=eta_a, loraplus_lr_ratio=eta_b / eta_a)
    monitor = FeatureLearningMonitor(model, every=1)
    ids, labels = _batch(spec, torch.Generator().manual_seed(2000 + seed), "finetune")
    for _ in range(spec.steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        monitor.step()
        opt.zero_grad()
        if not torch.isfinite(loss):
            break
    monitor.close()
    frame = monitor.frame()
    frame["layer"] = (frame.layer.str.replace("base_model.model.bert.encoder.layer.", "L", regex=False)
                      .str.replace(".attention.self.", ".", regex=False))
    return frame.assign(model="bert", optimizer="adam", init="1", scheme=scheme, width=width, seed=seed,
                        eta_a=eta_a, eta_b=eta_b)


def bert_shard(spec: BertSweepSpec, width: int, seed: int) -> pd.DataFrame:
    """One shard: pretrain the base at (width, seed), then every scheme's LoRA run from it."""
    state, cfg, pretrain_loss = pretrained_base(spec, width, seed)
    return pd.concat([lora_run(spec, state, cfg, width, seed, scheme) for scheme in spec.schemes],
                     ignore_index=True).assign(pretrain_loss=pretrain_loss)


def run_bert_sweep(spec: BertSweepSpec, store: ShardStore, executor: str = "inline", workers: int = 2,
                   scheduler: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Every (width, seed) shard the store does not hold yet; all shards' results."""
    shards = [Shard(f"w{w}_s{s}", bert_shard, (spec, w, s)) for w in spec.widths for s in spec.seeds]
    run_shards(shards, store, executor, workers, scheduler, bar="bert-sweep" if progress else None)
    return store.load([sh.key for sh in shards])


def bert_predictor(model, optimizer, init, gA, gB, step):
    """scaling.theory.predict for the encoder's LoRA layers: an Adam LoRA layer with Theta(1)
    inputs, deeper layers as in the mlp model."""
    from scaling.theory import predict
    return predict("mlp" if model == "bert" else model, optimizer, init, gA, gB, step)


def _pretrain_lines(results: pd.DataFrame) -> list[str]:
    """The report's line on the base models (absent from runs stored before it was recorded)."""
    if "pretrain_loss" not in results:
        return []
    losses = results.groupby("width").pretrain_loss.mean()
    return ["Base models: mean pretraining loss over the last 10 steps, per width (chance 0.693): "
            + ", ".join(f"n = {w}: {v:.3f}" for w, v in losses.items()) + ".", ""]


def render(out, results: pd.DataFrame, meta: dict) -> dict[str, str]:
    """exponents.csv (verdicts against the theory), the coordinate-check figure, report.md."""
    from figures.coord_check import plot_coord_check
    from figures.save import save_figure
    from scaling.verdicts import compare
    from studies.reports.validate import verdict_summary
    from studies.run.store import write_csv, write_text

    steps = int(results.step.max())
    exponents = compare(results, sorted({1, 2, steps}), predictor=bert_predictor,  # corrections: derived for the toys only
                        first_layers=lambda names: [n for n in names if n.startswith("L0.")], corrected=False)
    write_csv(exponents, out / "exponents.csv")
    first = results.layer.iloc[0]
    e = exponents.assign(model="bert")
    save_figure(plot_coord_check(results, steps, e, layer=first, title=f"BERT-style encoder, LoRA on {first}, step {steps}"),
                out / "figures" / "bert_width")
    counts = exponents.verdict.value_counts()
    cols = ["scheme", "metric", "layer", "step", "slope", "ci_low", "ci_high", "predicted", "claim", "verdict", "reason"]
    shown = exponents[exponents.layer == first][cols]
    text = [f"# study bert-width: BERT-style encoders, hidden {meta['spec']['widths']}", "",
            f"Verdicts: {counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, {counts.get('INCONCLUSIVE', 0)} "
            "INCONCLUSIVE (tolerance 0.15; the rules of `validate`).", "",
            verdict_summary(exponents).to_markdown(index=False), "",
            *_pretrain_lines(results),
            f"## First LoRA layer ({first})", "", shown.to_markdown(index=False, floatfmt="+.2f"), "",
            "![bert width](figures/bert_width.png)"]
    write_text("\n".join(text) + "\n", out / "report.md")
    return {"bert width": "figures/bert_width.png"}
