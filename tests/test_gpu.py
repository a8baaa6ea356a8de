"""CUDA: the same coordinate check on the GPU as on the CPU (skipped where there is no CUDA)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from studies.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_coord_check_on_cuda_matches_cpu(tmp_path):
    args = ["coord-check", "--model", "mlp", "--widths", "64,128", "--steps", "3", "--seeds", "2", "--dtype", "float64"]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert main([*args, "--device", "cuda", "--out", str(tmp_path / "cuda")]) == 0
    cpu, gpu = (pd.read_csv(tmp_path / d / "results.csv") for d in ("cpu", "cuda"))
    assert len(cpu) == len(gpu)
    assert ((cpu.value - gpu.value).abs() <= 1e-8 * (1 + cpu.value.abs())).all()
