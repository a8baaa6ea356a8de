"""The cache of pretrained bases (studies.families.cache): reuse, corruption and stale
settings rebuilt, nothing unpickled but tensors, and a family's base identical either way."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from studies.families import cache
from studies.families.bert import BertFamily
from studies.families.cache import CACHE_ENV, cached_base, entry_path, manifest

SETTINGS = {"class": "Tiny", "steps": 3}


class Builder:
    """fresh/build for a tiny Linear; counts the builds."""

    def __init__(self, value: float = 1.0):
        self.builds, self.value = 0, value

    def fresh(self):
        torch.manual_seed(0)
        return nn.Linear(3, 2)

    def build(self, model):
        self.builds += 1
        with torch.no_grad():
            model.weight.fill_(self.value)
        return 0.5


@pytest.fixture
def where(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def path_of(where, settings=SETTINGS):
    return entry_path(where, manifest("tiny", settings, 64, 0, "cpu"))


def test_a_second_call_reuses_the_base(where):
    b = Builder()
    m1, loss1, how1 = cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)
    m2, loss2, how2 = cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)
    assert (how1, how2, b.builds) == ("built", "cache", 1)
    assert loss2 == loss1 == 0.5 and torch.equal(m1.weight, m2.weight) and torch.equal(m1.bias, m2.bias)
    assert [p.name for p in where.iterdir()] == [path_of(where).name]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_entry_is_rebuilt(where, damage):
    b = Builder()
    cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)
    path = path_of(where)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # one byte of the tensors' storage: loads fine, the digest tells
        i = data.rfind(b"\x00\x00\x80\x3f")  # a float32 1.0 of the weight
        assert i > 0
        data[i + 3] ^= 0x01
    else:
        data = bytearray(b"not a torch file")
    path.write_bytes(bytes(data))
    model, _, how = cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)
    assert (how, b.builds) == ("built", 2) and (model.weight == 1.0).all()
    assert cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)[2] == "cache"  # whole again


def test_stale_settings_are_rebuilt(where):
    b = Builder()
    cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)
    other = Builder(value=2.0)
    model, _, how = cached_base("tiny", {**SETTINGS, "steps": 4}, 64, 0, "cpu", other.fresh, other.build)
    assert (how, other.builds) == ("built", 1) and (model.weight == 2.0).all()  # another file, not the old base
    # an entry at the right name whose manifest was built for other settings (e.g. an older format)
    stale = path_of(where)
    entry = torch.load(stale, weights_only=True)
    entry["manifest"] = {**entry["manifest"], "format": cache.FORMAT - 1}
    torch.save(entry, stale)
    model, _, how = cached_base("tiny", SETTINGS, 64, 0, "cpu", other.fresh, other.build)
    assert (how, other.builds) == ("built", 2) and (model.weight == 2.0).all()


class _Trap:
    ran = False

    def __reduce__(self):
        return (_spring, ())


def _spring():
    _Trap.ran = True
    return {}


def test_a_file_that_would_run_code_is_never_unpickled(where):
    path = path_of(where)
    path.write_bytes(pickle.dumps({"manifest": None, "state": _Trap()}))
    b = Builder()
    _, _, how = cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)
    assert how == "built" and not _Trap.ran


def test_the_cache_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    b = Builder()
    assert cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)[2] == "built (cache off)"
    assert cached_base("tiny", SETTINGS, 64, 0, "cpu", b.fresh, b.build)[2] == "built (cache off)"
    assert b.builds == 2 and not list(tmp_path.iterdir())


def test_a_family_base_is_the_same_from_the_cache(where, monkeypatch):
    family = BertFamily(layers=1, vocab=32, seq_len=8, batch_size=8, pretrain_steps=2, head_size=32)
    built, loss = family.pretrained(32, 0)

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretrained again")
    monkeypatch.setattr("studies.families.bert.pretrain", no_pretraining)
    again, loss_again = family.pretrained(32, 0)
    assert loss_again == loss
    for (name, p), (_, q) in zip(built.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), name
    # the fine-tune's own settings do not name another base; the pretraining's do
    BertFamily(**{**family.__dict__, "finetune_batch_size": 4}).pretrained(32, 0)
    with pytest.raises(AssertionError, match="pretrained again"):
        BertFamily(**{**family.__dict__, "pretrain_lr": 2e-3}).pretrained(32, 0)
