"""scaling.loraplus as a drop-in for PEFT's create_loraplus_optimizer: PEFT's group order,
the ``group_layout="peft"`` positions, the logic of PEFT's own tests/test_loraplus.py (rewritten
here against our function) and switching optimisers mid-run through real state dicts."""
from __future__ import annotations

import copy
import io
import sys

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer as peft_create_loraplus_optimizer
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from scaling.lora_layers import add_lora
from scaling.loraplus import create_loraplus_optimizer, loraplus_param_groups, state_dict_for
from tests.test_loraplus import MODELS, bert, gpt2, names_by_id

LR, RATIO, LR_EMB, WD = 1e-3, 16.0, 1e-6, 0.01
DOCUMENTED_ORDER = ["lora_A", "lora_embedding", "lora_B", "lora_B_no_decay", "other", "other_no_decay"]
PEFT_SLOTS = DOCUMENTED_ORDER[:4]


@pytest.fixture(params=list(MODELS))
def model(request):
    torch.manual_seed(0)
    return MODELS[request.param]()


def group_names(opt):
    return [g["name"] for g in opt.param_groups]


# --- order and layouts --------------------------------------------------------------------------

def test_compact_groups_come_in_peft_order_then_ours(model):
    names = group_names(create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD))
    positions = [DOCUMENTED_ORDER.index(n) for n in names]
    assert positions == sorted(positions), names


def test_compact_order_on_a_model_with_every_kind_of_group():
    torch.manual_seed(0)
    names = group_names(create_loraplus_optimizer(bert(), lr=LR, weight_decay=WD))
    # bert() puts LoRA on query/value and the word embeddings and keeps the classifier trainable;
    # the model order would put the embedding first and the head last
    assert names == ["lora_A", "lora_embedding", "lora_B", "other", "other_no_decay"]


def test_per_layer_groups_follow_the_plain_group_of_their_role():
    torch.manual_seed(0)
    net = add_lora(nn.Sequential(nn.Linear(16, 64), nn.Linear(64, 16), nn.Linear(16, 16)), targets=("0", "1", "2"),
                   rank=2)
    names = [g["name"] for g in loraplus_param_groups(net, lr=LR, loraplus_lr_ratio="auto")]
    assert names == ["lora_A", "lora_A[n_in=64]", "lora_B", "lora_B[n_in=64]"]  # the base layers are frozen


@pytest.mark.parametrize("weight_decay", [0.0, WD])
def test_peft_layout_keeps_peft_groups_at_their_positions_with_peft_settings(model, weight_decay):
    ours = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=weight_decay,
                                     group_layout="peft")
    theirs = peft_create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO,
                                            loraplus_weight_decay=weight_decay)
    assert len(theirs.param_groups) == 4
    assert group_names(ours)[:4] == PEFT_SLOTS
    for our_group, their_group in zip(ours.param_groups, theirs.param_groups):
        assert (our_group["lr"], our_group["weight_decay"]) == (their_group["lr"], their_group["weight_decay"])
    names = names_by_id(model)
    for slot, their_group in enumerate(theirs.param_groups):  # every LoRA factor sits where PEFT puts it
        ours_here = {id(p) for p in ours.param_groups[slot]["params"]}
        for p in their_group["params"]:
            if "lora_" in names[id(p)]:
                assert id(p) in ours_here, (slot, names[id(p)])
    extra = group_names(ours)[4:]
    assert all(n in DOCUMENTED_ORDER[4:] for n in extra), extra
    if weight_decay == 0.0:  # biases and norms (lr, no decay) share group 0's settings: no fifth group
        assert extra == []
    in_groups = [id(p) for g in ours.param_groups for p in g["params"]]
    assert sorted(in_groups) == sorted(names)


def test_peft_layout_keeps_our_fixes():
    torch.manual_seed(0)
    model = bert()
    opt = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD, group_layout="peft")
    names = names_by_id(model)
    for g in opt.param_groups:
        for p in g["params"]:
            name = names[id(p)]
            if "lora_" not in name:  # head weight and bias, the one norm: never the boosted rate
                assert g["lr"] == LR, name
            if name.endswith("bias") or "norm" in name.lower():
                assert g["weight_decay"] == 0.0, name
    assert group_names(opt) == PEFT_SLOTS + ["other_no_decay"]


def test_an_unknown_group_layout_is_one_clear_line():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"group_layout must be 'compact' or 'peft', got 'PEFT'") as err:
        create_loraplus_optimizer(bert(), lr=LR, group_layout="PEFT")
    assert "\n" not in str(err.value)


# --- the logic of PEFT's tests/test_loraplus.py, in compatibility mode ----------------------------

