"""The Init[2] controls: the linear models' teacher option (the overshoot) and b0_scale (the B0 path)."""
from __future__ import annotations

import math

import pytest
import torch

from studies.run.spec import CoordCheckSpec, SpecError
from toy_models.models import ModelConfig, build_model


def _out_of_span(model) -> float:
    """Relative size of the teacher's low-rank part outside span(Init[2]'s B0)."""
    b0 = model.lora_init()[0][1].double()
    delta = (model.w_teacher - model.w_star).double()
    q, _ = torch.linalg.qr(b0)
    return float((delta - q @ (q.T @ delta)).norm() / delta.norm())


def test_b0_aligned_teacher_lies_in_span_of_b0():
    aligned = build_model("linear", ModelConfig(width=64, init="2", teacher="b0-aligned", dtype="float64"), 0)
    independent = build_model("linear", ModelConfig(width=64, init="2", dtype="float64"), 0)
    assert _out_of_span(aligned) < 1e-10
    assert _out_of_span(independent) > 0.9  # a random rank-4 direction in 64 dims is nearly orthogonal
    assert torch.equal(aligned.w_star, independent.w_star)  # only the teacher changes


def test_teacher_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="teacher"):
        ModelConfig(width=64, teacher="other").check()
    with pytest.raises(SpecError, match="toy and linear"):
        CoordCheckSpec(model="mlp", teacher="b0-aligned")


def test_b0_scale_multiplies_the_random_b0_only():
    """b0_scale is an intervention on Init[2]'s B0 (and the paper init's B); it leaves A0, the base,
    the data and Init[1]'s zero B0 alone, and a spec at the default hashes as before it existed."""
    for init in ("1", "2", "paper"):
        plain = build_model("mlp", ModelConfig(width=32, init=init, dtype="float64"), seed=3)
        scaled = build_model("mlp", ModelConfig(width=32, init=init, dtype="float64", b0_scale=0.25), seed=3)
        for (a, b), (a4, b4) in zip(plain.lora_init(), scaled.lora_init()):
            assert torch.equal(a, a4) and torch.allclose(b4, 0.25 * b, rtol=0, atol=0)
        assert torch.equal(plain.w_hidden[0], scaled.w_hidden[0]) and torch.equal(plain.probe[0], scaled.probe[0])
    with pytest.raises(ValueError, match="b0 scale"):
        ModelConfig(width=32, b0_scale=-1.0).check()
    with pytest.raises(ValueError, match="b0 scale"):
        ModelConfig(width=32, b0_scale=math.nan).check()
    assert "b0_scale" not in CoordCheckSpec(model="mlp").to_dict()
    assert CoordCheckSpec(model="mlp", b0_scale=0.5).to_dict()["b0_scale"] == 0.5
