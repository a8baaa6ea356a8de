"""The learning-rate laws on any model: ``lr-laws --factory REF`` (REF a family, bert or gpt2,
or a user's ``make(width, rank, seed)``, ``scaling.factory``).

The same edges, corner and verdicts as on the toys, measured on the factory's model: one shard
per (factory, width, seed) builds the model once (a family pretrains its base there, or loads it
from the cache of bases, ``studies.families.cache``) and searches every slice under each init in
rounds, every round's candidate rates one population of ``toy_models.module_population``
(torch.func where the model allows). Init[2] is made from the factory's Init[1] model: A = 0,
B ~ N(0, 1) (``studies.families.pretrain.apply_init``). The predictions are those of the mlp's
LoRA layers (``LawsConfig.predict_as``): Adam LoRA layers with Theta(1) inputs, output stability
of every layer; the slices' held rates are given at n0 = 64.

A family runs here with its lr-laws settings (``LAWS_FAMILIES``: ``studies.families.bert:laws``,
``studies.families.gpt2:laws``), and each factory with its defaults (``defaults_for``):

- bert: hidden 32 .. 512 (4 octaves; heads of 32), 8 seeds, a fine-tune batch of 64 sequences
  of 4 tokens (with 8 sequences a single large Adam step classifies all of them right by luck
  and the loss at T returns below its start far above the edge, so edges scattered by 10x or
  more between seeds). Criterion best0.9@T10 (the loss falls by step 10 by at least 0.9 of the
  largest fall any rate of its slice makes); sensitivity best0.8@T10, best0.95@T10.
- gpt2: hidden 64 .. 256, 4 seeds, the family's batch (32 x 16 tokens); criterion best0.9@T20
  (T = 20: after 10 steps the best rate is barely below the blind guess's plateau that every
  rate above the edge reaches); sensitivity best0.8@T20, best0.95@T20. Why "best": the base is
  confidently wrong on the fine-tune's chain (loss 7.4 .. 9.0 at the start, a uniform guess
  5.5), so every rate up to 10 (1e3 for eta_B) ends below its start and "start" finds no edge;
  nor does divergence (no run of 3-per-decade grids over 1e-5 .. 1e3 at hidden 64 .. 256
  overflowed: Adam's large rates settle on the plateau). Against "loss at T at most a factor
  of the best rate's" the share of the largest fall does not depend on how far above zero the
  best loss stays (3.8 .. 4.5 here); on those grids factors 1.2 and 1.3 re-entered the region
  (trained again above a failing rate) 10 and 5 times, best0.9@T20 once.
- any other factory: hidden 64 .. 256, 4 seeds, f1@T10, the output-stability edge the theory
  predicts (sensitivity best0.9@T10, f1@T20): "best" is for a fine-tune that starts above a
  blind guess, and on the toys under Init[2] it moves the edges' slopes (A edge -1.30 against
  -1.09 on linear, Init[1] the same within the intervals).

Every factory: the median over seeds of the log edges (with 8 seeds a bootstrap resample
reaches one outlying seed only with 4 copies of it, about 1% of resamples; the trimmed mean
with 2, about 26%), a grid
of 2 rates per decade then one round of 3 rates inside each bracket (a final bracket of
10^(1/8), 33%: seeds scatter by more), rates trained 32 at a time by torch.func.
The BERT fine-tune's arithmetic (one thread, CPU time): 53 GFLOP/s at hidden 512 and 36 at 128
(forward and backward counted by torch's FlopCounterMode, 32 rates x 10 steps), against 65 .. 84
GFLOP/s for one fp32 torch.matmul of the same shapes (32 rates x 256 tokens rows by the hidden
and MLP matrices): within 2x of this machine's dense matmul at every width, 1.3x at 512.
``--quick``: the narrower half of the widths, 2 seeds, the primary criterion only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scaling.edges import Criterion
from scaling.factory import Factory, FactoryError, inspect_task, load_factory
from scaling.lora_layers import detach_lora_inputs
from toy_models.module_population import train_population
from studies.factory_check import FactoryCheckSpec, check_factory
from studies.families import FAMILIES
from studies.families.pretrain import apply_init
from studies.lr_laws.config import LawsConfig, SliceSpec, check_range, parse_criteria
from studies.lr_laws.search import search_slices
from studies.run.shards import Shard
from studies.run.spec import SpecError

# The families' lr-laws settings (``studies.families.bert.laws``, ``studies.families.gpt2.laws``).
LAWS_FAMILIES = {"bert": "studies.families.bert:laws", "gpt2": "studies.families.gpt2:laws"}
CHUNK = 32  # rates per torch.func call: 16 .. 64 cost the same at hidden 512, 32 is 10% cheaper than 16 at 128


@dataclass(frozen=True)
class FactoryDefaults:
    """A factory's default widths, seeds, criteria (the first primary) and search."""

    widths: tuple[int, ...]
    seeds: int
    criteria: tuple[Criterion, ...]
    center: str = "median"
    per_decade: int = 2
    refine_points: int = 3
    refine_rounds: int = 1

    def quick(self) -> "FactoryDefaults":
        half = self.widths[: max(2, (len(self.widths) + 1) // 2)]
        return FactoryDefaults(half, 2, self.criteria[:1], self.center, self.per_decade, self.refine_points,
                               self.refine_rounds)


DEFAULTS = {
    "bert": FactoryDefaults((32, 64, 128, 256, 512), 8,
                            (Criterion(10, 0.9, "best"), Criterion(10, 0.8, "best"), Criterion(10, 0.95, "best"))),
    "gpt2": FactoryDefaults((64, 128, 256), 4,
                            (Criterion(20, 0.9, "best"), Criterion(20, 0.8, "best"), Criterion(20, 0.95, "best"))),
}
# Any other factory: the theory's own edge, output stability (loss(T) <= loss(0)), which the toys
# confirm; "best" judges runs against each other, and on the toys under Init[2] its edges' slopes
# differ from the start criterion's (A edge -1.30 against -1.09 on linear), so it is a sensitivity row.
GENERIC = FactoryDefaults((64, 128, 256), 4,
                          (Criterion(10, 1.0), Criterion(10, 0.9, "best"), Criterion(20, 1.0)))


def defaults_for(ref: str, quick: bool = False) -> FactoryDefaults:
    d = DEFAULTS.get(ref.strip() if isinstance(ref, str) else ref, GENERIC)
    return d.quick() if quick else d


def laws_factory(ref) -> Factory:
    """The factory lr-laws runs for ``ref``: a family with its lr-laws settings, else ``ref`` itself
    (FactoryError when it does not load)."""
    return load_factory(ref, {**FAMILIES, **LAWS_FAMILIES})


def factory_slices(rate_range: tuple[float, float] | None = None) -> tuple[SliceSpec, ...]:
    """The slices on a real model. Held values at n0 = 64: eta_A = 1e-4 (n/64)^-1 on the B edge
    (well inside the region at every width), eta_B = 0.1 on the A edge (about 1/8 of the BERT
    family's B edge at hidden 64: large enough that the product eta_A eta_B n, not A alone,
    ends the region), LoRA+'s ratio 16 (n/64) on the ratio slice. Searched: the B edge over
    1e-3 .. 1e3 (under Init[2] it lies near 1e2), the A edge over 1e-4 .. 1e2 (Init[2]'s passes
    10 at some seeds), the one-rate edge over 1e-4 .. 10, the ratio edge over 1e-6 .. 0.1; with
    ``rate_range`` every slice over it (the ratio slice 100 times lower)."""
    if rate_range is not None:
        lo, hi = rate_range
        return (SliceSpec("b-edge", held=1e-4, held_n=-1.0, rate_range=(lo, hi)),
                SliceSpec("a-edge", held=0.1, rate_range=(lo, hi)),
                SliceSpec("one-rate", rate_range=(lo, hi)),
                SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(lo / 100, hi / 100)))
    return (SliceSpec("b-edge", held=1e-4, held_n=-1.0, rate_range=(1e-3, 1e3)),
            SliceSpec("a-edge", held=0.1, rate_range=(1e-4, 1e2)),
            SliceSpec("one-rate", rate_range=(1e-4, 10.0)),
            SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(1e-6, 0.1)))


