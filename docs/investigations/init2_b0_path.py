"""Why the mlp's Init[2] late-step slopes sit above their predictions: the B0 path.

Trains the validate suite's mlp (Adam, Init[2], the suite's model configuration) under LoRA+
and lora-inv, one step at a time, and records for every (scheme, width, seed, step, layer):

  progress         1 - L(t) / L(0) on the training batch
  learned_over_b0  ||(B - B0)^T g|| / ||B0^T g||, g = dL/d(pre-activation): the two parts of
                   the error signal that reaches A (B0's part is a random sum, Theta(n^-1/2)
                   relative to the learned part's Theta(eta_B t))
  grad_cos         cos(grad_A(t), grad_A(1)): how far A's gradient has turned since step 1
  adam_step        mean |dA(t)| / eta_A: Adam's normalised step (1 at step 1, smaller once
                   the gradient turns)
  dza_per_step     rms(dA(t) z) / (eta_A mean_s sum_j z_sj): the part of step t that reaches
                   Z_A, as a fraction of a perfectly aligned full step

``--b0-scale`` multiplies B0 (an intervention: the B0 path shrinks with it; the same option
exists for ``loraplus-scaling coord-check``). Writes a CSV and
prints the seed means as Markdown tables. Results and their reading:
docs/investigations/init2_b0_path.md.

    python docs/investigations/init2_b0_path.py --widths 128,512,2048,8192 --seeds 16
"""
from __future__ import annotations

import argparse

import pandas as pd
import torch

from scaling.rules import parse_scheme
from studies.run.spec import CoordCheckSpec
from toy_models.models import build_model
from toy_models.population import Population

METRICS = ("progress", "learned_over_b0", "grad_cos", "adam_step", "dza_per_step")


def pre_activation_grads(model, x, y, As, Bs):
    """Per-run loss (R,) and dL/d(pre-activation) of every hidden layer, (R, N, n) each, with
    each layer's input (N, n) or (R, N, n); autograd through the mlp's forward."""
    with torch.enable_grad():
        h, pres, inputs = model.input_features(x), [], []
        for l, (w, A, B) in enumerate(zip(model.w_hidden, As, Bs)):
            inputs.append(h)
            pre = h @ w.T + model.scale * (h @ A.mT) @ B.mT
            if l == 0:  # the first layer's input is frozen: start the graph here
                pre = pre.detach().requires_grad_(True)
            pres.append(pre)
            h = torch.relu(pre)
        loss = model.loss(h @ model.w_out.T, y)
        grads = torch.autograd.grad(loss.sum(), pres)
    return loss.detach(), [g.detach() for g in grads], [z.detach() for z in inputs]


def trace(width: int, seed: int, schemes: list[str], steps: int, b0_scale: float) -> list[dict]:
    """Rows of METRICS for one (width, seed), every scheme trained side by side."""
    spec = CoordCheckSpec(model="mlp", optimizer="adam", init="2", schemes=tuple(schemes),
                          widths=(width,), steps=steps, seeds=(seed,), b0_scale=b0_scale)
    model = build_model("mlp", spec.model_config(width), seed)
    rates = [parse_scheme(s).rates(width, "adam") for s in schemes]
    eta_a = torch.tensor([r[0] for r in rates], dtype=model.dtype)
    pop = Population(model, eta_a, [r[1] for r in rates], "adam")
    B0 = [b for _, b in pop.init]
    x, y = model.train_batch(1)
    rows, first_grad, previous_A, loss0 = [], None, [a.clone() for a in pop.A], None
    for t in range(steps + 1):
        As, Bs = [a.clone() for a in pop.A], [b.clone() for b in pop.B]
        loss, gpre, inputs = pre_activation_grads(model, x, y, As, Bs)
        loss0 = loss if loss0 is None else loss0
        grad_A = [model.scale * (g @ B).mT @ z for g, B, z in zip(gpre, Bs, inputs)]   # (R, r, n)
        first_grad = grad_A if t == 1 else first_grad
        for l, (g, B, z) in enumerate(zip(gpre, Bs, inputs)):
            from_b0 = (g @ B0[l]).flatten(1).norm(dim=1)
            learned = (g @ (B - B0[l])).flatten(1).norm(dim=1)
            dA = As[l] - previous_A[l]
            z3 = z if z.dim() == 3 else z.expand(len(schemes), -1, -1)
            aligned_full = eta_a * z3.sum(-1).mean(-1)                                  # (R,)
            cos = (torch.nn.functional.cosine_similarity(grad_A[l].flatten(1), first_grad[l].flatten(1), dim=1)
                   if first_grad is not None else torch.full_like(eta_a, float("nan")))
            values = {"progress": 1 - loss / loss0, "learned_over_b0": learned / from_b0, "grad_cos": cos,
                      "adam_step": dA.abs().mean((1, 2)) / eta_a,
                      "dza_per_step": (z3 @ dA.mT).pow(2).mean((1, 2)).sqrt() / aligned_full}
            for i, scheme in enumerate(schemes):
                rows.append({"scheme": scheme, "width": width, "seed": seed, "step": t, "layer": model.layer_names[l],
                             "b0_scale": b0_scale, **{k: float(v[i]) for k, v in values.items()}})
        if t < steps:
            previous_A = As
            pop.run(1, measure=False)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="128,256,512,1024,2048,4096,8192")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--schemes", default="loraplus,lora-inv")
    parser.add_argument("--b0-scale", type=float, default=1.0)
    parser.add_argument("--out", default="init2_b0_path.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [row for w in map(int, args.widths.split(",")) for s in range(args.seeds)
            for row in trace(w, s, args.schemes.split(","), args.steps, args.b0_scale)]
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    for (scheme, layer), g in table[table.step >= 1].groupby(["scheme", "layer"]):
        for metric in METRICS:
            means = g.groupby(["step", "width"])[metric].mean().unstack("width")
            print(f"\n{scheme}, {layer}, {metric} (mean over {args.seeds} seeds, B0 x {args.b0_scale:g})\n")
            print(means.round(3).to_markdown())


if __name__ == "__main__":
    main()
