"""scaling.loraplus on tiny config-built BERT / GPT-2 / Llama models wrapped by PEFT, on this
package's LoRA layers and on plain models; checked against PEFT's own factory."""
from __future__ import annotations

import io
import sys
import types

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer as peft_create_loraplus_optimizer
from torch import nn
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification,
                          LlamaConfig, LlamaForSequenceClassification)

from scaling.lora_layers import LoRALinear, add_lora
from scaling.loraplus import create_loraplus_optimizer, group_learning_rates, loraplus_param_groups

LR, RATIO, LR_EMB, WD = 1e-3, 16.0, 1e-6, 0.01


def bert():
    cfg = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    return get_peft_model(BertForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value", "word_embeddings"], modules_to_save=["classifier"]))


def gpt2():
    cfg = GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_positions=64, num_labels=3,
                     pad_token_id=0)
    return get_peft_model(GPT2ForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "wte"], fan_in_fan_out=True,
        modules_to_save=["score"]))


def llama():
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=3, pad_token_id=0)
    return get_peft_model(LlamaForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "embed_tokens"], modules_to_save=["score", "norm"]))


def bert_lora_bias():  # PEFT's lora_bias=True gives lora_B a bias (not allowed with embeddings)
    cfg = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    return get_peft_model(BertForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value"], lora_bias=True, modules_to_save=["classifier"]))


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)).mean(dim=(-2, -1)))


def conv():
    return get_peft_model(TinyCNN(), LoraConfig(r=2, lora_alpha=2, target_modules=["conv"], modules_to_save=["head"]))


MODELS = {"bert": bert, "gpt2": gpt2, "llama": llama, "conv": conv, "bert-lora-bias": bert_lora_bias}


def names_by_id(model):
    return {id(p): n for n, p in model.named_parameters() if p.requires_grad}


def lr_and_decay_by_name(model, optimizer):
    names = names_by_id(model)
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


@pytest.fixture(params=list(MODELS))
def model(request):
    torch.manual_seed(0)
    return MODELS[request.param]()


def test_groups_are_disjoint_complete_named_and_never_empty(model):
    opt = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    in_groups = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(in_groups) == len(set(in_groups)) and set(in_groups) == trainable
    assert all(g["params"] for g in opt.param_groups)
    names = [g["name"] for g in opt.param_groups]
    assert len(names) == len(set(names))


def test_rates_and_decays_follow_the_documented_rule(model):
    opt = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    for name, (lr, wd) in lr_and_decay_by_name(model, opt).items():
        if "lora_embedding" in name:
            assert lr == LR_EMB, name
        elif ".lora_B." in name:
            assert lr == pytest.approx(LR * RATIO), name
        else:  # lora_A, heads, biases, norms: never the boosted B rate
            assert lr == LR, name
        expected_wd = 0.0 if (name.endswith("bias") or "norm" in name) else WD
        assert wd == expected_wd, name


def test_a_modules_to_save_head_is_not_split_between_two_rates(model):
    opt = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO)
    head = {n: lr for n, (lr, _) in lr_and_decay_by_name(model, opt).items() if "modules_to_save" in n}
    assert head and set(head.values()) == {LR}


def test_differences_from_peft_are_exactly_the_documented_fixes(model):
    ours = lr_and_decay_by_name(model, create_loraplus_optimizer(
        model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO, loraplus_weight_decay=WD))
    theirs = lr_and_decay_by_name(model, peft_create_loraplus_optimizer(
        model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO, loraplus_weight_decay=WD))
    assert ours.keys() == theirs.keys()
    for name in ours:
        if ".lora_A." in name or ".lora_B." in name and not name.endswith("bias") or "lora_embedding" in name:
            assert ours[name][0] == theirs[name][0], name  # every LoRA matrix: the same rate
            continue
        if ours[name] != theirs[name]:
            param = dict(model.named_parameters())[name]
            # the documented fixes: a 1-D parameter (bias, norm, head bias) is not a B matrix,
            # and a lora_B bias is not decayed
            one_d_boost = param.ndim == 1 and theirs[name][0] == pytest.approx(LR * RATIO) and ours[name][0] == LR
            lora_b_bias = name.endswith("lora_B.default.bias") and ours[name] == (LR * RATIO, 0.0)
            assert one_d_boost or lora_b_bias, (name, ours[name], theirs[name])


def test_peft_drops_a_plain_weight_decay_and_we_do_not():
    torch.manual_seed(0)
    model = bert()
    theirs = peft_create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    ours = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    assert {g["weight_decay"] for g in theirs.param_groups} == {0.0}
    assert WD in {g["weight_decay"] for g in ours.param_groups}
    with pytest.raises(ValueError, match="disagree"):
        create_loraplus_optimizer(model, lr=LR, weight_decay=0.1, loraplus_weight_decay=0.2)


def test_one_adam_step_moves_b_ratio_times_as_far_as_a():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 16), rank=4, init="2")
    opt = create_loraplus_optimizer(layer, torch.optim.Adam, lr=LR, loraplus_lr_ratio=RATIO)
    before = layer.lora_A.detach().clone(), layer.lora_B.detach().clone()
    g = torch.randn(4, 16)
    layer.lora_A.grad, layer.lora_B.grad = g.clone(), g.T.clone()  # identical gradient entries
    opt.step()
    moved_a = (layer.lora_A.detach() - before[0]).abs().mean()
    moved_b = (layer.lora_B.detach() - before[1]).abs().mean()
    assert float(moved_b / moved_a) == pytest.approx(RATIO, rel=1e-4)


