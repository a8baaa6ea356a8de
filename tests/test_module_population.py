"""toy_models.module_population: the torch.func program and the per-run loop give the same numbers
(float64), diverged runs are results, and the loop takes over where torch.func cannot go."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from scaling.factory import Task, load_factory
from toy_models.module_population import explain_vmap_failure, train_population
from tests.test_factory import EXAMPLE

KEYS = ["member", "run", "step", "layer", "metric"]


def _tiny_mlp(seeds=(0, 1), width=48):
    make = load_factory(EXAMPLE).make
    return [make(width, 3, s, dtype=torch.float64) for s in seeds]


def _same(a: pd.DataFrame, b: pd.DataFrame, rel: float = 1e-10) -> None:
    a, b = a.set_index(KEYS).value.sort_index(), b.set_index(KEYS).value.sort_index()
    assert a.index.equals(b.index), a.index.symmetric_difference(b.index)
    scale = b.abs().groupby(level="metric").transform("max")  # shares etc. can sit near 0
    assert ((a - b).abs() <= rel * scale + 1e-300).all(), (a - b).abs().div(scale).max()


def test_torch_func_equals_the_per_run_loop_in_float64():
    eta_a, eta_b = [1e-3, 1e-2, 3e-2], [1e-2, 1e-1, 3.0]
    batched = train_population(_tiny_mlp(), eta_a, eta_b, 5, path="torch.func")
    loop = train_population(_tiny_mlp(), eta_a, eta_b, 5, path="loop")
    assert batched.path == "torch.func" and loop.path == "loop"
    _same(batched.frame, loop.frame)
    f = batched.frame
    assert set(f.metric) >= {"delta1", "delta2", "delta3", "z_a", "dz_a", "dz_b", "dw_fro", "share_a", "loss"}
    assert set(f.step) == set(range(6)) and f.member.nunique() == 2 and f.run.nunique() == 3


def test_a_fresh_batch_each_step_and_per_member_rates():
    def with_batches(task, seed):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(7, 16, 16, generator=gen, dtype=torch.float64)
        return Task(task.model, lambda step: (x[step], torch.sin(x[step].sum(-1, keepdim=True) / 4)), task.loss_fn)
    rates_a = np.array([[1e-3, 1e-2], [2e-3, 5e-3]])  # (M, K): each member its own candidates
    runs = [train_population([with_batches(t, i) for i, t in enumerate(_tiny_mlp())], rates_a, 10 * rates_a, 4,
                             path=path) for path in ("torch.func", "loop")]
    _same(runs[0].frame, runs[1].frame)


def test_a_diverging_run_stops_alone_and_is_marked():
    eta = [1e-3, 1e4]  # the second blows the loss up past 1e8 x its start
    batched = train_population(_tiny_mlp(), eta, eta, 4, path="torch.func", divergence_factor=10.0)
    loop = train_population(_tiny_mlp(), eta, eta, 4, path="loop", divergence_factor=10.0)
    _same(batched.frame, loop.frame)
    f = batched.frame
    marks = f[f.metric == "diverged"]
    assert set(marks.run) == {1} and len(marks) == 2  # both members' second run
    assert (f[(f.run == 1) & (f.metric != "diverged")].step < marks.step.min()).all()
    assert f[(f.run == 0) & (f.metric == "loss")].step.max() == 4  # the other run went on


def test_peft_gpt2_conv1d_layers_batch_like_the_loop():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    def member(seed):
        torch.manual_seed(seed)
        cfg = GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=2, n_positions=16, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager", bos_token_id=0, eos_token_id=0)
        model = get_peft_model(GPT2LMHeadModel(cfg).double(), LoraConfig(
            r=2, lora_alpha=4, target_modules=["c_attn", "c_proj", "c_fc"], lora_dropout=0.0, fan_in_fan_out=True))
        ids = torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(seed))
        return Task(model, {"input_ids": ids, "labels": ids})

    batched = train_population([member(0), member(1)], [1e-3, 1e-2], [1e-2, 1e-2], 3, path="torch.func")
    loop = train_population([member(0), member(1)], [1e-3, 1e-2], [1e-2, 1e-2], 3, path="loop")
    assert batched.path == "torch.func" and not batched.note  # eager attention: nothing falls back
    # transformers computes the causal-LM loss on logits.float(): float32 even for a float64
    # model, so the two paths' loss values agree to float32 rounding; every measurement (from
    # float64 parameters and gradients) to float64's
    is_loss = lambda f: f[f.metric == "loss"]  # noqa: E731
    _same(is_loss(batched.frame), is_loss(loop.frame), rel=1e-6)
    not_loss = lambda f: f[f.metric != "loss"]  # noqa: E731
    _same(not_loss(batched.frame), not_loss(loop.frame), rel=1e-9)
    assert batched.frame.layer.nunique() == 1 + 8  # "all" + c_attn, attn.c_proj, c_fc, mlp.c_proj per block


class _Noisy(nn.Module):
    """Dropout in the forward pass: runs would differ by more than their rates."""

    def __init__(self, width):
        super().__init__()
        from scaling.lora_layers import add_lora
        self.net = add_lora(nn.Sequential(nn.Linear(4, width), nn.Dropout(0.5), nn.Linear(width, width)), ("2",),
                            rank=2)

    def forward(self, x):
        return self.net(x)


def test_the_loop_takes_over_where_torch_func_cannot_and_says_why():
    x = torch.randn(5, 4)

    def task(width, seed):
        torch.manual_seed(seed)
        return Task(_Noisy(width), x, lambda m, b: m(b).pow(2).mean())

    mixed = train_population([task(8, 0), task(16, 1)], [1e-3], [1e-3], 2)
    assert mixed.path == "loop" and "different architecture" in mixed.note
    noisy = train_population([task(8, 0), task(8, 1)], [1e-3], [1e-3], 2)
    assert noisy.path == "loop" and "draws random numbers (dropout above 0" in noisy.note
    with pytest.raises(ValueError, match="torch.func cannot train this population"):
        train_population([task(8, 0), task(16, 1)], [1e-3], [1e-3], 2, path="torch.func")


def test_vmap_failures_are_explained_in_plain_words():
    with pytest.raises(RuntimeError) as branching:
        vmap(lambda v: v if v.sum() > 0 else -v)(torch.randn(3, 2))
    text = explain_vmap_failure(branching.value)
    assert text.startswith("torch.func cannot batch this model: the forward reads a tensor's value in Python")
    assert "(at test_module_population.py:" in text  # the line of the branch, not torch's internals
    assert explain_vmap_failure(ValueError("an odd failure. With detail")) == \
        "torch.func cannot batch this model: ValueError: an odd failure"


class _NormMlp(nn.Module):
    """A plain PEFT user's model: biased Linear layers, a LayerNorm, LoRA by peft on the Linears."""

    def __init__(self, width):
        super().__init__()
        self.inp, self.norm = nn.Linear(4, width), nn.LayerNorm(width)
        self.hidden, self.out = nn.Linear(width, width), nn.Linear(width, 1)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.norm(self.inp(x)))))


