"""The toy model's common random numbers: its draws at width n are the first n of those at any
wider width (toy_models.base.NestedNormals), with the distribution of independent draws; the
other models keep independent draws per width."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from toy_models.base import NestedNormals
from toy_models.models import ModelConfig, build_model


def toy(width: int, init: str = "1", seed: int = 3, data: str = "fresh"):
    """data "fresh": a batch per step, and a probe of its own (with "fixed", validate's, both are the step-0 batch)."""
    return build_model("toy", ModelConfig(width=width, init=init, dtype="float64", data=data), seed)


@pytest.mark.parametrize("narrow, wide", [(256, 1024), (300, 512), (64, 65536)])
def test_the_toys_draws_at_a_width_are_the_first_coordinates_of_a_wider_ones(narrow, wide):
    small, large = toy(narrow), toy(wide)
    for step in (1, 2):
        assert torch.equal(small.train_batch(step)[0], large.train_batch(step)[0][:, :narrow])
    assert torch.equal(small.probe[0], large.probe[0][:, :narrow])
    assert torch.equal(small.test_batch(16)[0], large.test_batch(16)[0][:, :narrow])
    assert torch.equal(toy(narrow, data="fixed").train_batch(1)[0], toy(wide, data="fixed").train_batch(1)[0][:, :narrow])
    # W* ~ N(0, 1/n) and A ~ N(0, 1/n): the same standard normals, each scaled by its width
    torch.testing.assert_close(small.w_star * narrow ** 0.5, (large.w_star * wide ** 0.5)[:, :narrow])
    a_small, a_large = small.lora_init()[0][0], large.lora_init()[0][0]
    torch.testing.assert_close(a_small * narrow ** 0.5, (a_large * wide ** 0.5)[:, :narrow])
    b_small, b_large = toy(narrow, "2").lora_init()[0][1], toy(wide, "2").lora_init()[0][1]
    assert torch.equal(b_small, b_large) and b_small.abs().sum() > 0  # B0 (1, r) does not depend on the width


def test_seeds_steps_and_streams_draw_different_numbers():
    x = toy(256).train_batch(1)[0]
    assert not torch.equal(x, toy(256, seed=4).train_batch(1)[0])
    assert not torch.equal(x, toy(256).train_batch(2)[0])
    assert not torch.equal(x[:1], toy(256).probe[0][:1])
    draws = NestedNormals(0, "lora")
    assert not torch.equal(draws.fixed(1, 4), draws.columns(1, 4))


def test_nested_normals_are_standard_normal_and_their_blocks_independent():
    z = NestedNormals(7, "data", 1).columns(4, 4096)  # blocks [0, 256), [256, 512), ..., [2048, 4096)
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 0.01
    first, second = z[:, :256].flatten().numpy(), z[:, 256:512].flatten().numpy()
    assert abs(np.corrcoef(first, second)[0, 1]) < 4 / np.sqrt(first.size)  # 4 standard errors


def test_the_linear_model_keeps_independent_draws_per_width():
    small = build_model("linear", ModelConfig(width=256, dtype="float64"), 3)
    large = build_model("linear", ModelConfig(width=512, dtype="float64"), 3)
    assert not torch.equal(small.train_batch(1)[0], large.train_batch(1)[0][:, :256])