class TokenTagger(nn.Module):
    """Embedding, LayerNorm and two Linear layers with biases: every kind of parameter PEFT's
    grouping distinguishes, with no LoRA at all unless get_peft_model adds it."""

    def __init__(self, vocab=100, width=20, tags=16):
        super().__init__()
        self.embedding = nn.Embedding(vocab, width)
        self.layer_norm = nn.LayerNorm(width)
        self.lin0 = nn.Linear(width, width)
        self.lin1 = nn.Linear(width, tags)

    def forward(self, tokens):
        return self.lin1(torch.relu(self.lin0(self.layer_norm(self.embedding(tokens)))))


def compat_optimizer(model, optimizer_cls=torch.optim.Adam, lr=5e-5, ratio=1.2, lr_emb=1e-6):
    return create_loraplus_optimizer(model=model, optimizer_cls=optimizer_cls, lr=lr, loraplus_lr_ratio=ratio,
                                     loraplus_lr_embedding=lr_emb, eps=1e-6, betas=(0.9, 0.999),
                                     loraplus_weight_decay=0.0, group_layout="peft")


def test_peft_helper_four_groups_at_peft_rates_on_a_plain_model():
    torch.manual_seed(0)
    lr, ratio, lr_emb = 5e-5, 1.2, 1e-6
    opt = compat_optimizer(TokenTagger(), lr=lr, ratio=ratio, lr_emb=lr_emb)
    assert len(opt.param_groups) == 4
    rates = [g["lr"] for g in opt.param_groups]
    assert rates[0] == lr and rates[1] == lr_emb and rates[2] == rates[3] == lr * ratio


def test_peft_optimizer_steps_with_empty_groups():
    torch.manual_seed(0)
    model = TokenTagger()
    opt = compat_optimizer(model)
    assert any(not g["params"] for g in opt.param_groups)  # the point of this test: empty groups present
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = torch.randint(100, (3, 5, 7))
    tags = torch.randint(16, (3, 5, 7))
    loss = nn.functional.cross_entropy(model(tokens).flatten(0, -2), tags.flatten())
    loss.backward()
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters()), "a parameter did not move"


@pytest.mark.parametrize("layout", ["compact", "peft"])
def test_lora_on_an_embedding_trains_at_the_embedding_rate(layout):
    torch.manual_seed(0)
    lr, ratio, lr_emb = 5e-5, 1.2, 1e-6
    model = get_peft_model(TokenTagger(), LoraConfig(target_modules=["embedding", "lin0"]))
    opt = create_loraplus_optimizer(model=model, optimizer_cls=torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio,
                                    loraplus_lr_embedding=lr_emb, group_layout=layout)
    names = names_by_id(model)
    by_rate: dict[float, set[str]] = {}
    for g in opt.param_groups:
        by_rate.setdefault(g["lr"], set()).update(names[id(p)] for p in g["params"])
    assert by_rate[lr_emb] == {"base_model.model.embedding.lora_embedding_A.default",
                               "base_model.model.embedding.lora_embedding_B.default"}
    assert by_rate[lr] == {"base_model.model.lin0.lora_A.default.weight"}
    assert by_rate[lr * ratio] == {"base_model.model.lin0.lora_B.default.weight"}


# --- switching optimisers mid-run: real state dicts ------------------------------------------------

def lora_only_bert():
    """LoRA on query, value and the word embeddings, nothing else trainable: PEFT's rates and
    ours agree on every parameter, so the two optimisers must take identical steps."""
    cfg = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    return get_peft_model(BertForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value", "word_embeddings"]))


def train(model, opt, steps, seed):
    torch.manual_seed(seed)  # dropout masks
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(1, 97, (4, 8), generator=gen)
        labels = torch.randint(0, 3, (4,), generator=gen)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()


def saved_and_loaded(opt):
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def state_by_name(model, opt):
    names = names_by_id(model)
    return {names[id(p)]: s for p, s in opt.state.items()}


def assert_same_state(model_a, opt_a, model_b, opt_b):
    state_a, state_b = state_by_name(model_a, opt_a), state_by_name(model_b, opt_b)
    assert state_a.keys() == state_b.keys() and state_a
    for name, entry in state_a.items():
        assert entry.keys() == state_b[name].keys(), name
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_b[name][key])), (name, key)


def assert_same_parameters(model_a, model_b):
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=name)


def twin(model):
    return copy.deepcopy(model)


