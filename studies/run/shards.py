"""Shards, a resumable shard store, and the executors that run shards.

A study expands into shards (one width x one seed: all its runs train as one population).
Each finished shard's table is written atomically to ``OUT/shards/<key>.csv`` and then
recorded in ``OUT/manifest.json`` (also written atomically) together with the hash of the
spec. Running the same spec again with the same ``--out`` skips the recorded shards; killing
the process at any moment loses at most the shards in flight and never damages a finished one
(a shard file is only trusted once the manifest lists it). A different spec pointed at the
same ``--out`` is refused unless ``force`` (which forgets the old shards).

Executors: ``inline`` (this process), ``local`` (a process pool of ``workers``) and ``dask``
(a ``distributed`` cluster at ``scheduler``, or a LocalCluster when none is given; Slurm users
get one through dask-jobqueue's ``SLURMCluster`` and pass its scheduler address); ``auto``
is ``local`` on a CPU and ``inline`` on a GPU. Every shard runs with the same torch thread
count (one: a BLAS reduction split over threads may change the last bits), so results are
bit-identical whichever executor ran them; on a CPU the cores are used by running shards side
by side.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from studies.run.malloc import keep_freed_memory
from studies.run.spec import SpecError
from studies.run.store import read_table, write_atomic, write_csv, write_text

EXECUTORS = ("auto", "inline", "local", "dask")
SHARD_THREADS = 1  # torch threads per shard: fixed, so that every executor computes the same bits


EXECUTOR_ENV = "LORAPLUS_EXECUTOR"  # what ``auto`` means when set: inline | local | dask


def resolve_executor(name: str, device) -> str:
    """``auto``: $LORAPLUS_EXECUTOR when set, else a local process pool on a CPU and this
    process on a GPU (one device, one process)."""
    if name != "auto":
        return name
    chosen = os.environ.get(EXECUTOR_ENV, "").strip()
    if chosen:
        if chosen not in EXECUTORS[1:]:
            raise SpecError(f"{EXECUTOR_ENV}={chosen!r} is no executor; choose from {', '.join(EXECUTORS[1:])}")
        return chosen
    return "inline" if getattr(device, "type", str(device)) == "cuda" else "local"


@dataclass(frozen=True)
class Shard:
    """One unit of work: ``fn(*args)`` returns a tidy DataFrame, or (DataFrame, dict of numpy
    arrays) when the shard also has bulk results that are no table (whole loss curves). ``fn``
    must be a module-level function and ``args`` picklable (shards travel to other processes)."""

    key: str
    fn: Callable[..., pd.DataFrame]
    args: tuple


# Raised when the engines draw different numbers for the same spec, so that a store written before
# is refused (as a different spec) rather than resumed with a mix of old and new shards.
# 2: the toy model's draws became common across widths (toy_models.base.NestedNormals).
DRAWS_VERSION = 2


def spec_hash(spec: dict) -> str:
    """sha256 of the spec's canonical JSON and the engines' DRAWS_VERSION."""
    return hashlib.sha256(json.dumps({"spec": spec, "draws": DRAWS_VERSION}, sort_keys=True,
                                     default=str).encode()).hexdigest()


class ShardStore:
    """The finished shards of one spec under ``out``."""

    def __init__(self, out: Path, spec: dict, force: bool = False):
        self.out, self.dir = out, out / "shards"
        self.manifest_path = out / "manifest.json"
        self.hash = spec_hash(spec)
        self.done: dict[str, str] = {}
        if self.manifest_path.is_file():
            try:
                manifest = json.loads(self.manifest_path.read_text())
            except (json.JSONDecodeError, OSError) as err:
                raise SpecError(f"{self.manifest_path} is unreadable ({err}); use --force to start over") from None
            if manifest.get("spec_hash") != self.hash and not force:
                raise SpecError(f"--out {out} holds shards of a different spec; use another --out, "
                                "or --force to recompute")
            if manifest.get("spec_hash") == self.hash and not force:
                self.done = {k: v for k, v in manifest.get("done", {}).items() if (self.dir / v).is_file()}
        self.spec = spec

    def is_done(self, key: str) -> bool:
        return key in self.done

    def save(self, key: str, frame: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Write the shard's arrays (``<key>.npz``, exact bits) and table, then list it in the
        manifest (each atomic): a listed shard has all its files."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if arrays is not None:
            def write_npz(tmp):
                with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
                    np.savez(f, **arrays)
            write_atomic(self.dir / f"{key}.npz", write_npz)
        name = f"{key}.csv"
        write_csv(frame, self.dir / name)
        self.done[key] = name
        write_text(json.dumps({"spec_hash": self.hash, "spec": self.spec, "done": self.done}, indent=1,
                              default=str) + "\n", self.manifest_path)

    def load(self, keys: list[str]) -> pd.DataFrame:
        return pd.concat([read_table(self.dir / self.done[k]) for k in keys], ignore_index=True)

    def load_arrays(self, key: str) -> dict[str, np.ndarray]:
        """The arrays a finished shard saved next to its table."""
        with np.load(self.dir / f"{key}.npz") as saved:
            return {name: saved[name] for name in saved.files}


class _LogLines:
    """A file for tqdm where the bar cannot be redrawn in place (a log, CI, a pipe): each
    refresh becomes one plain line instead of a carriage-return overwrite."""

    def __init__(self, file):
        self.file = file

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.file.write(line + "\n")

    def flush(self) -> None:
        self.file.flush()


def progress_bar(total: int, desc: str | None, unit: str, disable: bool = False, file=None) -> tqdm:
    """A tqdm over ``total`` items on ``file`` (stderr): done of total, elapsed and time left,
    estimated from the average rate since the start (items of mixed cost make a moving
    average swing). On a terminal the live bar; elsewhere the same line printed every 20 s."""
    file = file if file is not None else sys.stderr
    if getattr(file, "isatty", lambda: False)():
        return tqdm(total=total, desc=desc, unit=unit, smoothing=0, disable=disable, file=file)
    return tqdm(total=total, desc=desc, unit=unit, smoothing=0, disable=disable, file=_LogLines(file),
                mininterval=20, miniters=1, ncols=80, ascii=True)


def _exit_with_parent(parent: int) -> None:
    """A worker's watch: when the study's process is gone (killed with no chance to shut its
    pool down), the worker ends too instead of waiting forever for work. A worker's own parent is
    the study's process (spawned) or the fork server, which ends with the study's process
    (forked from the server): either way the worker is orphaned, and its parent id changes."""
    first = os.getppid()

    def watch():
        while os.getppid() == first and _alive(parent):
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's: cannot be the study's process, which was ours
        return False
    return True


def _pool_context(todo: list[Shard]):
    """Where a local pool's workers come from. A spawned worker imports torch and the package
    again, seconds of CPU per worker and per pool; a fork server (POSIX) imports them once per
    study process, with the modules of the shards' functions, and forks each worker from itself:
    nothing is imported twice, and no worker inherits the study's threads or CUDA state (the
    server never runs a shard). Spawn where there is no fork server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # read when the server starts (the first pool of this process); later pools' workers import what else they need
    ctx.set_forkserver_preload(["studies.run.shards", *sorted({s.fn.__module__ for s in todo})])
    return ctx


