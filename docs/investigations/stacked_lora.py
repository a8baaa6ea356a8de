"""Stacked LoRA layers: the learning-rate laws of the toy mlp against its depth, and what moves.

``ladder``: the lr-laws edges (B edge, A edge, one-rate edge, ratio edge) and the corner of the
toy mlp (Adam or gradient descent, Init[1] / Init[2], the width study's slices, criteria and
batch of 8) at depths 1..4, optionally with the stacking control (every LoRA layer but the
first reads a detached copy of its input in its LoRA branch). Prints one row per law and
configuration: the fitted exponent with its 95% interval over seeds, the local slopes, and the
prediction of ``scaling.stacked`` (Adam; the control's included).

``trace``: at rates on the B edge slice (eta_A = 0.01 (n/64)^-1, eta_B given; or eta_A = eta_B with
``--one-rate``), per layer and step, the coordinate sizes that decide the mechanism:
  z_a          rms of Z_A = A h_{l-1} (the layer's own input, as it moves)
  dz_a_input   rms of A(t) (h_{l-1}(t) - h_{l-1}(0)): the part of Z_A's change due to the input
  input_gain   dz_a_input / rms(h_{l-1}(t) - h_{l-1}(0)): 1 for an input change in a random
               direction, n^1/2 for one along A's rows
  path_ratio   rms(A_l^T B_l^T dpre_l) / rms(W*_l^T dpre_l): the error reaching h_{l-1} through
               the trained B_l A_l against the frozen W*_l (predicted eta_B n^1/2)
  dh_in        rms(h_{l-1}(t) - h_{l-1}(0)): how far the layer's input has moved
  delta1..3    the layer's own delta terms (scaling.measure), and dh (rms of h_l(t) - h_l(0))

    python docs/investigations/stacked_lora.py ladder                     # quick: depth 1, 2
    python docs/investigations/stacked_lora.py ladder --depths 1,2,3,4 --inits 1,2 \\
        --widths 64,128,256,512,1024,2048 --seeds 8 --control --out runs/stacked
    python docs/investigations/stacked_lora.py trace --depth 3 --eta-b 0.1 --widths 128,512,2048
Results and their reading: docs/investigations/stacked_lora.md.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scaling.stacked import stacked_corner, stacked_edge
from scaling.laws import LawPrediction
from studies.lr_laws.analysis import analyse
from studies.lr_laws.config import ADAM_CRITERIA, GD_CRITERIA, LawsConfig, adam_slices, gd_slices
from studies.lr_laws.search import run_laws
from studies.run.context import RunContext, RunOptions
from toy_models.models import ModelConfig, build_model
from toy_models.population import Population

LAWS = ("B edge", "A edge", "one-rate edge", "ratio edge", "corner lambda_c")
# Gradient descent on the mean-field mlp: the output's gradient is Theta(1/n) per coordinate, so
# the edges sit at large rates (B edge ~ 30 .. 3e4 at n = 64 .. 2048, A edge ~ 1e3, one-rate ~ 10,
# ratio ~ 1, measured; Init[2] A edge ~ 1 at depth >= 2); the held rates are the gd study's, the ranges cover every edge with
# decades to spare (a censored edge is flagged, never invented).
GD_SLICES = tuple(replace(s, rate_range=r) for s, r in zip(
    gd_slices(True), ((1.0, 1e7), (1e-3, 1e6), (1e-2, 1e4), (1e-3, 1e3))))


def ladder_configs(depths, inits, optimizers, widths, seeds: int, control: bool,
                   control_inits=None, primary_only: bool = False) -> list[LawsConfig]:
    """The toy mlp at every depth x init x optimizer (the width study's settings), and under
    ``control`` the same with detached LoRA inputs at every depth >= 2 (for ``control_inits``,
    default every init)."""
    out = []
    for opt in optimizers:
        adam = opt == "adam"
        for init in inits:
            for depth in depths:
                c = LawsConfig(model="mlp", optimizer=opt, init=init, depth=depth, widths=tuple(widths),
                               seeds=tuple(range(seeds)), batch_size=8, per_decade=3,
                               slices=adam_slices(False) if adam else GD_SLICES,
                               criteria=(ADAM_CRITERIA if adam else GD_CRITERIA[:2])[:1 if primary_only else None])
                out.append(c)
                if control and depth >= 2 and init in (control_inits or inits):
                    out.append(replace(c, detach_lora_input=True))
    return out


def stacked_prediction(kind: str, config: LawsConfig, slice_spec=None) -> LawPrediction:
    """scaling.stacked's exponent (Adam), the control's included."""
    if config.optimizer == "sgd":
        return LawPrediction.given(None, "none", "no derivation for gradient descent on the mean-field mlp")
    depth, detached = config.depth, config.detach_lora_input
    if kind == "corner":
        held = {s.name: s.held_n for s in config.slices}
        value = stacked_corner(depth, config.init_name, held["a-edge"], held["b-edge"], detached=detached)
        return LawPrediction.given(value, "exact" if value is not None else "none",
                             "" if value is not None else "an edge is censored at large n (scaling.stacked)")
    if kind != "edge":
        return LawPrediction.given(None, "none", "only edges and the corner are derived")
    held = None if slice_spec.name == "one-rate" else slice_spec.held_n
    e = stacked_edge(slice_spec.name, depth, config.init_name, held, detached=detached)
    if e.exponent is None:
        return LawPrediction.given(None, "none", f"censored {e.censored} at large n (scaling.stacked)")
    return LawPrediction.given(e.exponent)


def ladder_table(laws: pd.DataFrame, configs: list[LawsConfig]) -> pd.DataFrame:
    """One row per (configuration, law): depth, init, optimizer, control, measured slope and
    interval, local slopes, prediction and verdict."""
    by_label = {c.label: c for c in configs}
    rows = []
    for _, r in laws[laws.law.isin(LAWS)].iterrows():
        c = by_label[r.config]
        rows.append({"optimizer": c.optimizer, "init": c.init_name, "depth": c.depth,
                     "control": "detached" if c.detach_lora_input else "", "law": r.law, "slope": r.slope,
                     "lo": r.lo, "hi": r.hi, "local_slopes": r.local_slopes, "predicted": r.predicted,
                     "verdict": r.verdict, "left_out": r.left_out})
    return pd.DataFrame(rows).sort_values(["optimizer", "init", "control", "law", "depth"], kind="stable")


def ladder(args) -> pd.DataFrame:
    configs = ladder_configs(args.depths, args.inits, args.optimizers, args.widths, args.seeds, args.control,
                             args.control_inits, args.primary_only)
    out = Path(args.out)
    ctx = RunContext(RunOptions(out=out, device="cpu", executor="inline", progress=False),
                     {"study": "stacked lora ladder", "configs": [c.to_dict() for c in configs]})
    start = time.perf_counter()
    runs = run_laws(configs, ctx, bar=None)
    wall = time.perf_counter() - start
    tables = analyse(runs, configs, predictor=stacked_prediction, kinds=("edge", "corner"))
    table = ladder_table(tables.laws, configs)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    tables.edges.to_csv(out / "edges.csv", index=False)
    tables.edge_summary.to_csv(out / "edge_summary.csv", index=False)
    tables.criteria.to_csv(out / "criteria.csv", index=False)
    table.to_csv(out / "ladder.csv", index=False)
    cpu = float(runs.groupby(["config", "width", "seed"]).cpu_s.first().sum())
    print(table.to_markdown(index=False, floatfmt="+.2f"))
    print(f"\n{len(configs)} configurations, {runs.groupby(['config', 'width', 'seed']).ngroups} shards: "
          f"{cpu:.0f} CPU s in the shards, {wall:.0f} s wall (resumed shards cost nothing); tables in {out}")
    return table


# -- the per-layer trace ---------------------------------------------------------------------------
def _backward_paths(model, x, y, As, Bs):
    """Per layer l >= 2 (0-based l >= 1): rms of W*_l^T dpre_l and of A_l^T B_l^T dpre_l, the two
    parts of the error reaching h_{l-1}, (R,) each; autograd through the mlp's forward."""
    with torch.enable_grad():
        h, pres = model.input_features(x), []
        for l, (w, A, B) in enumerate(zip(model.w_hidden, As, Bs)):
            pre = h @ w.T + model.scale * (h @ A.mT) @ B.mT
            if l == 0:  # the first layer's input is frozen: the graph starts here
                pre = pre.detach().requires_grad_(True)
            pres.append(pre)
            h = torch.relu(pre)
        loss = model.loss(h @ model.w_out.T, y)
        grads = torch.autograd.grad(loss.sum(), pres)
    out = []
    for l in range(1, len(pres)):
        g = grads[l].detach()                                          # dL/dpre_l, (R, N, n)
        frozen = g @ model.w_hidden[l]
        lora = model.scale * (g @ Bs[l]) @ As[l]
        out.append((frozen.pow(2).mean((-2, -1)).sqrt(), lora.pow(2).mean((-2, -1)).sqrt()))
    return out


def trace(width: int, seed: int, depth: int, init: str, eta_bs, steps: int, detach: bool,
          eta_b_exponent: float = 0.0, eta_a0: float = 1e-2, one_rate: bool = False) -> pd.DataFrame:
    """Rows (width, seed, eta_b, step, layer, metric, value) at eta_A = eta_a0 (n/64)^-1 and
    eta_B = eta_b (n/64)^eta_b_exponent for each eta_b (the column holds the value at n = 64);
    ``one_rate``: eta_A = eta_B instead."""
    cfg = ModelConfig(width=width, rank=4, init=init, batch_size=8, depth=depth, detach_lora_input=detach)
    model = build_model("mlp", cfg, seed)
    eta_b = [b * (width / 64) ** eta_b_exponent for b in eta_bs]
    eta_a = list(eta_b) if one_rate else [eta_a0 * 64 / width] * len(eta_bs)
    pop = Population(model, eta_a, eta_b, "adam")
    x, y = model.train_batch(1)
    with torch.no_grad():
        h_start = model.forward(x, pop.A, pop.B)[1]                   # each layer's input at t = 0
    traj_rows = []
    for t in range(steps + 1):
        if t:
            traj = pop.run(1)
            for metric in ("delta1", "delta2", "delta3", "dz_a"):
                for l in range(depth):
                    v = traj.metrics[metric][1, :, l].numpy()
                    traj_rows += [{"step": t, "layer": l + 1, "metric": metric, "run": i, "value": float(v[i])}
                                  for i in range(len(eta_bs))]
        As, Bs = [a.clone() for a in pop.A], [b.clone() for b in pop.B]
        with torch.no_grad():
            pred, inputs = model.forward(x, As, Bs)
        paths = _backward_paths(model, x, y, As, Bs)
        for l in range(depth):
            values_l = {}
            z = inputs[l] if inputs[l].dim() == 3 else inputs[l].expand(len(eta_bs), -1, -1)
            values_l["z_a"] = (z @ As[l].mT).pow(2).mean((-2, -1)).sqrt()
            if l > 0:
                dz = z - (h_start[l] if h_start[l].dim() == 3 else h_start[l].expand_as(z))
                dza = dz @ As[l].mT
                values_l["dh_in"] = dz.pow(2).mean((-2, -1)).sqrt()
                values_l["dz_a_input"] = dza.pow(2).mean((-2, -1)).sqrt()
                values_l["input_gain"] = values_l["dz_a_input"] / values_l["dh_in"].clamp_min(1e-30)
                frozen, lora = paths[l - 1]
                values_l["path_ratio"] = lora / frozen
            for metric, v in values_l.items():
                traj_rows += [{"step": t, "layer": l + 1, "metric": metric, "run": i, "value": float(v[i])}
                              for i in range(len(eta_bs))]
        traj_rows += [{"step": t, "layer": 0, "metric": "loss", "run": i,
                       "value": float(model.loss(pred, y)[i])} for i in range(len(eta_bs))]
    frame = pd.DataFrame(traj_rows)
    frame["eta_b"] = np.asarray(eta_bs)[frame.run.to_numpy()]
    return frame.assign(width=width, seed=seed, depth=depth, init=init, control="detached" if detach else "")


def trace_summary(table: pd.DataFrame, steps) -> pd.DataFrame:
    """Geometric seed mean of every (eta_b, layer, metric, step) at each width, with the log-log
    slope over the widths."""
    at = table[table.step.isin(steps) & (table.value > 0)]  # exact zeros (Init[1]'s first step) are no size
    mean = (at.assign(log=np.log(at.value))
            .groupby(["eta_b", "metric", "layer", "step", "width"]).log.mean().unstack("width"))
    x = np.log(np.array(mean.columns, float))
    def slope(row):
        ok = np.isfinite(row.to_numpy())
        return np.polyfit(x[ok], row.to_numpy()[ok], 1)[0] if ok.sum() >= 2 else np.nan
    slopes = mean.apply(slope, axis=1)
    return np.exp(mean).assign(slope=slopes)


def trace_main(args) -> pd.DataFrame:
    frames = [trace(w, s, args.depth, args.init, args.eta_b, args.steps, args.control, args.eta_b_exponent,
                    one_rate=args.one_rate)
              for w in args.widths for s in range(args.seeds)]
    table = pd.concat(frames, ignore_index=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    shown = sorted({1, 2, 4, args.steps} & set(range(1, args.steps + 1)))
    print(f"seed means (geometric), depth {args.depth}, Init[{args.init}]"
          + (", detached LoRA inputs" if args.control else "")
          + (", eta_A = eta_B" if args.one_rate else ", eta_A = 0.01 (n/64)^-1")
          + f", eta_B = eta_b (n/64)^{args.eta_b_exponent:+g}, steps {shown}:")
    print(trace_summary(table, shown).to_markdown(floatfmt=".3g"))
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)

    def ints(text):
        return [int(v) for v in text.split(",") if v.strip()]
    la = sub.add_parser("ladder", help="the laws at every depth")
    la.add_argument("--depths", type=ints, default=[1, 2])
    la.add_argument("--inits", type=lambda t: t.split(","), default=["1"])
    la.add_argument("--optimizers", type=lambda t: t.split(","), default=["adam"])
    la.add_argument("--widths", type=ints, default=[64, 128, 256])
    la.add_argument("--seeds", type=int, default=3)
    la.add_argument("--control", action="store_true", help="also the detached-input control at depth >= 2")
    la.add_argument("--control-inits", type=lambda t: t.split(","), default=None,
                    help="the inits that get the control (default: every init)")
    la.add_argument("--primary-only", action="store_true", help="only the primary edge criterion (f = 1, T = 20)")
    la.add_argument("--out", default="runs/stacked-quick")
    tr = sub.add_parser("trace", help="per-layer sizes at rates on the B edge slice")
    tr.add_argument("--depth", type=int, default=2)
    tr.add_argument("--init", default="1")
    tr.add_argument("--eta-b", type=lambda t: [float(v) for v in t.split(",")], default=[0.1])
    tr.add_argument("--widths", type=ints, default=[128, 512])
    tr.add_argument("--seeds", type=int, default=2)
    tr.add_argument("--steps", type=int, default=8)
    tr.add_argument("--eta-b-exponent", type=float, default=0.0, help="eta_B = eta_b (n/64)^this")
    tr.add_argument("--one-rate", action="store_true", help="eta_A = eta_B (default: eta_A = 0.01 (n/64)^-1)")
    tr.add_argument("--control", action="store_true", help="detached LoRA inputs")
    tr.add_argument("--out", default=None, help="CSV of every row")
    args = p.parse_args(argv)
    return ladder(args) if args.what == "ladder" else trace_main(args)


if __name__ == "__main__":
    main()
