"""The delta decomposition of one LoRA update, measured on a fixed probe batch.

For a LoRA layer with input z, Z_A = A z and Z_B = scale * B Z_A. One optimiser step
(A0, B0) -> (A1, B1) changes Z_B by
    dZ_B = scale * [B0 dA z  (delta1)  +  dB A0 z  (delta2)  +  dB dA z  (delta3)]
exactly, with dA = A1 - A0 and dB = B1 - B0. Vector sizes are coordinate RMS
(||v|| / sqrt(dim), averaged over the probe batch); a matrix update's size is
||dW|| of dW = scale * (B1 A1 - B_init A_init), Frobenius and operator norm.

All functions take tensors stacked over runs: z (N, n_in) or (R, N, n_in), A (R, r, n_in),
B (R, n_out, r); they read parameters and inputs and return numbers per run, shape (R,).
"""
from __future__ import annotations

import torch

METRICS = ("delta1", "delta2", "delta3", "dz_b", "z_a", "dz_a", "dw_fro", "dw_op", "share_a", "share_b")


def rms(v: torch.Tensor) -> torch.Tensor:
    """Coordinate RMS over the last two axes (probe samples x coordinates): (R, N, d) -> (R,)."""
    return v.pow(2).mean(dim=(-2, -1)).sqrt()


def decompose(z, A0, B0, A1, B1, scale: float):
    """The three delta terms and the measured change of Z_B, each (R, N, n_out)."""
    dA, dB = A1 - A0, B1 - B0
    za0, dza = z @ A0.mT, z @ dA.mT
    delta1 = scale * dza @ B0.mT
    delta2 = scale * za0 @ dB.mT
    delta3 = scale * dza @ dB.mT
    dz_b = scale * ((z @ A1.mT) @ B1.mT - za0 @ B0.mT)
    return delta1, delta2, delta3, dz_b


def update_norms(A1, B1, A_init, B_init, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Frobenius and operator norms of dW = scale (B1 A1 - B_init A_init), each (R,).

    dW = U V with U = [B1, B_init] (n_out, 2r) and V = [A1; -A_init] (2r, n_in) has rank
    <= 2r, so with U = Qu Ru and V^T = Qv Rv its singular values are those of the small
    (2r, 2r) matrix Ru Rv^T: no n_out x n_in matrix is ever formed.
    """
    B_init, A_init = B_init.expand_as(B1), A_init.expand_as(A1)  # shared init -> per run
    U = torch.cat([B1, B_init], dim=-1)
    V = torch.cat([A1, -A_init], dim=-2)
    core = scale * torch.linalg.qr(U).R @ torch.linalg.qr(V.mT).R.mT
    # A run whose factors overflowed must not stop the population: its norms are inf.
    finite = torch.isfinite(core).flatten(-2).all(-1)
    safe = torch.where(finite[..., None, None], core, torch.zeros_like(core))
    inf = torch.full(finite.shape, float("inf"), dtype=core.dtype, device=core.device)
    return (torch.where(finite, torch.linalg.matrix_norm(safe, "fro"), inf),
            torch.where(finite, torch.linalg.matrix_norm(safe, 2), inf))


def layer_metrics(z, A0, B0, A1, B1, gA, gB, A_init, B_init, scale: float) -> dict[str, torch.Tensor]:
    """Every metric of one LoRA layer for one step, each (R,).

    gA, gB: the gradients the step was computed from. share_a / share_b are the first-order
    loss decreases -<gA, dA> and -<gB, dB> as fractions of their sum (the "equivalent
    contribution" argument: efficient training has both Theta(1)). z_a is Z_A after the step,
    dz_a the part of it that training added, (A1 - A_init) z: Z_A = A_init z + dz_a, so z_a's
    slope is a crossover between the two parts' exponents while dz_a shows the updates' own.
    """
    d1, d2, d3, dzb = decompose(z, A0, B0, A1, B1, scale)
    drop_a = -(gA * (A1 - A0)).sum(dim=(-2, -1))
    drop_b = -(gB * (B1 - B0)).sum(dim=(-2, -1))
    total = drop_a + drop_b
    fro, op = update_norms(A1, B1, A_init, B_init, scale)
    return {
        "delta1": rms(d1), "delta2": rms(d2), "delta3": rms(d3), "dz_b": rms(dzb),
        "z_a": rms(z @ A1.mT), "dz_a": rms(z @ (A1 - A_init).mT), "dw_fro": fro, "dw_op": op,
        "share_a": drop_a / total, "share_b": drop_b / total,
    }