def _call(shard_fn, args) -> tuple[Any, float]:
    """(the shard's result, the CPU seconds its process spent on it)."""
    keep_freed_memory()
    torch.set_num_threads(SHARD_THREADS)
    start = time.process_time()
    result = shard_fn(*args)
    return result, time.process_time() - start


def run_shards(shards: list[Shard], store: ShardStore, executor: str = "inline", workers: int = 2,
               scheduler: str | None = None, progress: Callable[[str, pd.DataFrame], Any] | None = None,
               bar: str | None = None, pools: dict | None = None) -> float:
    """Run every shard the store does not hold yet; afterwards ``store.load`` has them all.
    ``progress(key, table)`` after each finished shard; ``bar``: the label of a progress bar
    over the shards still to run (None: no bar). ``pools``: where the local executor keeps its
    process pool for the caller's later calls (``close_pools`` ends them); None: a pool per call.
    Returns the CPU seconds the shards took in other processes (0 inline, where they are this
    process's own; a worker's start-up is not counted)."""
    if executor not in EXECUTORS or executor == "auto":
        raise SpecError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS[1:])}")
    if workers < 1:
        raise SpecError(f"--workers must be at least 1, got {workers}")
    todo = [s for s in shards if not store.is_done(s.key)]
    if executor == "local" and (len(todo) < 2 or workers == 1):
        executor = "inline"  # a pool of one gains nothing; the bits are the same

    if bar is not None and len(todo) < len(shards):
        print(f"{bar}: {len(shards) - len(todo)} of {len(shards)} shards already done in {store.out}"
              + (f"; running the other {len(todo)}" if todo else ""), file=sys.stderr, flush=True)
    counter = progress_bar(len(todo), bar, "shard", disable=bar is None or not todo)

    elsewhere = [0.0]  # the shards' CPU seconds in other processes

    def finished(key, outcome):
        result, cpu = outcome
        frame, arrays = result if isinstance(result, tuple) else (result, None)
        store.save(key, frame, arrays)
        if executor != "inline":
            elsewhere[0] += cpu
        counter.update()
        if progress:
            progress(key, frame)

    with counter:
        _run(todo, finished, executor, workers, scheduler, pools)
    return elsewhere[0]


