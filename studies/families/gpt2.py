"""The GPT-2-style decoder family: a 2-layer GPT2LMHeadModel built from config (hidden n,
heads n/64, inner 4n, no dropout), pretrained, then given PEFT LoRA on c_attn, c_proj (the
attention's and the MLP's) and c_fc.

The synthetic next-token task: sequences of a fixed random Markov chain over the vocabulary in
which every token has ``branching`` possible successors (the best achievable loss is about
log(branching) per token; chance is log(vocab)). Pretraining: ``pretrain_steps`` full-parameter
Adam steps with the width rule (``studies.families.pretrain``) on fresh sequences of one chain;
fine-tune (the Task's one fixed batch): sequences of a second, independent chain, so that the
adapters must learn new transitions. GPT-2's Conv1D stores its weight as (in, out), hence
``fan_in_fan_out=True``; PEFT's LoRA factors are ordinary Linear layers, A (r, n_in) and
B (n_out, r), which ``scaling.monitor`` reads as for any Linear. Seeds: the base from ``seed``,
pretraining data 1000 + seed, LoRA initialisation 10000 + seed, fine-tune batch 2000 + seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaling.factory import Task
from studies.families.cache import cached_base
from studies.families.pretrain import base_settings, check_width, lora_task, pretrain


@dataclass(frozen=True)
class Gpt2Family:
    FINETUNE_FIELDS = ("targets", "init")  # not part of the base
    layers: int = 2
    vocab: int = 256
    seq_len: int = 16
    batch_size: int = 32
    branching: int = 4
    pretrain_steps: int = 100
    # 3e-3: the last-10-step pretraining loss is 2.15, 1.81, 1.86, 1.91, 1.97 at n = 64 .. 1024
    # (best possible about log 4 = 1.39); at 1e-3 n = 64 is still at 3.60 after 100 steps
    pretrain_lr: float = 3e-3
    base_width: int = 64  # the width at which pretraining's hidden matrices train at pretrain_lr
    targets: tuple[str, ...] = ("c_attn", "c_proj", "c_fc")
    init: str = "1"  # "1": PEFT's A random, B = 0; "2": A = 0, B ~ N(0, 1)
    # "fan-in": hidden matrices drawn with std 0.02 (base_width / n)^1/2, so that every hidden
    # coordinate (attention output, MLP activation) is Theta(1) at every width; "hf": GPT-2's own
    # 0.02 at every width, under which the c_proj layers' inputs grow like n^1/2
    base_init: str = "fan-in"

    def chain(self, task: str) -> torch.Tensor:
        """The task's successor table (vocab, branching): the same at every width and seed."""
        gen = torch.Generator().manual_seed({"pretrain": 0, "finetune": 1}[task])
        return torch.randint(0, self.vocab, (self.vocab, self.branching), generator=gen)

    def batch(self, gen: torch.Generator, task: str, device=None) -> dict:
        """{"input_ids", "labels"}, each (batch, seq_len): sequences of the task's chain."""
        succ = self.chain(task)
        ids = torch.empty(self.batch_size, self.seq_len, dtype=torch.long)
        ids[:, 0] = torch.randint(0, self.vocab, (self.batch_size,), generator=gen)
        for t in range(1, self.seq_len):
            pick = torch.randint(0, self.branching, (self.batch_size,), generator=gen)
            ids[:, t] = succ[ids[:, t - 1], pick]
        ids = ids.to(device)
        return {"input_ids": ids, "labels": ids}

    def config(self, width: int):
        from transformers import GPT2Config
        return GPT2Config(vocab_size=self.vocab, n_embd=width, n_layer=self.layers, n_head=width // 64,
                          n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          bos_token_id=0, eos_token_id=0)

    def check(self, width: int, rank: int) -> None:
        check_width(width, rank)
        if self.init not in ("1", "2"):
            raise ValueError(f"init must be '1' or '2', got {self.init!r}")
        if self.base_init not in ("fan-in", "hf"):
            raise ValueError(f"base_init must be 'fan-in' or 'hf', got {self.base_init!r}")

    def pretrained(self, width: int, seed: int, device=None):
        """(pretrained GPT2LMHeadModel, mean loss of its last 10 pretraining steps), from the cache
        of bases when it holds this one (``studies.families.cache``)."""
        from transformers import GPT2LMHeadModel
        self.check(width, 1)

        def fresh():
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(self.config(width)).to(device)
            if self.base_init == "fan-in":
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        if p.ndim == 2 and not any(e in name for e in ("wte", "wpe")):
                            p.mul_((self.base_width / width) ** 0.5)
            return model

        def build(model):
            gen = torch.Generator().manual_seed(1000 + seed)
            return pretrain(model, lambda: self.batch(gen, "pretrain", device), self.pretrain_steps,
                            self.pretrain_lr, width, self.base_width, embedding_names=("wte", "wpe"))

        model, loss, _ = cached_base("gpt2", base_settings(self), width, seed, device, fresh, build)
        return model, loss

    def __call__(self, width: int, rank: int, seed: int, device=None) -> Task:
        self.check(width, rank)
        base, pretrain_loss = self.pretrained(width, seed, device)
        return lora_task(base, self.targets, rank, self.init, seed,
                         self.batch(torch.Generator().manual_seed(2000 + seed), "finetune", device), pretrain_loss, fan_in_fan_out=True)


make = Gpt2Family()
# lr-laws' GPT-2 (``lr-laws --factory gpt2``): the family as it is.
laws = Gpt2Family()
