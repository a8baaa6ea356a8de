"""The built-in families (BERT-style encoder, GPT-2-style decoder) as factories, on tiny
settings: monitor rows, the layer map, verdicts and the report of the family width studies."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from scaling.factory import FactoryError, inspect_task
from studies.catalogue import FAMILIES, FamilyStudy
from studies.factory_check import FactoryCheckSpec, analyse, check_factory, judge, run_factory_check
from studies.families.bert import BertFamily
from studies.families.gpt2 import Gpt2Family
from studies.run.study import finish
from tests.conftest import run_context

TINY = dict(layers=1, vocab=32, seq_len=8, batch_size=8, pretrain_steps=2)


def test_tiny_bert_sweep_measures_every_lora_layer_and_judges_it(tmp_path):
    family = BertFamily(**TINY)
    spec = FactoryCheckSpec(factory=family, widths=(64, 128, 192), seeds=(0, 1), schemes=("lora-const", "loraplus"),
                            steps=3, base_width=64)
    results = run_factory_check(spec, run_context(tmp_path / "run", spec.to_dict()))
    assert set(results.layer) == {"L0.query", "L0.value", "all"}
    assert set(results.scheme) == {"lora-const", "loraplus"} and set(results.width) == {64, 128, 192}
    assert set(results.path) == {"torch.func"} and results.pretrain_loss.notna().all()
    d1 = results[(results.metric == "delta1") & (results.step == 1)]
    assert len(d1) and (d1.value == 0).all()  # PEFT's B = 0: A's first update cannot reach the output
    assert (results[(results.metric == "delta2") & (results.step == 1)].value > 0).all()
    assert (results.upstream_lora[results.layer != "all"] == 0).all()  # query and value read the embeddings
    report = finish(FamilyStudy("bert-width", spec), tmp_path, {"results": results},
                    {"study": "bert-width", "spec": spec.to_dict()})
    figures = report.figures
    exponents = pd.read_csv(tmp_path / "exponents.csv")
    assert set(exponents.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    step1 = exponents[(exponents.metric == "delta1") & (exponents.step == 1)]
    assert (step1.verdict == "PASS").all()  # predicted exactly zero, measured exactly zero
    assert list(figures.values()) == ["figures/bert_width.png"]
    assert (tmp_path / "figures" / "bert_width.png").is_file()
    # the golden family report: the family's title, the layer map, the verdicts, the first sharp layer's checks
    text = (tmp_path / "report.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("#")] == [
        f"# {FAMILIES['bert-width'].title}: hidden 64, 128, 192, 2 seeds", "## LoRA layers and their predictions",
        "## Verdicts", "## L0.query"]


def test_gpt2_family_puts_lora_on_conv1d_layers_behind_each_other():
    task = Gpt2Family(**TINY)(64, 2, 0)
    shape = inspect_task(task)
    assert [n.split("transformer.")[1] for n in shape.layers] == ["h.0.attn.c_attn", "h.0.attn.c_proj",
                                                                  "h.0.mlp.c_fc", "h.0.mlp.c_proj"]
    assert shape.init == "1" and task.model.peft_config["default"].fan_in_fan_out
    ups = [len(shape.upstream[n]) for n in shape.layers]
    assert ups == [0, 1, 2, 3]  # each reads the attention block's output through the ones before
    assert 0 < task.info["pretrain_loss"] < 10


def test_families_reject_widths_that_are_not_multiples_of_the_head_size():
    spec = FactoryCheckSpec(factory="bert", widths=(64, 100), seeds=(0,), steps=1)
    with pytest.raises(FactoryError, match="factory bert rejects width 100 .*multiple of 64"):
        check_factory(spec, "cpu")


def test_bert_width_keeps_its_settings_and_judges_old_tables():
    spec = FAMILIES["bert-width"].spec()
    assert spec.widths == (64, 128, 256, 512, 1024) and spec.seeds == (0, 1, 2) and spec.steps == 6
    assert spec.scheme_rates("loraplus", 256) == pytest.approx((1e-3 / 4, 1e-3))
    assert dataclasses.asdict(BertFamily()) == {"layers": 2, "vocab": 256, "seq_len": 16, "batch_size": 32,
                                               "pretrain_steps": 100, "pretrain_lr": 1e-3, "base_width": 64,
                                               "targets": ("query", "value"), "init": "1", "head_size": 64,
                                               "finetune_batch_size": None, "finetune_seq_len": None}
    # a table stored before the layer map was kept: the first block (L0) is the sharp one
    old = pd.DataFrame({"model": "bert", "optimizer": "adam", "init": "1", "scheme": "lora-const", "seed": [0, 1] * 6,
                        "width": [64, 64, 128, 128, 256, 256] * 2, "step": 1, "metric": "delta1", "value": 0.0,
                        "layer": ["L0.query"] * 6 + ["L1.query"] * 6})
    verdicts = judge(old).set_index("layer").verdict
    assert verdicts["L0.query"] == "PASS" and verdicts["L1.query"] == "INCONCLUSIVE"


def test_families_start_from_init_2_on_request():
    shape = inspect_task(BertFamily(**TINY, init="2")(64, 2, 0))
    assert shape.init == "2"
    with pytest.raises(ValueError, match="init must be"):
        Gpt2Family(init="3").check(64, 4)


def test_gpt2_fan_in_base_keeps_the_c_proj_inputs_width_stable():
    """GPT-2's own init (std 0.02 at every width) makes the attention output and the MLP
    activation grow like n^1/2; the family's default base draws hidden matrices with std
    ~ n^-1/2 so that the c_proj LoRA layers read Theta(1) inputs at every width."""
    from scaling.monitor import find_lora_layers

    def c_proj_input_rms(base_init: str, width: int) -> float:
        task = Gpt2Family(**{**TINY, "pretrain_steps": 0}, base_init=base_init)(width, 2, 0)
        layer = find_lora_layers(task.model)[0]["base_model.model.transformer.h.0.mlp.c_proj"]
        seen = []
        handle = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().pow(2).mean().sqrt()))
        task.loss(task.model, task.batch(1))
        handle.remove()
        return float(seen[0])

    growth = {b: c_proj_input_rms(b, 512) / c_proj_input_rms(b, 64) for b in ("fan-in", "hf")}
    assert 0.8 < growth["fan-in"] < 1.25
    assert growth["hf"] > 2.0  # 8x wider: sqrt(8) = 2.8 at initialisation
