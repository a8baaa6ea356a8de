"""LoRA MLPs.

``mlp``: x (d) -> h_0 = relu(W_in x) -> h_l = relu((W*_l + scale B_l A_l) h_{l-1}), l = 1..L
-> f = W_out h_L. W_in ~ N(0, 2/d) and W*_l ~ N(0, 2/n) (He: hidden coordinates Theta(1));
W_out ~ N(0, 1/n^2) (mean-field readout, so an efficient Theta(1) feature update moves the
output by Theta(1), not Theta(sqrt n)). Target y = sin(sum(x)/sqrt(d)), independent of n.

``paper-mlp``: the LoRA+ paper's Fig. 2 model f(x) = W_out relu(B A relu(W_in x)) with no
base matrix between A and B; d = 5, X ~ N(0, I_d), Y = sin(mean(X)), 1000 training samples
(full batch), 100 test samples; W_in ~ N(0, 1), W_out ~ N(0, 1/n), A ~ N(0, 1/n),
B ~ N(0, 1) (init "paper", as printed in the paper).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from toy_models.base import LoraModel, lora_down, lora_down_grad


class MlpModel(LoraModel):
    name = "mlp"
    default_input_dim = 16
    has_hidden_base = True

    def _build(self, gen: torch.Generator) -> None:
        n, d, depth = self.width, self.cfg.input_dim, self.cfg.depth
        self.w_in = self.to_device(self._w_in(gen, n, d))
        self.w_hidden = [self.to_device(torch.randn(n, n, generator=gen, dtype=torch.float64)
                                        .mul_((2.0 / n) ** 0.5))
                         for _ in range(depth)] if self.has_hidden_base else [None] * depth
        self.w_out = self.to_device(self._w_out(gen, n))
        self.layer_names = [f"hidden{l + 1}" for l in range(depth)]
        self.layer_shapes = [(n, n)] * depth

    def _w_in(self, gen, n, d):
        return torch.randn(n, d, generator=gen, dtype=torch.float64) * (2.0 / d) ** 0.5

    def _w_out(self, gen, n):
        return torch.randn(1, n, generator=gen, dtype=torch.float64) / n

    def _sample(self, gen, size):
        x = torch.randn(size, self.cfg.input_dim, generator=gen, dtype=torch.float64)
        y = torch.sin(x.sum(-1, keepdim=True) / self.cfg.input_dim ** 0.5)
        return self.to_device(x), self.to_device(y)

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """relu(W_in x), (N, n); cached for the fixed batches since W_in is frozen."""
        return self.cached("h0", lambda x: torch.relu(x @ self.w_in.T), x)

    def forward(self, x, As, Bs):
        h = self.input_features(x)
        inputs = []
        for l, (w, A, B) in enumerate(zip(self.w_hidden, As, Bs)):
            inputs.append(h)
            pre = self.lora(h.detach() if self.detached(l) else h, A, B)
            if w is not None:
                pre = pre + h @ w.T
            h = torch.relu(pre)
        return h @ self.w_out.T, inputs

    def loss_and_grads(self, x, y, As, Bs, grads: bool = True):
        """Hand-written forward and backward (contract: ``LoraModel.autograd_loss_and_grads``).

        Per layer, with dpre the gradient at the pre-activation (R, N, n):
        dB = scale dpre^T Z_A, dZ_A = scale dpre B, dA = dZ_A^T h, and the gradient passed
        down is dpre W* + dZ_A A (dpre W* alone under the stacking control). No gradient of a frozen weight is ever formed, and the
        first layer's W* h_0 (shared by all runs) is cached.
        """
        s, L = self.scale, len(As)
        h = self.input_features(x)                                  # (N, n), shared
        inputs, zas, hs = [], [], []
        for l, (w, A, B) in enumerate(zip(self.w_hidden, As, Bs)):
            inputs.append(h)
            za = lora_down(h, A)                                    # (R, N, r)
            if w is None:
                pre = torch.bmm(za, B.mT).mul_(s)
            else:
                base = (self.cached(f"base{l}", lambda h, w=w: h @ w.T, h) if h.dim() == 2
                        else h @ w.T)
                pre = torch.baddbmm(base, za, B.mT, alpha=s)        # (R, N, n)
            h = pre.relu_()
            zas.append(za)
            hs.append(h)
        E = (h @ self.w_out.T).sub_(y)                              # (R, N, d_out)
        k = self.loss_weight(y)
        loss = E.square().sum((-2, -1)).mul_(0.5 * k)
        if not grads:
            return loss, None, inputs
        g = (E @ self.w_out).mul_(k)                                # dloss/dh_L, (R, N, n)
        dA, dB = [None] * L, [None] * L
        for l in reversed(range(L)):
            dpre = torch.where(hs[l] > 0, g, 0.0)                   # relu'(pre), as autograd
            dB[l] = torch.bmm(zas[l].mT, dpre).mul_(s).mT           # (R, n, r), B^T-major
            dza = torch.bmm(dpre, Bs[l]).mul_(s)                    # (R, N, r)
            dA[l] = lora_down_grad(dza, inputs[l])                  # (R, r, n)
            if l > 0:
                w = self.w_hidden[l]
                if self.detached(l):  # the control: only the frozen path carries the gradient down
                    g = dpre @ w
                else:
                    g = torch.bmm(dza, As[l]) if w is None else torch.baddbmm(dpre @ w, dza, As[l])
        return loss, dA + dB, inputs

    def detached(self, layer: int) -> bool:
        """Whether LoRA layer ``layer`` (0-based) reads a detached copy of its input (the
        stacking control, ``ModelConfig.detach_lora_input``): every layer but the first."""
        return self.cfg.detach_lora_input and layer > 0


class PaperMlpModel(MlpModel):
    name = "paper-mlp"
    default_init = "paper"
    default_batch = 1000
    default_input_dim = 5
    has_hidden_base = False

    def __init__(self, cfg, seed, device="cpu", bases=None):
        super().__init__(replace(cfg, depth=1), seed, device, bases)

    def _w_in(self, gen, n, d):
        return torch.randn(n, d, generator=gen, dtype=torch.float64)

    def _w_out(self, gen, n):
        return torch.randn(1, n, generator=gen, dtype=torch.float64) / n ** 0.5

    def _sample(self, gen, size):
        x = torch.randn(size, self.cfg.input_dim, generator=gen, dtype=torch.float64)
        return self.to_device(x), self.to_device(torch.sin(x.mean(-1, keepdim=True)))

    def test_batch(self, size: int = 100):
        return super().test_batch(size)

    # The (R, N, n) hidden layer is the whole cost: it is processed in blocks of runs small
    # enough to stay in the L2 caches (about 2 MiB per core; 400 kB per run at the paper's
    # N = 1000, n = 100). None: 2 MiB per intra-op thread.
    block_bytes: int | None = None

    def loss_and_grads(self, x, y, As, Bs, grads: bool = True):
        """Hand-written pass for f = W_out relu(scale B A h_0) (contract:
        ``LoraModel.autograd_loss_and_grads``).

        With Z_A = A h_0 (R, N, r) and M_sj = [unit j active on sample s] the only (N, n)
        object per run, everything else lives in rank-r space:
          P = M (scale W_out^T * B)      (R, N, r)   so  f = <Z_A, P>  per sample,
          dZ_A = k E P,   dB_j = scale k W_out_j (M^T (E * Z_A))_j,   dA = dZ_A^T h_0,
        with E = f - y and k the loss weight. M is built, used twice and discarded one
        cache-sized block of runs at a time: 4 passes over (N, n) per run instead of the
        ~10 of autograd, none of them through main memory.
        """
        h0 = self.input_features(x)                                 # (N, n), shared
        A, B = As[0], Bs[0].contiguous()                            # (R, r, n), (R, n, r)
        R, r, n = A.shape
        N = h0.shape[0]
        s, k = self.scale, self.loss_weight(y)
        yv = y.view(1, N)
        budget = self.block_bytes or 2 ** 21 * torch.get_num_threads()
        blk = max(1, min(R, budget // (n * N * A.element_size())))
        ws = self.workspace
        mask_buf, zaT, PT = ws("mask", (blk, n, N), A), ws("zaT", (R, r, N), A), ws("PT", (R, r, N), A)
        E, U = ws("E", (R, N), A), ws("U", (blk, r, N), A)
        torch.mm(A.reshape(R * r, n), h0.T, out=zaT.view(R * r, N))   # Z_A^T, one GEMM
        wBT = Bs[0].mT * (s * self.w_out)                           # (R, r, n)
        dBT = ws("dBT", (R, r, n), A) if grads else None
        for i in range(0, R, blk):  # blocks of runs, never single runs
            j = min(i + blk, R)
            mask = torch.bmm(B[i:j], zaT[i:j], out=mask_buf[:j - i]).gt_(0)   # M^T, (b, n, N)
            torch.bmm(wBT[i:j], mask, out=PT[i:j])
            if grads:  # dB needs E, which needs P of the whole block: finish it here
                torch.sub(torch.linalg.vecdot(zaT[i:j], PT[i:j], dim=1), yv, out=E[i:j])
                torch.mul(zaT[i:j], E[i:j, None, :], out=U[:j - i])
                torch.bmm(U[:j - i], mask.mT, out=dBT[i:j])
        if not grads:
            torch.sub(torch.linalg.vecdot(zaT, PT, dim=1), yv, out=E)
        loss = E.square().sum(1).mul_(0.5 * k)
        if not grads:
            return loss, None, [h0]
        dB = (dBT * (s * k * self.w_out)).mT                        # (R, n, r), B^T-major
        dzaT = PT.mul_(E.unsqueeze(1))                              # dZ_A^T / k, in place
        dA = torch.mm(dzaT.view(R * r, N), h0).mul_(k).view(R, r, n)
        return loss, [dA, dB], [h0]


class PaperMlpBaseModel(PaperMlpModel):
    """The Fig. 2 model read as LoRA on a frozen layer: f(x) = W_out relu((W + scale B A) h_0),
    h_0 = relu(W_in x), with W ~ N(0, 2/n) frozen and the paper's data, W_in and W_out. The paper
    prints no W; without it Init[1] and Init[2] start at B A h_0 = 0 exactly, where relu'(0) = 0
    stops every gradient, so this is the reading under which those inits can train at all
    (``lr-laws``, the Fig. 2 question). Default init: Init[1]."""

    name = "paper-mlp-base"
    default_init = "1"
    has_hidden_base = True
    loss_and_grads = MlpModel.loss_and_grads