def factory_configs(refs: list[str], quick: bool = False, inits=None, widths=None, seeds: int | None = None,
                    fraction: float | None = None, steps: int | None = None,
                    rate_range: tuple[float, float] | None = None, slices=None, rank: int = 4,
                    criteria: list[str] | None = None, detach: bool = False) -> list[LawsConfig]:
    """One configuration per (factory, init), from each factory's defaults (``defaults_for``)
    and the options; SpecError (one line) for a bad option. ``criteria``: criterion names
    (``Criterion.parse``), the first primary; ``fraction`` / ``steps`` replace the primary's
    share f (its kind kept) and T; ``detach``: the stacking control. The factories themselves are checked by ``check_factories``
    before anything runs."""
    inits = inits or ["1", "2"]
    for init in inits:
        if init not in ("1", "2"):
            raise SpecError(f"--inits: a factory's model starts from init 1 or 2, got {init!r}")
    if rate_range is not None:
        check_range("--range", *rate_range)
    if fraction is not None and not 0 < fraction <= 1:
        raise SpecError(f"--fraction must be in (0, 1], got {fraction}")
    if steps is not None and steps <= 0:
        raise SpecError(f"--steps must be a positive integer, got {steps}")
    parsed = parse_criteria(criteria) if criteria else None
    if parsed and any(c.kind == "diverged" for c in parsed):
        raise SpecError("--criteria: a factory's model trains under Adam, whose edge needs f<F> or best<Q>")
    chosen = factory_slices(rate_range)
    if slices:
        chosen = tuple(s for s in chosen if s.name in slices)
        if not chosen:
            raise SpecError(f"--slices {','.join(slices)}: none of b-edge, a-edge, one-rate, ratio")
    configs = []
    for ref in refs:
        name = laws_factory(ref).name  # FactoryError (a SpecError's sibling) if it does not load
        d = defaults_for(ref, quick)
        crit = parsed or d.criteria
        if fraction is not None or steps is not None:
            first = crit[0]
            crit = (Criterion(steps or first.steps, fraction if fraction is not None else first.fraction, first.kind),)
        for init in inits:
            configs.append(LawsConfig(model=name, optimizer="adam", init=init, factory=ref,
                                      widths=tuple(widths or d.widths), ranks=(rank,),
                                      seeds=tuple(range(seeds or d.seeds)), slices=chosen, criteria=crit,
                                      per_decade=d.per_decade, refine_points=d.refine_points,
                                      refine_rounds=d.refine_rounds, center=d.center,
                                      detach_lora_input=detach))
    return configs


