"""One frozen base drawn once for several configurations (validate's grouped shards): the same
numbers as drawing it for each, bit for bit."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from studies.run.runner import run_coord_check_group, run_coord_check_shard
from studies.run.spec import CoordCheckSpec
from toy_models.models import MODELS, ModelConfig, build_model

VARIANTS = [{"init": "1"}, {"init": "2"}, {"init": "2", "b0_scale": 0.25}, {"init": "paper"}]


def _frozen(model) -> dict[str, torch.Tensor]:
    """Every tensor the model holds outside its caches (base, teacher, data, probe)."""
    out = {}
    for k, v in vars(model).items():
        for i, t in enumerate(v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(t, torch.Tensor):
                out[f"{k}[{i}]"] = t
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_shared_base_is_the_base_drawn_afresh(name):
    bases: dict = {}
    models = [build_model(name, ModelConfig(width=24, rank=2, **v), seed=5, bases=bases) for v in VARIANTS]
    assert len(bases) == 1  # drawn once
    for variant, shared in zip(VARIANTS, models):
        fresh = build_model(name, ModelConfig(width=24, rank=2, **variant), seed=5)
        a, b = _frozen(shared), _frozen(fresh)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        for (a0, b0), (a1, b1) in zip(shared.lora_init(), fresh.lora_init()):
            assert torch.equal(a0, a1) and torch.equal(b0, b1)


def test_a_different_base_is_drawn_not_reused():
    bases: dict = {}
    one = build_model("linear", ModelConfig(width=16, rank=2), seed=0, bases=bases)
    others = [build_model("linear", ModelConfig(width=16, rank=2), seed=1, bases=bases),
              build_model("linear", ModelConfig(width=32, rank=2), seed=0, bases=bases),
              build_model("linear", ModelConfig(width=16, rank=2, teacher="b0-aligned"), seed=0, bases=bases),
              build_model("linear", ModelConfig(width=16, rank=2, dtype="float64"), seed=0, bases=bases)]
    assert len(bases) == 5
    assert not any(o.w_teacher is one.w_teacher for o in others)


def test_a_grouped_shard_gives_the_rows_of_separate_shards():
    parts = tuple((f"p{i}", CoordCheckSpec(model="mlp", optimizer=opt, init=init, widths=(32,), steps=3,
                                           seeds=(0,), b0_scale=scale))
                  for i, (opt, init, scale) in enumerate([("adam", "1", 1.0), ("adam", "2", 1.0),
                                                          ("sgd", "2", 1.0), ("adam", "2", 0.25)]))
    grouped = run_coord_check_group(parts, 32, 2, torch.device("cpu"))
    separate = pd.concat([run_coord_check_shard(spec, 32, 2, torch.device("cpu")).assign(part=name)
                          for name, spec in parts], ignore_index=True)
    pd.testing.assert_frame_equal(grouped, separate, check_exact=True)
