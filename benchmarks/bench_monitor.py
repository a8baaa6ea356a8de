"""Benchmark: the cost of FeatureLearningMonitor on a MiniLM-sized encoder.

A BERT encoder built from config at all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads,
intermediate 1536), PEFT LoRA r = 8 on query and value, batch 32 x 64 tokens, AdamW through
create_loraplus_optimizer: the finetune study's step. Timed: S training steps without a
monitor and S steps with ``FeatureLearningMonitor(every=10)``, interleaved in blocks so that
background load hits both alike; the overhead is the ratio of the two total times - 1.

Usage: python benchmarks/bench_monitor.py [--steps S] [--every K]
"""
from __future__ import annotations

import argparse
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

from scaling.loraplus import create_loraplus_optimizer
from scaling.monitor import FeatureLearningMonitor


def build(seed: int = 0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, num_labels=2)
    model = get_peft_model(BertForSequenceClassification(cfg), LoraConfig(
        r=8, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]))
    return model, create_loraplus_optimizer(model, lr=5e-4, loraplus_lr_ratio=16)


def train_steps(model, opt, steps: int, monitor=None, seed: int = 0) -> float:
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        ids = torch.randint(1000, 30000, (32, 64), generator=gen)
        labels = torch.randint(0, 2, (32,), generator=gen)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        if monitor is not None:
            monitor.step()
        opt.zero_grad()
    return time.perf_counter() - start


def run(steps: int = 40, every: int = 10, blocks: int = 2) -> dict:
    plain_model, plain_opt = build()
    mon_model, mon_opt = build()
    monitor = FeatureLearningMonitor(mon_model, every=every)
    train_steps(plain_model, plain_opt, 2)  # warm-up (allocator, threads)
    train_steps(mon_model, mon_opt, 2)
    monitor.records.clear()
    plain = with_monitor = 0.0
    for b in range(blocks):
        plain += train_steps(plain_model, plain_opt, steps // blocks, seed=b)
        with_monitor += train_steps(mon_model, mon_opt, steps // blocks, monitor, seed=b)
    return {"steps": steps, "every": every, "plain_s_per_step": plain / steps,
            "monitor_s_per_step": with_monitor / steps, "overhead": with_monitor / plain - 1,
            "measured_steps": int(monitor.frame().step.nunique()), "layers": len(monitor.layers)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args(argv)
    r = run(args.steps, args.every)
    print(f"{r['layers']} LoRA layers, {r['steps']} steps, measured every {r['every']} ({r['measured_steps']} steps): "
          f"{r['plain_s_per_step']:.3f} s/step plain, {r['monitor_s_per_step']:.3f} s/step with the monitor, "
          f"overhead {100 * r['overhead']:+.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