def population_losses(frame: pd.DataFrame, runs: int, steps: int) -> dict[str, np.ndarray]:
    """``module_population``'s rows of one member -> {'train': (T+1, K) losses, NaN from the
    divergence on; 'diverged_step': (K,), -1 = never} (``studies.lr_laws.search_slices``)."""
    loss = frame[(frame.layer == "all") & (frame.metric == "loss")]
    train = np.full((steps + 1, runs), np.nan)
    train[loss.step.to_numpy(int), loss.run.to_numpy(int)] = loss.value.to_numpy(float)
    diverged = np.full(runs, -1)
    div = frame[frame.metric == "diverged"]
    diverged[div.run.to_numpy(int)] = div.step.to_numpy(int)
    return {"train": train, "diverged_step": diverged}


def prepare_task(task, name: str, detach: bool):
    """Map a factory's freshly built Task (``inspect_task``: its TaskShape, returned), check it
    starts from Init[1] (A random, B = 0), and under the stacking control (``detach``) make every
    LoRA layer with a LoRA layer upstream read a detached copy of its input in its LoRA branch.
    FactoryError when the model cannot be used so."""
    shape = inspect_task(task, f"factory {name}")
    if shape.init != "1":
        raise FactoryError(f"factory {name}: lr-laws starts from the factory's Init[1] model "
                           f"(A random, B = 0), this one is at init {shape.init}")
    if detach:
        stacked = [layer for layer, up in shape.upstream.items() if up]
        if not stacked:
            raise FactoryError(f"factory {name}: the stacking control needs a LoRA layer fed by another one")
        detach_lora_inputs(task.model, stacked)
    return shape


def start_from(task, init: str, seed: int) -> None:
    """Set the LoRA factors of the factory's Init[1] model to ``init``; Init[2]'s B draw depends on
    the seed only, so every rate (and the transfer test) starts from the same model."""
    torch.manual_seed(30_000 + seed)
    apply_init(task.model, init)