def _train(model, opt, steps, seed=0):
    torch.manual_seed(seed)  # dropout masks
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(1, 97, (4, 8), generator=gen)
        labels = torch.randint(0, 3, (4,), generator=gen)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_state_saves_and_loads_with_weights_only_and_training_continues_identically():
    torch.manual_seed(0)
    reference = bert()
    resumed = bert()
    resumed.load_state_dict(reference.state_dict())
    opt_ref = create_loraplus_optimizer(reference, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    _train(reference, opt_ref, 3)
    buffer = io.BytesIO()
    torch.save({"model": reference.state_dict(), "optimizer": opt_ref.state_dict()}, buffer)
    _train(reference, opt_ref, 2, seed=1)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed.load_state_dict(saved["model"])
    opt_res = create_loraplus_optimizer(resumed, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    opt_res.load_state_dict(saved["optimizer"])
    assert [g["name"] for g in opt_res.param_groups] == [g["name"] for g in opt_ref.param_groups]
    _train(resumed, opt_res, 2, seed=1)
    for (n, a), b in zip(reference.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), n


def test_lr_scheduler_keeps_the_ratio():
    torch.manual_seed(0)
    model = bert()
    opt = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / 10)
    for _ in range(4):
        opt.step()
        sched.step()
    rates = group_learning_rates(opt)
    assert rates["lora_A"] == pytest.approx(LR * 0.6)
    assert rates["lora_B"] / rates["lora_A"] == pytest.approx(RATIO)


def test_package_lora_layers_and_custom_classify():
    torch.manual_seed(0)
    net = add_lora(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), targets=("0",), rank=2)
    groups = {g["name"]: g for g in loraplus_param_groups(net, lr=LR, loraplus_lr_ratio=4.0)}
    assert set(groups) == {"lora_A", "lora_B"}
    assert groups["lora_B"]["lr"] == pytest.approx(4 * LR)

    class Factorised(nn.Module):  # a model with its own names for the two factors
        def __init__(self):
            super().__init__()
            self.down = nn.Parameter(torch.randn(2, 8))
            self.up = nn.Parameter(torch.zeros(8, 2))
            self.gain = nn.Parameter(torch.ones(8))
    roles = {"down": "lora_A", "up": "lora_B"}
    groups = {g["name"]: g for g in loraplus_param_groups(
        Factorised(), lr=LR, classify=lambda name, p, m: roles.get(name))}
    assert set(groups) == {"lora_A", "lora_B", "other_no_decay"}
    with pytest.raises(ValueError, match="classify returned"):
        loraplus_param_groups(Factorised(), lr=LR, classify=lambda name, p, m: "lora_C")


def test_auto_ratio_scales_a_with_the_fan_in():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.Linear(64, 16), nn.Linear(16, 16))
    add_lora(net, targets=("0", "1", "2"), rank=2)
    groups = {g["name"]: g["lr"] for g in loraplus_param_groups(net, lr=LR, loraplus_lr_ratio="auto")}
    # fan-ins 16, 64, 16: the reference is 16; the 64-wide layer's A trains 4x slower
    assert groups["lora_A"] == LR and groups["lora_B"] == pytest.approx(16 * LR)
    assert groups["lora_A[n_in=64]"] == pytest.approx(LR / 4)
    assert groups["lora_B[n_in=64]"] == pytest.approx(16 * LR)


def test_ratio_fn_gives_each_layer_its_ratio():
    torch.manual_seed(0)
    net = add_lora(nn.Sequential(nn.Linear(16, 64), nn.Linear(64, 16)), targets=("0", "1"), rank=2)
    groups = {g["name"]: g["lr"] for g in loraplus_param_groups(
        net, lr=LR, ratio_fn=lambda layer: layer.in_features / 2)}
    assert groups["lora_B[ratio=8]"] == pytest.approx(8 * LR) and groups["lora_B[ratio=32]"] == pytest.approx(32 * LR)
    with pytest.raises(ValueError, match="not both"):
        loraplus_param_groups(net, lr=LR, loraplus_lr_ratio="auto", ratio_fn=lambda layer: 1.0)


@pytest.mark.parametrize("kwargs,match", [({"lr": 0.0}, "lr must be"), ({"lr": LR, "loraplus_lr_ratio": -1}, "ratio"),
                                          ({"lr": LR, "loraplus_lr_ratio": "fast"}, "ratio")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        loraplus_param_groups(LoRALinear(nn.Linear(8, 8), rank=2), **kwargs)


def test_eight_bit_optimizers_keep_embeddings_in_32_bit(monkeypatch):
    overrides = []
    manager = types.SimpleNamespace(register_module_override=lambda m, p, cfg: overrides.append((m, p, cfg)))
    fake = types.ModuleType("bitsandbytes")
    fake.optim = types.SimpleNamespace(GlobalOptimManager=types.SimpleNamespace(get_instance=lambda: manager))
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)

    class AdamW8bit(torch.optim.AdamW):  # stands in for bitsandbytes.optim.AdamW8bit
        pass
    torch.manual_seed(0)
    model = bert()
    create_loraplus_optimizer(model, AdamW8bit, lr=LR)
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    assert embeddings and [o[0] for o in overrides] == embeddings
    assert all(o[1:] == ("weight", {"optim_bits": 32}) for o in overrides)
