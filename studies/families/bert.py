"""The BERT-style encoder family: a 2-layer BertForSequenceClassification built from config
(hidden n, heads n / head_size (64 by default), intermediate 4n), pretrained, then given PEFT
LoRA on query and value. ``make`` is the family as the coordinate checks use it; ``laws`` is
lr-laws' (heads of 32, a fine-tune batch of 64 x 4 tokens; see its comment).

Pretraining: ``pretrain_steps`` full-parameter Adam steps with the width rule
(``studies.families.pretrain``) on a synthetic task, fresh batches each step: is the majority
of the tokens in the lower half of the vocabulary? Fine-tune task (the Task's one fixed batch):
is the first token in the lower half? LoRA: r = alpha = rank, Init[1] (PEFT's default: A
random, B = 0), every other parameter frozen. Seeds: the base from ``seed``, its pretraining
data from 1000 + seed, the LoRA initialisation from 10000 + seed, the fine-tune batch from
2000 + seed. The pretrained base comes from the cache of bases when it holds it
(``studies.families.cache``: keyed by every setting but the fine-tune's). Pretraining uses
PyTorch's SDPA attention; the fine-tune model uses the eager attention (the same arithmetic,
which torch.func can batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaling.factory import Task
from studies.families.cache import cached_base
from studies.families.pretrain import base_settings, check_width, lora_task, pretrain


@dataclass(frozen=True)
class BertFamily:
    FINETUNE_FIELDS = ("targets", "init", "finetune_batch_size", "finetune_seq_len")  # not part of the base
    layers: int = 2
    vocab: int = 256
    seq_len: int = 16
    batch_size: int = 32
    pretrain_steps: int = 100
    pretrain_lr: float = 1e-3
    base_width: int = 64  # the width at which pretraining's hidden matrices train at pretrain_lr
    targets: tuple[str, ...] = ("query", "value")
    init: str = "1"  # "1": PEFT's A random, B = 0; "2": A = 0, B ~ N(0, 1)
    head_size: int = 64  # heads = width / head_size (widths must be multiples of it)
    finetune_batch_size: int | None = None  # the fine-tune's fixed batch (None: batch_size x seq_len)
    finetune_seq_len: int | None = None

    def batch(self, gen: torch.Generator, task: str, device=None) -> dict:
        """{"input_ids": (batch, seq_len), "labels": (batch,)} for "pretrain" or "finetune" (the
        fine-tune's own batch size and sequence length where set)."""
        fine = task == "finetune"
        size = (self.finetune_batch_size or self.batch_size) if fine else self.batch_size
        length = (self.finetune_seq_len or self.seq_len) if fine else self.seq_len
        ids = torch.randint(1, self.vocab, (size, length), generator=gen)
        low = ids < self.vocab // 2
        labels = (low.float().mean(1) > 0.5).long() if task == "pretrain" else low[:, 0].long()
        return {"input_ids": ids.to(device), "labels": labels.to(device)}

    def config(self, width: int):
        from transformers import BertConfig
        return BertConfig(vocab_size=self.vocab, hidden_size=width, num_hidden_layers=self.layers,
                          num_attention_heads=width // self.head_size, intermediate_size=4 * width, max_position_embeddings=64,
                          num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

    def check(self, width: int, rank: int) -> None:
        check_width(width, rank, self.head_size)
        if self.init not in ("1", "2"):
            raise ValueError(f"init must be '1' or '2', got {self.init!r}")

    def pretrained(self, width: int, seed: int, device=None):
        """(pretrained BertForSequenceClassification, mean loss of its last 10 pretraining steps;
        chance is log 2 = 0.693), from the cache of bases when it holds this one
        (``studies.families.cache``)."""
        from transformers import BertForSequenceClassification
        self.check(width, 1)

        def fresh():
            torch.manual_seed(seed)
            return BertForSequenceClassification(self.config(width)).to(device)

        def build(model):
            gen = torch.Generator().manual_seed(1000 + seed)
            return pretrain(model, lambda: self.batch(gen, "pretrain", device), self.pretrain_steps,
                            self.pretrain_lr, width, self.base_width)

        model, loss, _ = cached_base("bert", base_settings(self), width, seed, device, fresh, build)
        return model, loss

    def __call__(self, width: int, rank: int, seed: int, device=None) -> Task:
        self.check(width, rank)
        base, pretrain_loss = self.pretrained(width, seed, device)
        return lora_task(base, self.targets, rank, self.init, seed,
                         self.batch(torch.Generator().manual_seed(2000 + seed), "finetune", device), pretrain_loss)


make = BertFamily()
# lr-laws' BERT (``lr-laws --factory bert``): heads of 32, so that hidden 32 .. 512 (4 octaves) all
# build, and a fine-tune batch of 64 sequences of 4 tokens. With a handful of sequences one large
# Adam step classifies every one right by luck and the loss at T falls back below its start far
# above the edge (edges scattered 10x between seeds); 64 sequences remove that, and 4 tokens keep
# the step's cost at half the pretraining batch's 512 tokens (the label reads the first token).
laws = BertFamily(head_size=32, finetune_batch_size=64, finetune_seq_len=4)
