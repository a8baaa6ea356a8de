"""The learning-rate laws on any model: ``lr-laws --factory REF`` (REF a family, bert or gpt2,
or a user's ``make(width, rank, seed)``, ``scaling.factory``).

The same edges, corner and verdicts as on the toys, measured on the factory's model: one shard
per (factory, width, seed) builds the model once (a family pretrains its base here) and
searches every slice under each init in rounds, every round's candidate rates one population of
``toy_models.module_population`` (torch.func where the model allows). Init[2] is made from the factory's
Init[1] model: A = 0, B ~ N(0, 1) (``studies.families.pretrain.apply_init``).

The edge criterion is Adam's, as on the toys: a run trains when its loss after T steps on the
factory's batches is at most f times its start (default T = 10, f = 1). The predictions are
those of the mlp's LoRA layers (``LawsConfig.predict_as``): Adam LoRA layers with Theta(1)
inputs, output stability of every layer; the slices' held rates are given at n0 = 64.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from scaling.edges import Criterion
from scaling.factory import FactoryError, inspect_task
from scaling.lora_layers import detach_lora_inputs
from toy_models.module_population import train_population
from studies.factory_check import FactoryCheckSpec, check_factory, factory_for
from studies.families.pretrain import apply_init
from studies.lr_laws.config import LawsConfig, SliceSpec, check_range
from studies.lr_laws.search import search_slices
from studies.run.shards import Shard
from studies.run.spec import SpecError

# Hidden 512 costs more than 10 CPU minutes per (width, seed) shard here (2 inits x ~80 runs
# x 3 rounds of a 2-layer transformer); on a GPU give --widths up to 1024 and beyond.
WIDTHS = (64, 128, 256)
QUICK_WIDTHS = (64, 128)
SEEDS, QUICK_SEEDS = 3, 2
CRITERIA = (Criterion(10, 1.0), Criterion(10, 0.5), Criterion(20, 1.0))
QUICK_CRITERIA = (Criterion(10, 1.0),)


def factory_slices(rate_range: tuple[float, float] | None = None) -> tuple[SliceSpec, ...]:
    """The slices on a real model. Held values at n0 = 64: eta_A = 1e-4 (n/64)^-1 on the B edge
    (well inside the region at every width), eta_B = 0.1 on the A edge (about 1/8 of the BERT
    family's B edge at hidden 64: large enough that the product eta_A eta_B n, not A alone,
    ends the region), LoRA+'s ratio 16 (n/64) on the ratio slice; rates searched over
    1e-6 .. 10, the B edge to 1e3 (under Init[2] it lies above 10)."""
    lo, hi = rate_range or (1e-6, 10.0)
    return (SliceSpec("b-edge", held=1e-4, held_n=-1.0, rate_range=(max(lo, 1e-5), hi if rate_range else 1e3)),
            SliceSpec("a-edge", held=0.1, rate_range=(lo, hi)),
            SliceSpec("one-rate", rate_range=(lo, hi)),
            SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(lo / 100, hi / 100)))


def factory_configs(refs: list[str], quick: bool = False, inits=None, widths=None, seeds: int | None = None,
                    fraction: float | None = None, steps: int | None = None,
                    rate_range: tuple[float, float] | None = None, slices=None, rank: int = 4,
                    detach: bool = False) -> list[LawsConfig]:
    """One configuration per (factory, init); SpecError (one line) for a bad option. The
    factories themselves are checked by ``check_factories`` before anything runs."""
    inits = inits or ["1", "2"]
    for init in inits:
        if init not in ("1", "2"):
            raise SpecError(f"--inits: a factory's model starts from init 1 or 2, got {init!r}")
    if rate_range is not None:
        check_range("--range", *rate_range)
    criteria = QUICK_CRITERIA if quick else CRITERIA
    if fraction is not None or steps is not None:
        if fraction is not None and not 0 < fraction <= 1:
            raise SpecError(f"--fraction must be in (0, 1], got {fraction}")
        criteria = (Criterion(steps or criteria[0].steps, fraction if fraction is not None else 1.0),)
    chosen = factory_slices(rate_range)
    if slices:
        chosen = tuple(s for s in chosen if s.name in slices)
        if not chosen:
            raise SpecError(f"--slices {','.join(slices)}: none of b-edge, a-edge, one-rate, ratio")
    configs = []
    for ref in refs:
        name = factory_for(ref).name  # FactoryError (a SpecError's sibling) if it does not load
        for init in inits:
            configs.append(LawsConfig(model=name, optimizer="adam", init=init, factory=ref,
                                      widths=tuple(widths or (QUICK_WIDTHS if quick else WIDTHS)), ranks=(rank,),
                                      seeds=tuple(range(seeds or (QUICK_SEEDS if quick else SEEDS))),
                                      slices=chosen, criteria=criteria, per_decade=2 if quick else 3,
                                      refine_points=3, refine_rounds=2, detach_lora_input=detach))
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


def factory_laws_shard(configs: tuple[LawsConfig, ...], width: int, rank: int, seed: int,
                       device: str = "cpu", chunk_size: int | None = 16) -> pd.DataFrame:
    """Every configuration of one factory at one (width, seed): the model is built once, each
    init starts from the same base and LoRA draw; under the stacking control (all configurations
    alike) every LoRA layer with a LoRA layer upstream reads a detached copy of its input in its
    LoRA branch. Returns search_slices' rows with cpu_s."""
    start = time.process_time()
    dev = torch.device(device)
    factory = factory_for(configs[0].factory)
    task = factory(width, rank, seed, dev)
    shape = inspect_task(task, f"factory {factory.name}")
    if shape.init != "1":
        raise FactoryError(f"factory {factory.name}: lr-laws starts from the factory's Init[1] model "
                           f"(A random, B = 0), this one is at init {shape.init}")
    if len({c.detach_lora_input for c in configs}) != 1:
        raise ValueError("one factory shard runs either the model or its stacking control, not both")
    if configs[0].detach_lora_input:
        stacked = [name for name, up in shape.upstream.items() if up]
        if not stacked:
            raise FactoryError(f"factory {factory.name}: the stacking control needs a LoRA layer fed by another one")
        detach_lora_inputs(task.model, stacked)
    trainable = [p for p in task.model.parameters() if p.requires_grad]
    initial = [p.detach().clone() for p in trainable]
    frames = []
    for config in configs:
        with torch.no_grad():
            for p, p0 in zip(trainable, initial):
                p.copy_(p0)
        torch.manual_seed(30_000 + seed)  # Init[2]'s B draw: the same for every rate
        apply_init(task.model, config.init)

        def train(eta_a, eta_b, config=config):
            result = train_population([task], eta_a, eta_b, config.steps, measure=False, device=dev,
                                      chunk_size=chunk_size)
            return population_losses(result.frame, len(eta_a), config.steps)

        frames.append(search_slices(config, width, rank, seed, float("nan"), train))
    # what the predictions need to know about the model: its longest chain of LoRA layers in
    # series and its declared readout ("" when not declared)
    return pd.concat(frames, ignore_index=True).assign(chain=shape.chain, readout=task.readout or "",
                                                       cpu_s=time.process_time() - start)


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
        check_factory(FactoryCheckSpec(factory=ref, widths=c.widths, seeds=c.seeds[:1], rank=c.ranks[0]), device)


def run_factory_laws(configs: list[LawsConfig], ctx) -> pd.DataFrame:
    """Every shard the run's store does not hold yet (``ctx``: a studies.run.context.RunContext);
    the runs of every factory configuration."""
    shards = factory_laws_shards(configs, ctx.device)
    ctx.run(shards, bar="lr-laws --factory")
    runs = ctx.load(shards)
    runs["init"] = runs["init"].astype(str)
    return runs
