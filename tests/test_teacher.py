"""The linear models' teacher option: the control for the Init[2] overshoot."""
from __future__ import annotations

import pytest
import torch

from studies.spec import CoordCheckSpec, SpecError
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
