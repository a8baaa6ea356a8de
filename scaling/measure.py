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

METRICS = ("delta1", "delta2", "delta3", "dz_b", "z_a", "dz_a", "dw_fro", "dw_op", "share_a", "share_b",
           "loss_drop")


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


def _gram(M: torch.Tensor) -> torch.Tensor:
    """M^T M in float64: (..., n, k) -> (..., k, k)."""
    Md = M.double()
    return Md.mT @ Md


def _rms_of_product(X: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """rms(X @ M^T) without forming it: X (R, N, k), M (R or 1, n_out, k) -> (R,).

    ||X M^T||_F^2 = sum over samples of x^T (M^T M) x: only k x k Gram matrices (float64)."""
    Xd = X.double()
    sq = ((Xd @ _gram(M)) * Xd).sum(dim=(-2, -1))
    return (sq.clamp_min(0) / (X.shape[-2] * M.shape[-2])).sqrt().to(X.dtype)


def update_norms(A1, B1, A_init, B_init, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Frobenius and operator norms of dW = scale (B1 A1 - B_init A_init), each (R,).

    dW = U V with U = [B1, B1 - B_init] (n_out, 2r) and V = [A1 - A_init; A_init] (2r, n_in),
    a form in which no two large terms cancel. Its norms come from the (2r, 2r) Gram matrices
    Gu = U^T U and Gv = V V^T (float64): ||dW||_F^2 = <Gu, Gv> and ||dW||_2^2 is the largest
    eigenvalue of Gu^1/2 Gv Gu^1/2. No n_out x n_in matrix is ever formed.
    """
    B_init, A_init = B_init.expand_as(B1), A_init.expand_as(A1)  # shared init -> per run
    Gu = _gram(torch.cat([B1, B1 - B_init], dim=-1))
    Gv = _gram(torch.cat([A1 - A_init, A_init], dim=-2).mT)
    # A run whose factors overflowed must not stop the population: its norms are inf.
    finite = torch.isfinite(Gu).flatten(-2).all(-1) & torch.isfinite(Gv).flatten(-2).all(-1)
    Gu = torch.where(finite[..., None, None], Gu, torch.zeros_like(Gu))
    Gv = torch.where(finite[..., None, None], Gv, torch.zeros_like(Gv))
    fro2 = (Gu * Gv).sum(dim=(-2, -1)).clamp_min(0)
    evals, evecs = torch.linalg.eigh(Gu)
    root = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.mT
    op2 = torch.linalg.eigvalsh(root @ Gv @ root)[..., -1].clamp_min(0)
    inf = torch.full(finite.shape, float("inf"), dtype=A1.dtype, device=A1.device)
    return (torch.where(finite, scale * fro2.sqrt().to(A1.dtype), inf),
            torch.where(finite, scale * op2.sqrt().to(A1.dtype), inf))


def layer_metrics(z, A0, B0, A1, B1, gA, gB, A_init, B_init, scale: float) -> dict[str, torch.Tensor]:
    """Every metric of one LoRA layer for one step, each (R,), equal to the coordinate RMS of
    ``decompose``'s terms (the tests hold them to it) at a cost of O(N r^2 + n r^2) per run.

    gA, gB: the gradients the step was computed from. share_a / share_b are the first-order
    loss decreases -<gA, dA> and -<gB, dB> as fractions of their sum (the "equivalent
    contribution" argument: efficient training has both Theta(1)); loss_drop is their sum, the
    step's first-order loss decrease through this layer (loss units). z_a is Z_A after the step,
    dz_a the part of it that training added, (A1 - A_init) z: Z_A = A_init z + dz_a, so z_a's
    slope is a crossover between the two parts' exponents while dz_a shows the updates' own.
    """
    # The sizes of the four (R, N, n_out) terms of ``decompose`` from r x r Gram matrices:
    # delta1 = dZ_A B0^T, delta2 = Z_A0 dB^T, delta3 = dZ_A dB^T and, exactly, dZ_B = delta1 +
    # delta2 + delta3 = [dZ_A, Z_A0] [B1, dB]^T (no large terms cancel).
    za0, dza = z @ A0.mT, z @ (A1 - A0).mT
    dB = B1 - B0
    B0 = B0.expand_as(B1)
    d1 = scale * _rms_of_product(dza, B0)
    d2 = scale * _rms_of_product(za0, dB)
    d3 = scale * _rms_of_product(dza, dB)
    dzb = scale * _rms_of_product(torch.cat([dza, za0], dim=-1), torch.cat([B1, dB], dim=-1))
    drop_a = -(gA * (A1 - A0)).sum(dim=(-2, -1))
    drop_b = -(gB * (B1 - B0)).sum(dim=(-2, -1))
    total = drop_a + drop_b
    fro, op = update_norms(A1, B1, A_init, B_init, scale)
    return {
        "delta1": d1, "delta2": d2, "delta3": d3, "dz_b": dzb,
        "z_a": rms(za0 + dza), "dz_a": rms(z @ (A1 - A_init).mT), "dw_fro": fro, "dw_op": op,
        "share_a": drop_a / total, "share_b": drop_b / total, "loss_drop": total,
    }