@pytest.mark.parametrize("layout", ["compact", "peft"])
def test_a_peft_optimizer_state_dict_loads_and_the_run_continues_as_under_peft(layout):
    torch.manual_seed(0)
    peft_model = lora_only_bert()
    peft_opt = peft_create_loraplus_optimizer(peft_model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO,
                                              loraplus_weight_decay=WD)
    train(peft_model, peft_opt, 3, seed=0)
    saved = saved_and_loaded(peft_opt)
    our_model, fresh_model = twin(peft_model), twin(peft_model)
    ours = create_loraplus_optimizer(our_model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD, group_layout=layout)
    if layout == "compact":  # PEFT's empty fourth group is not ours: torch alone would refuse this
        assert len(ours.param_groups) != len(saved["param_groups"])
    ours.load_state_dict(saved)
    assert_same_state(peft_model, peft_opt, our_model, ours)
    assert {s["step"].item() for s in ours.state.values()} == {3.0}

    fresh = create_loraplus_optimizer(fresh_model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    for m, o in ((peft_model, peft_opt), (our_model, ours), (fresh_model, fresh)):
        train(m, o, 2, seed=1)
    assert_same_parameters(peft_model, our_model)
    with pytest.raises(AssertionError):  # without the loaded moments the steps differ
        assert_same_parameters(peft_model, fresh_model)


def test_peft_state_lands_on_the_right_parameters_where_the_groups_differ():
    torch.manual_seed(0)
    model = bert()  # head and norm trainable: PEFT boosts the 1-D ones, we do not
    peft_opt = peft_create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO,
                                              loraplus_weight_decay=WD)
    train(model, peft_opt, 2, seed=0)
    ours = create_loraplus_optimizer(model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    ours.load_state_dict(saved_and_loaded(peft_opt))
    assert_same_state(model, peft_opt, model, ours)
    rates = {names_by_id(model)[id(p)]: g["lr"] for g in ours.param_groups for p in g["params"]}
    assert rates["base_model.model.classifier.modules_to_save.default.bias"] == LR  # our settings stay


def test_our_saved_state_hands_over_to_peft_optimizer():
    torch.manual_seed(0)
    our_model = lora_only_bert()
    ours = create_loraplus_optimizer(our_model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    train(our_model, ours, 3, seed=0)
    saved = saved_and_loaded(ours)
    # a new process: the model, PEFT's optimiser, ours as the reader of our checkpoint
    peft_model = twin(our_model)
    peft_opt = peft_create_loraplus_optimizer(peft_model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO,
                                              loraplus_weight_decay=WD)
    reader = create_loraplus_optimizer(peft_model, lr=LR, loraplus_lr_ratio=RATIO, weight_decay=WD)
    reader.load_state_dict(saved)
    peft_opt.load_state_dict(state_dict_for(peft_opt, reader))
    assert_same_state(our_model, ours, peft_model, peft_opt)
    train(our_model, ours, 2, seed=1)
    train(peft_model, peft_opt, 2, seed=1)
    assert_same_parameters(our_model, peft_model)


@pytest.mark.parametrize("saved_layout,loaded_layout", [("compact", "peft"), ("peft", "compact")])
def test_state_moves_between_our_two_layouts(saved_layout, loaded_layout):
    torch.manual_seed(0)
    model = bert()
    before = create_loraplus_optimizer(model, lr=LR, weight_decay=WD, group_layout=saved_layout)
    train(model, before, 2, seed=0)
    after = create_loraplus_optimizer(model, lr=LR, weight_decay=WD, group_layout=loaded_layout)
    after.load_state_dict(saved_and_loaded(before))
    assert_same_state(model, before, model, after)


def test_a_checkpoint_with_our_groups_in_another_order_loads_by_group_name():
    torch.manual_seed(0)
    model = bert()
    before = create_loraplus_optimizer(model, lr=LR, weight_decay=WD)
    train(model, before, 2, seed=0)
    saved = saved_and_loaded(before)
    saved["param_groups"] = saved["param_groups"][::-1]  # as written by a version that ordered by model order
    for g in saved["param_groups"]:
        g["lr"] *= 0.5  # as a scheduler halfway through would have left them
    after = create_loraplus_optimizer(model, lr=LR, weight_decay=WD)
    after.load_state_dict(saved)
    assert_same_state(model, before, model, after)
    assert group_names(after) == group_names(before)
    assert [g["lr"] for g in after.param_groups] == [0.5 * g["lr"] for g in before.param_groups]


def test_a_state_dict_for_another_model_is_refused_clearly():
    torch.manual_seed(0)
    other = gpt2()
    peft_opt = peft_create_loraplus_optimizer(other, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO)
    untrained_state = peft_opt.state_dict()
    ours = create_loraplus_optimizer(bert(), lr=LR)
    with pytest.raises(ValueError, match="saved for another model"):
        ours.load_state_dict(untrained_state)


def test_without_peft_installed_a_peft_state_dict_is_refused_clearly(monkeypatch):
    torch.manual_seed(0)
    model = lora_only_bert()
    saved = peft_create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO).state_dict()
    monkeypatch.setitem(sys.modules, "peft.optimizers", None)  # import fails as if PEFT were absent
    ours = create_loraplus_optimizer(model, lr=LR)
    with pytest.raises(ValueError, match="install peft"):
        ours.load_state_dict(saved)