def test_a_peft_mlp_with_layernorm_and_mse_loss_batches_like_the_loop():
    # F.mse_loss against the batch's target once sent this model to the loop: torch's batching
    # rule for it cannot broadcast a target without the rate axis against a per-run prediction
    from peft import LoraConfig, get_peft_model

    def member(seed):
        torch.manual_seed(seed)
        model = get_peft_model(_NormMlp(16).double(), LoraConfig(r=2, lora_alpha=2, target_modules=["inp", "hidden"]))
        x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        return Task(model, (x, torch.sin(x.sum(-1, keepdim=True))), lambda m, b: F.mse_loss(m(b[0]), b[1]))

    eta_a, eta_b = [1e-3, 1e-2], [1e-2, 1e-1]
    batched = train_population([member(0), member(1)], eta_a, eta_b, 3)
    loop = train_population([member(0), member(1)], eta_a, eta_b, 3, path="loop")
    assert batched.path == "torch.func" and not batched.note
    _same(batched.frame, loop.frame)
    assert set(batched.frame.layer) == {"all", "base_model.model.inp", "base_model.model.hidden"}


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="finite and positive"):
        train_population(_tiny_mlp((0,)), [0.0], [1e-3], 1)
    with pytest.raises(ValueError, match="expected K rates"):
        train_population(_tiny_mlp((0,)), np.ones((2, 2)), np.ones((2, 2)), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_the_same_numbers_as_on_the_cpu():
    eta_a, eta_b = [1e-3, 1e-2], [1e-2, 1e-1]
    cpu = train_population(_tiny_mlp(), eta_a, eta_b, 3, path="torch.func")
    gpu = train_population(_tiny_mlp(), eta_a, eta_b, 3, path="torch.func", device="cuda")
    _same(gpu.frame, cpu.frame, rel=1e-8)


class _Scaled(nn.Module):
    """Keeps a tensor as a plain attribute: functional_call cannot swap it per member."""

    def __init__(self, width, seed):
        super().__init__()
        from scaling.lora_layers import add_lora
        torch.manual_seed(seed)
        self.net = add_lora(nn.Sequential(nn.Linear(4, width), nn.Linear(width, width)), ("1",), rank=2)
        self.gain = torch.rand(())

    def forward(self, x):
        return self.gain * self.net(x)


def test_members_with_different_plain_tensor_attributes_train_one_by_one():
    x = torch.randn(5, 4)
    tasks = [Task(_Scaled(8, s), x, lambda m, b: m(b).pow(2).mean()) for s in (0, 1)]
    result = train_population(tasks, [1e-3], [1e-3], 2)
    assert result.path == "loop" and "gain" in result.note
