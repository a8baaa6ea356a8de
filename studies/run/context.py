"""Where and how a study runs: the options every study shares and the context that holds them.

``RunOptions`` is what the command line's shared options (``--out``, ``--device``,
``--executor``, ``--workers``, ``--scheduler``, ``--force``) become, and what a Python caller
builds directly. ``RunContext`` opens a study's run: it resolves the device and the executor,
creates ``--out``, opens the shard store there (refusing another spec's shards unless
``force``), counts the shards already done, runs shards on the executor with a progress bar,
times the run (wall and CPU seconds) and writes ``meta.json``. Every study starts through it, so
none of this exists twice.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch

from studies.run.shards import Shard, ShardStore, close_pools, resolve_executor, run_shards
from studies.run.spec import SpecError
from studies.run.store import metadata, prepare_out_dir, write_json

DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))  # each local worker holds one shard's memory


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; otherwise the named device (ValueError for an unknown
    one or for CUDA asked for on a machine without it)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but CUDA is not available")
    return dev


def cpu_seconds() -> float:
    """CPU time of this process (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


@dataclass(frozen=True)
class RunOptions:
    """Where a study writes and how its shards run.

    out: the run's directory; device: auto | cpu | cuda[:N]; executor: auto (local processes on
    a CPU, this process on a GPU) | inline | local | dask; workers: processes of the local
    executor or a local Dask cluster; scheduler: a Dask scheduler's address; force: recompute
    even if ``out`` holds another spec's shards; progress: show progress bars and phases."""

    out: str | os.PathLike
    device: str = "auto"
    executor: str = "auto"
    workers: int = DEFAULT_WORKERS
    scheduler: str | None = None
    force: bool = False
    progress: bool = True

    def check(self) -> None:
        """SpecError (one line) for options that cannot work, before anything is written."""
        if self.workers < 1:
            raise SpecError(f"--workers must be at least 1, got {self.workers}")


class RunContext:
    """One study's run in ``options.out``: the device, the executor, the shard store.

    ``spec`` identifies the study's shards (its hash guards the store); ``device`` is added to
    it. Opening the context creates the directory; nothing is written before that."""

    def __init__(self, options: RunOptions, spec: dict, device: torch.device | None = None):
        options.check()
        self.options = options
        self.device = device if device is not None else resolve_device(options.device)
        self.executor = resolve_executor(options.executor, self.device)
        if options.scheduler and self.executor != "dask":
            raise SpecError(f"--scheduler is the Dask scheduler's address: give it with --executor dask "
                            f"(this run's executor: {self.executor})")
        self.spec = {**spec, "device": str(self.device)}
        self.out = prepare_out_dir(options.out)
        self.store = ShardStore(self.out, self.spec, force=options.force)
        self.resumed = len(self.store.done)
        self._start, self._cpu = time.perf_counter(), cpu_seconds()
        self._pools: dict = {}  # the local executor's worker pool, kept across this run's phases
        self._shards_cpu = 0.0  # CPU seconds the shards took in worker processes

    # -- shards ---------------------------------------------------------------------------------
    def run(self, shards: list[Shard], bar: str | None = None, store: ShardStore | None = None,
            progress=None) -> None:
        """Run every shard ``store`` (default: the run's own) does not hold yet; ``bar`` labels
        the progress bar (shown when the options ask for progress)."""
        self._shards_cpu += run_shards(shards, store or self.store, self.executor, self.options.workers,
                                       self.options.scheduler, progress=progress,
                                       bar=bar if self.options.progress else None, pools=self._pools)

    def close(self) -> None:
        """End the worker processes the run's phases shared (once its shards are all done)."""
        close_pools(self._pools)

    def load(self, shards: list[Shard], store: ShardStore | None = None) -> pd.DataFrame:
        """The finished shards' tables, concatenated in the order given."""
        return (store or self.store).load([sh.key for sh in shards])

    def sub_store(self, name: str, spec: dict) -> ShardStore:
        """A second shard store in ``out/name`` for a part of the study with its own spec
        (validate's learning-rate law)."""
        return ShardStore(self.out / name, {**spec, "device": str(self.device)}, force=self.options.force)

    # -- time and metadata --------------------------------------------------------------------
    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self._start

    @property
    def cpu_s(self) -> float:
        """CPU seconds so far: this process's, and the shards' in worker processes (their workers'
        start-up, importing torch and the package, is not counted: a fork server does it once)."""
        return cpu_seconds() - self._cpu + self._shards_cpu

    @contextmanager
    def phase(self, what: str):
        """Say on stderr what a phase of the run is doing, then how long it took."""
        show = self.options.progress
        if show:
            print(f"{what} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        if show:
            print(f" {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    def meta(self, kind: str, spec: dict, **extra) -> dict:
        """meta.json's content: the study's kind and spec, package versions, git revision,
        device, executor, workers, wall and CPU seconds so far, shards resumed, and ``extra``."""
        return metadata(spec, str(self.device), self.wall_s, study=kind, executor=self.executor,
                        workers=self.options.workers, resumed_shards=self.resumed,
                        cpu_time_s=round(self.cpu_s, 1), **extra)

    def write_meta(self, meta: dict) -> None:
        write_json(meta, self.out / "meta.json")
