"""Width studies from Python, mup-style: a factory in, a tidy table out.

    from studies.api import coord_check, judge
    table = coord_check(make, widths=(64, 128, 256, 512), schemes=("loraplus", "lora-const"), seeds=4)
    verdicts = judge(table)

``make(width, rank, seed)`` is a model factory (``scaling.factory``): a callable, a reference
"package.module:make" / "path/to/file.py:make", or a family name ("bert", "gpt2"). The table
has one row per (width, scheme, seed, step, layer, metric) with the rates, the model's init,
the number of LoRA layers upstream of the layer and the training path; ``judge`` fits it
against width and gives the verdicts of ``validate``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from studies.factory_check import FactoryCheckSpec, check_factory, judge, run_factory_check
from studies.run.context import RunContext, RunOptions, resolve_device

__all__ = ["coord_check", "judge"]


def coord_check(factory, widths=(64, 128, 256, 512), schemes=("loraplus", "lora-const"), seeds=4, steps: int = 6,
                rank: int = 4, *, lr_a: float = 1e-3, lr_b: float = 1e-3, base_width: int | None = None,
                seeds_per_shard: int = 2, path: str = "auto", device: str = "cpu", out=None,
                executor: str = "inline", workers: int = 2, progress: bool = False) -> pd.DataFrame:
    """Train every scheme at every width and seed on the factory's model; the tidy table.

    seeds: a count (0..S-1) or the seeds; out: a directory that keeps the shards (resumed by
    a later call with the same settings; None: a temporary one); executor: "inline" (this
    process; any callable), "local" or "dask" (the factory must be importable by reference
    or picklable). Bad settings raise ValueError with a one-line message."""
    spec = FactoryCheckSpec(factory=factory, widths=tuple(widths), seeds=tuple(range(seeds)) if isinstance(seeds, int)
                            else tuple(seeds), schemes=tuple(schemes), steps=steps, rank=rank, lr_a=lr_a, lr_b=lr_b,
                            base_width=base_width, seeds_per_shard=seeds_per_shard, path=path)
    dev = resolve_device(device)
    check_factory(spec, dev)
    with tempfile.TemporaryDirectory(prefix="loraplus-coord-check-") as tmp:
        options = RunOptions(out=Path(out) if out is not None else Path(tmp), device=str(dev), executor=executor,
                             workers=workers, progress=progress)
        ctx = RunContext(options, {"study": "coord-check", **spec.to_dict()}, dev)
        try:
            return run_factory_check(spec, ctx)
        finally:
            ctx.close()
