"""The transfer test on a factory's model (``lr-laws --factory REF --transfer``): the grid and
the rules' pairs train the factory's own model, the same draw as the laws' shards, and the
table compares each rule's pair with the rates retuned at the wider width."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.lr_laws.factory import factory_configs
from studies.lr_laws.transfer import (TransferConfig, factory_pairs, factory_transfers, rule_pairs, transfer_shard,
                                      transfer_table)
from studies.run.spec import SpecError

EXAMPLE = str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "tiny_mlp_factory.py") + ":make"


def small(init: str = "1") -> TransferConfig:
    return TransferConfig(model="tiny", optimizer="adam", init=init, widths=(16, 32), seeds=(0, 1),
                          eta_range=(1e-3, 1.0), per_decade=1, steps=3, batch_size=None, factory=EXAMPLE)


def test_factory_pairs_train_the_factory_model_reproducibly_and_a_vanishing_rate_keeps_the_start():
    config = small()
    eta = np.array([1e-9, 0.1])
    first = factory_pairs(config, 16, 0, eta, eta, "cpu")
    again = factory_pairs(config, 16, 0, eta, eta, "cpu")
    assert first["train"].shape == (4, 2)
    np.testing.assert_array_equal(first["train"], again["train"])
    start = first["train"][0]
    assert start[0] == pytest.approx(start[1])                     # one model, one start
    assert first["train"][3, 0] == pytest.approx(start[0], rel=1e-5)  # a rate of 1e-9 does not move it
    assert first["train"][3, 1] < start[1]                           # Adam at 0.1 trains it


def test_factory_transfer_runs_both_phases_and_the_rules_scale_the_tuned_pair():
    config = small()
    grid = [transfer_shard(config, w, s, (), "cpu") for w in config.widths for s in config.seeds]
    grids = pd.concat(grid, ignore_index=True)
    assert len(grids) == len(config.widths) * len(config.seeds) * 16   # 4 x 4 pairs per (width, seed)
    pairs = rule_pairs(config, grids)[32]
    by_rule = {name: (a, b) for name, a, b in pairs}
    lora_plus = next(v for k, v in by_rule.items() if k.startswith("LoRA+"))
    held = next(v for k, v in by_rule.items() if k.startswith("one rate held"))
    assert held[0] == held[1]
    tuned_a = lora_plus[0] * 2                                     # eta_A* n0 / n with n / n0 = 2
    assert tuned_a in set(grids.eta_a) and lora_plus[1] in set(grids.eta_b)
    rules = pd.concat([transfer_shard(config, 32, s, pairs, "cpu") for s in config.seeds], ignore_index=True)
    table = transfer_table(pd.concat([grids, rules], ignore_index=True), [config])
    assert set(table.rule) == set(by_rule) and (table.width == 32).all()
    finite = table[np.isfinite(table.gap)]
    assert len(finite) and (finite.gap_low <= finite.gap).all() and (finite.gap <= finite.gap_high).all()
    # the retuned best pair is on the grid, so no rule's pair (also trained) can beat it by much on average
    assert (finite.gap > 0.5).all()


def test_factory_transfers_follow_the_laws_configuration_and_bad_settings_are_refused():
    (laws,) = factory_configs([EXAMPLE], inits=["2"], widths=[64, 128, 256], seeds=3)
    (t,) = factory_transfers([laws])
    assert (t.widths, t.seeds, t.rank, t.init, t.factory) == ((64, 128, 256), (0, 1, 2), 4, "2", EXAMPLE)
    assert t.steps == laws.criteria[0].steps
    with pytest.raises(SpecError):
        TransferConfig(model="tiny", optimizer="sgd", init="1", widths=(16, 32), factory=EXAMPLE)
