"""scaling.monitor: the deltas measured on real LoRA layers during training."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from scaling.lora_layers import LoRALinear, add_lora
from scaling.measure import layer_metrics
from scaling.monitor import FeatureLearningMonitor, short_layer_names
from scaling.loraplus import create_loraplus_optimizer


def tiny_bert():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return get_peft_model(BertForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value", "word_embeddings"],
        modules_to_save=["classifier"], init_lora_weights=True))


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, 97, (4, 8), generator=gen), torch.randint(0, 2, (4,), generator=gen)


def test_monitor_equals_scaling_measure_on_a_peft_layer():
    model = tiny_bert()
    monitor = FeatureLearningMonitor(model, every=1)
    assert "base_model.model.bert.embeddings.word_embeddings" in monitor.skipped  # embeddings: no n-wide sum
    layer_name = "base_model.model.bert.encoder.layer.1.attention.self.value"
    layer = model.get_submodule(layer_name)
    opt = create_loraplus_optimizer(model, lr=1e-2, loraplus_lr_ratio=16)
    seen = {}
    handle = layer.register_forward_pre_hook(lambda m, args: seen.setdefault("z", args[0].detach().clone()))
    for step in range(2):  # step 2: B != 0, every delta active
        A0 = layer.lora_A["default"].weight.detach().clone()
        B0 = layer.lora_B["default"].weight.detach().clone()
        init_A, init_B = monitor._init[layer_name]
        seen.clear()
        ids, labels = batch(step)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        monitor.step()
        grads = layer.lora_A["default"].weight.grad, layer.lora_B["default"].weight.grad
        opt.zero_grad()
    handle.remove()
    z = seen["z"].reshape(-1, 32).double()
    A1, B1 = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    expected = layer_metrics(z, A0[None].double(), B0[None].double(), A1[None].double(), B1[None].double(),
                             grads[0][None].double(), grads[1][None].double(), init_A[None].double(),
                             init_B[None].double(), layer.scaling["default"])
    got = monitor.frame()
    got = got[(got.layer == layer_name) & (got.step == 2)].set_index("metric").value
    for metric, value in expected.items():
        assert got[metric] == pytest.approx(float(value[0]), rel=1e-9, abs=1e-15), metric
    assert got["delta1"] > 0 and got["delta2"] > 0


def test_only_every_kth_step_is_measured_and_hooks_can_be_removed():
    model = tiny_bert()
    monitor = FeatureLearningMonitor(model, every=3)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(7):
        ids, labels = batch(step)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        monitor.step()
        opt.zero_grad()
    assert sorted(monitor.frame().step.unique()) == [0, 1, 4, 7]  # 0: the initial z_a
    monitor.close()
    model(input_ids=batch()[0])
    assert not monitor._cache


def _regression_run(lr_a: float, lr_b: float, init: str) -> FeatureLearningMonitor:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 64), rank=4, init=init)
    monitor = FeatureLearningMonitor(layer, every=1)
    opt = torch.optim.Adam([{"params": [layer.lora_A], "lr": lr_a}, {"params": [layer.lora_B], "lr": lr_b}])
    x, target = torch.randn(32, 64), torch.randn(32, 64)
    for _ in range(6):
        loss = (layer(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
        monitor.step()
        opt.zero_grad()
    return monitor


# Init[2] for a lazy B (delta1 = B0 dA z is large), Init[1] for a lazy A (delta2 = dB A0 z is);
# balanced needs eta_B / eta_A ~ n (here 100 at n = 64): the LoRA+ point.
@pytest.mark.parametrize("lr_a,lr_b,init,lazy,direction", [(1e-2, 1e-6, "2", "B side", 1), (1e-7, 1e-1, "1", "A side", -1),
                                                           (1e-3, 1e-1, "2", "balanced", 0)])
def test_summary_names_the_lazy_side_and_the_fix(lr_a, lr_b, init, lazy, direction):
    overall = _regression_run(lr_a, lr_b, init).summary().set_index("layer").loc["overall"]
    assert overall.lazy == lazy
    if direction:
        assert (overall.ratio_multiplier > 1) == (direction > 0)  # raise the ratio when B is lazy


def test_a_model_without_lora_layers_is_refused():
    with pytest.raises(ValueError, match="no linear LoRA layer"):
        FeatureLearningMonitor(nn.Linear(4, 4))


class _Attention(nn.Module):
    """Two LoRA layers deep in a model whose full names differ only in the last component."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.transformer_encoder_stack = nn.Module()
        self.transformer_encoder_stack.multi_head_attention_block = nn.Module()
        block = self.transformer_encoder_stack.multi_head_attention_block
        block.query, block.value = nn.Linear(16, 16), nn.Linear(16, 16)
        add_lora(self, ("query", "value"), rank=2)

    def forward(self, x):
        block = self.transformer_encoder_stack.multi_head_attention_block
        return block.query(x) * block.value(x)


def test_the_summary_tells_layers_apart_that_differ_only_in_their_last_name():
    model = _Attention()
    monitor = FeatureLearningMonitor(model, every=1)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(8, 16)
    for _ in range(4):
        model(x).pow(2).mean().backward()
        opt.step()
        monitor.step()
        opt.zero_grad()
    summary = monitor.summary()
    assert list(summary.layer) == ["query", "value", "overall"]
    printed = str(summary).splitlines()  # printed (pandas cuts long cells): still one name per layer
    assert [line.split()[1] for line in printed[1:]] == ["query", "value", "overall"]
    f = monitor.frame()
    full = "transformer_encoder_stack.multi_head_attention_block.value"
    value = f[(f.layer == full) & (f.step > 1) & (f.metric == "delta1")]
    assert summary.set_index("layer").delta1["value"] == value.value.median()  # the row is that layer's


def test_short_layer_names():
    bert = [f"base_model.model.bert.encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")]
    assert list(short_layer_names(bert).values()) == ["L0.query", "L0.value", "L1.query", "L1.value"]
    gpt = [f"base_model.model.transformer.h.{i}.{m}" for i in (0, 1) for m in ("attn.c_attn", "mlp.c_fc")]
    assert list(short_layer_names(gpt).values()) == ["L0.attn.c_attn", "L0.mlp.c_fc", "L1.attn.c_attn", "L1.mlp.c_fc"]
    assert short_layer_names(["net.hidden"]) == {"net.hidden": "hidden"}
    assert short_layer_names(["a.b.query", "a.b.value"]) == {"a.b.query": "query", "a.b.value": "value"}
    # shortening would merge these two ("0" becomes "L0"): both stay whole
    assert short_layer_names(["0.query", "L0.query"]) == {"0.query": "0.query", "L0.query": "L0.query"}