def train_losses(task, eta_a, eta_b, steps: int, device, chunk_size: int | None) -> dict[str, np.ndarray]:
    """Train one population of the task's model under the pairs (eta_a, eta_b: (K,)) for ``steps``
    Adam steps: ``population_losses``' {'train': (T+1, K), 'diverged_step': (K,)}."""
    result = train_population([task], eta_a, eta_b, steps, measure=False, device=device, chunk_size=chunk_size)
    return population_losses(result.frame, len(eta_a), steps)


def factory_laws_shard(configs: tuple[LawsConfig, ...], width: int, rank: int, seed: int,
                       device: str = "cpu", chunk_size: int | None = CHUNK) -> pd.DataFrame:
    """Every configuration of one factory at one (width, seed): the model is built once, each
    init starts from the same base and LoRA draw; under the stacking control (all configurations
    alike) every LoRA layer with a LoRA layer upstream reads a detached copy of its input in its
    LoRA branch. Returns search_slices' rows with chain and readout, cpu_s (the shard's CPU
    seconds), build_cpu_s (building the model: pretraining, or loading the cached base) and
    round_cpu_s (the CPU seconds of the population its round ran in)."""
    start = time.process_time()
    dev = torch.device(device)
    factory = laws_factory(configs[0].factory)
    task = factory(width, rank, seed, dev)
    build = time.process_time() - start
    if len({c.detach_lora_input for c in configs}) != 1:
        raise ValueError("one factory shard runs either the model or its stacking control, not both")
    shape = prepare_task(task, factory.name, configs[0].detach_lora_input)
    trainable = [p for p in task.model.parameters() if p.requires_grad]
    initial = [p.detach().clone() for p in trainable]
    frames = []
    for config in configs:
        with torch.no_grad():
            for p, p0 in zip(trainable, initial):
                p.copy_(p0)
        start_from(task, config.init, seed)

        rounds: list[float] = []

        def train(eta_a, eta_b, config=config, rounds=rounds):
            t0 = time.process_time()
            losses = train_losses(task, eta_a, eta_b, config.steps, dev, chunk_size)
            rounds.append(time.process_time() - t0)
            return losses

        found = search_slices(config, width, rank, seed, float("nan"), train)
        frames.append(found.assign(round_cpu_s=np.asarray(rounds)[found["round"].to_numpy(int)]))
    # what the predictions need to know about the model: its longest chain of LoRA layers in
    # series and its declared readout ("" when not declared)
    return pd.concat(frames, ignore_index=True).assign(chain=shape.chain, readout=task.readout or "",
                                                       cpu_s=time.process_time() - start, build_cpu_s=build)


def factory_laws_shards(configs: list[LawsConfig], device) -> list[Shard]:
    """One shard per (factory, width, rank, seed) holding every init of that factory; widest
    first (the longest shards start first)."""
    by_factory: dict[tuple[str, bool], list[LawsConfig]] = {}
    for c in configs:
        by_factory.setdefault((c.factory, c.detach_lora_input), []).append(c)
    shards = []
    for (ref, detached), group in by_factory.items():
        slug = "".join(ch if ch.isalnum() else "_" for ch in group[0].model)
        inits = "".join(c.init for c in group) + ("_detached" if detached else "")
        points = sorted({p for c in group for p in c.points()}, reverse=True)
        for w, r in points:
            for s in sorted({s for c in group for s in c.seeds}):
                members = tuple(c for c in group if s in c.seeds and (w, r) in c.points())
                shards.append(Shard(f"f_{slug}_i{inits}_n{w}_r{r}_s{s}", factory_laws_shard,
                                    (members, w, r, s, str(device))))
    return shards


def check_factories(configs: list[LawsConfig], device) -> None:
    """Every factory builds at every width (FactoryError otherwise), before anything is written."""
    for ref in dict.fromkeys(c.factory for c in configs):
        c = next(c for c in configs if c.factory == ref)
        check_factory(FactoryCheckSpec(factory=laws_factory(ref), widths=c.widths, seeds=c.seeds[:1], rank=c.ranks[0]),
                      device)


def run_factory_laws(configs: list[LawsConfig], ctx) -> pd.DataFrame:
    """Every shard the run's store does not hold yet (``ctx``: a studies.run.context.RunContext);
    the runs of every factory configuration."""
    shards = factory_laws_shards(configs, ctx.device)
    ctx.run(shards, bar="lr-laws --factory")
    runs = ctx.load(shards)
    runs["init"] = runs["init"].astype(str)
    return runs
