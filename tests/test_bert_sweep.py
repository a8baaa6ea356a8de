"""The BERT-style width sweep on a tiny setting: monitor rows, verdicts, report."""
from __future__ import annotations

import pandas as pd
import pytest

from studies.bert_sweep import BertSweepSpec, bert_predictor, render, run_bert_sweep
from studies.run.shards import ShardStore
from studies.run.spec import SpecError


def test_tiny_sweep_measures_every_lora_layer_and_judges_it(tmp_path):
    spec = BertSweepSpec(widths=(64, 128), seeds=(0, 1), layers=1, vocab=32, seq_len=8, batch_size=8,
                         pretrain_steps=2, steps=3)
    results = run_bert_sweep(spec, ShardStore(tmp_path / "run", spec.to_dict()), progress=False)
    assert set(results.layer) == {"L0.query", "L0.value"}
    assert set(results.scheme) == {"lora-const", "loraplus"} and set(results.width) == {64, 128}
    d1 = results[(results.metric == "delta1") & (results.step == 1)]
    assert (d1.value == 0).all()  # PEFT's B = 0: A's first update cannot reach the output
    assert (results[(results.metric == "delta2") & (results.step == 1)].value > 0).all()
    render(tmp_path, results, {"spec": spec.to_dict()})
    exponents = pd.read_csv(tmp_path / "exponents.csv")
    assert set(exponents.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    step1 = exponents[(exponents.metric == "delta1") & (exponents.step == 1)]
    assert (step1.verdict == "PASS").all()  # predicted exactly zero, measured exactly zero
    assert (tmp_path / "figures" / "bert_width.png").is_file() and "PASS" in (tmp_path / "report.md").read_text()


def test_predictions_are_the_adam_lora_layers():
    p = bert_predictor("bert", "adam", "1", -1, 0, 2)
    assert p.model == "mlp" and p.classification == "efficient"


def test_bad_widths():
    with pytest.raises(SpecError, match="multiples of 64"):
        BertSweepSpec(widths=(100,))