def close_pools(pools: dict) -> None:
    """End the process pools ``run_shards`` kept in ``pools``."""
    while pools:
        pools.popitem()[1].shutdown()


def _run(todo: list[Shard], finished, executor: str, workers: int, scheduler: str | None,
         pools: dict | None = None) -> None:
    """Run the shards on the executor, calling ``finished(key, (result, cpu seconds))`` as each one ends."""
    if executor == "inline":
        threads = torch.get_num_threads()
        try:
            for s in todo:
                finished(s.key, _call(s.fn, s.args))
        finally:
            torch.set_num_threads(threads)
    elif executor == "local":
        # Starting workers costs CPU (_pool_context): a study whose shards come in phases (validate's
        # suite, then its corner law; lr-laws' laws, Fig. 2, transfer test) reuses its pool.
        size = min(workers, len(todo))
        pool = pools.get(size) if pools is not None else None
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=size, mp_context=_pool_context(todo),
                                       initializer=_exit_with_parent, initargs=(os.getpid(),))
            if pools is not None:
                pools[size] = pool
        try:
            futures = {pool.submit(_call, s.fn, s.args): s.key for s in todo}
            for f in as_completed(futures):
                finished(futures[f], f.result())
        except BaseException:  # Ctrl-C or a failed shard: drop the queued shards instead of running them all
            pool.shutdown(wait=False, cancel_futures=True)
            if pools is not None:
                pools.pop(size, None)
            raise
        if pools is None:
            pool.shutdown()
    else:
        _run_dask(todo, finished, scheduler, workers)


# How long to try reaching a --scheduler before giving up with one error line (Dask retries a
# refused connection until then).
SCHEDULER_TIMEOUT_S = 10


def _run_dask(todo: list[Shard], finished, scheduler: str | None, workers: int) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:
        raise SpecError("--executor dask needs the 'dask' extra (pip install 'loraplus-scaling[dask]')") from None
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            except (OSError, TimeoutError, ValueError) as err:  # ValueError: not an address
                raise SpecError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({err})") from None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
            client = Client(cluster)
        with client:
            futures = {client.submit(_call, s.fn, s.args, pure=False): s.key for s in todo}
            for f in dask_completed(list(futures)):
                finished(futures[f], f.result())
    finally:
        if cluster is not None:
            cluster.close()
