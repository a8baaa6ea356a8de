"""The BERT-style encoder family: a 2-layer BertForSequenceClassification built from config
(hidden n, heads n/64, intermediate 4n), pretrained, then given PEFT LoRA on query and value.

Pretraining: ``pretrain_steps`` full-parameter Adam steps with the width rule
(``studies.families.pretrain``) on a synthetic task, fresh batches each step: is the majority
of the tokens in the lower half of the vocabulary? Fine-tune task (the Task's one fixed batch):
is the first token in the lower half? LoRA: r = alpha = rank, Init[1] (PEFT's default: A
random, B = 0), every other parameter frozen. Seeds: the base from ``seed``, its pretraining
data from 1000 + seed, the LoRA initialisation from 10000 + seed, the fine-tune batch from
2000 + seed. Pretraining uses PyTorch's SDPA attention; the fine-tune model uses the eager
attention (the same arithmetic, which torch.func can batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaling.factory import Task
from studies.families.pretrain import check_width, lora_task, pretrain


@dataclass(frozen=True)
class BertFamily:
    layers: int = 2
    vocab: int = 256
    seq_len: int = 16
    batch_size: int = 32
    pretrain_steps: int = 100
    pretrain_lr: float = 1e-3
    base_width: int = 64  # the width at which pretraining's hidden matrices train at pretrain_lr
    targets: tuple[str, ...] = ("query", "value")
    init: str = "1"  # "1": PEFT's A random, B = 0; "2": A = 0, B ~ N(0, 1)

    def batch(self, gen: torch.Generator, task: str, device=None) -> dict:
        """{"input_ids": (batch, seq_len), "labels": (batch,)} for "pretrain" or "finetune"."""
        ids = torch.randint(1, self.vocab, (self.batch_size, self.seq_len), generator=gen)
        low = ids < self.vocab // 2
        labels = (low.float().mean(1) > 0.5).long() if task == "pretrain" else low[:, 0].long()
        return {"input_ids": ids.to(device), "labels": labels.to(device)}

    def config(self, width: int):
        from transformers import BertConfig
        return BertConfig(vocab_size=self.vocab, hidden_size=width, num_hidden_layers=self.layers,
                          num_attention_heads=width // 64, intermediate_size=4 * width, max_position_embeddings=64,
                          num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

    def check(self, width: int, rank: int) -> None:
        check_width(width, rank)
        if self.init not in ("1", "2"):
            raise ValueError(f"init must be '1' or '2', got {self.init!r}")

    def pretrained(self, width: int, seed: int, device=None):
        """(pretrained BertForSequenceClassification, mean loss of its last 10 pretraining steps;
        chance is log 2 = 0.693)."""
        from transformers import BertForSequenceClassification
        self.check(width, 1)
        torch.manual_seed(seed)
        model = BertForSequenceClassification(self.config(width)).to(device)
        gen = torch.Generator().manual_seed(1000 + seed)
        loss = pretrain(model, lambda: self.batch(gen, "pretrain", device), self.pretrain_steps, self.pretrain_lr,
                        width, self.base_width)
        return model, loss

    def __call__(self, width: int, rank: int, seed: int, device=None) -> Task:
        self.check(width, rank)
        base, pretrain_loss = self.pretrained(width, seed, device)
        return lora_task(base, self.targets, rank, self.init, seed,
                         self.batch(torch.Generator().manual_seed(2000 + seed), "finetune", device), pretrain_loss)


make = BertFamily()
