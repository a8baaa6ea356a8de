"""Shards: resume after an interruption, spec-hash refusal, identical results on every executor."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from studies.run import runner, shards
from studies.cli import main
from studies.run.spec import SpecError

ARGS = ["coord-check", "--model", "linear", "--widths", "32,64", "--steps", "2", "--seeds", "2",
        "--schemes", "loraplus,lora-const"]


def run(out, *extra):
    return main([*ARGS, "--out", str(out), *extra])


def test_interrupted_run_resumes_and_gives_the_same_bits(tmp_path, monkeypatch, capsys):
    reference = tmp_path / "ref"
    assert run(reference, "--executor", "inline") == 0  # the executors agree (test below)
    calls = []
    real = runner.run_coord_check_shard

    def dies_after_two(spec, width, seed, device):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed mid-study
        calls.append((width, seed))
        return real(spec, width, seed, device)

    monkeypatch.setattr(runner, "run_coord_check_shard", dies_after_two)
    out = tmp_path / "resumed"
    assert run(out, "--executor", "inline") == 130  # inline: the patched shard runs in this process
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["done"]) == 2 and not (out / "results.csv").exists()
    monkeypatch.setattr(runner, "run_coord_check_shard", real)
    counted = []
    monkeypatch.setattr(runner, "run_coord_check_shard", lambda *a: counted.append(a[1:3]) or real(*a))
    assert run(out, "--executor", "inline") == 0
    assert len(counted) == 2  # only the two missing shards were computed
    assert json.loads((out / "meta.json").read_text())["resumed_shards"] == 2
    assert "2 of 4 shards already done" in capsys.readouterr().err  # the progress line says so too
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()


def test_a_different_spec_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "cc"
    assert run(out, "--executor", "inline") == 0
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    other = [*ARGS[:-2], "--seeds", "3", "--schemes", "loraplus", "--executor", "inline", "--out", str(out)]
    assert main(other) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "different spec" in err
    assert (out / "results.csv").read_bytes() == before  # nothing on disk changed
    assert main([*other, "--force"]) == 0
    assert pd.read_csv(out / "results.csv").seed.nunique() == 3


@pytest.mark.heavy(5)
def test_the_dask_executor_gives_identical_results(tmp_path):
    """(The local pool: test_a_run_keeps_its_local_pool_across_phases, and every command run with
    --executor local below.)"""
    assert run(tmp_path / "inline", "--executor", "inline") == 0
    assert run(tmp_path / "dask", "--executor", "dask", "--workers", "1") == 0  # one worker process: shards still travel
    assert (tmp_path / "dask" / "results.csv").read_bytes() == (tmp_path / "inline" / "results.csv").read_bytes()


def test_auto_executor_follows_the_environment_else_the_device(monkeypatch):
    monkeypatch.delenv(shards.EXECUTOR_ENV)
    assert shards.resolve_executor("auto", torch.device("cpu")) == "local"
    assert shards.resolve_executor("auto", torch.device("cuda")) == "inline"
    monkeypatch.setenv(shards.EXECUTOR_ENV, "dask")
    assert shards.resolve_executor("auto", torch.device("cpu")) == "dask"
    assert shards.resolve_executor("inline", torch.device("cpu")) == "inline"  # an explicit choice wins
    monkeypatch.setenv(shards.EXECUTOR_ENV, "slurm")
    with pytest.raises(SpecError, match="LORAPLUS_EXECUTOR='slurm' is no executor"):
        shards.resolve_executor("auto", torch.device("cpu"))


def test_unreachable_scheduler_and_unknown_executor(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shards, "SCHEDULER_TIMEOUT_S", 1)  # the message, not the wait, is what is checked
    assert run(tmp_path / "a", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9") == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert run(tmp_path / "b", "--executor", "slurm") == 2
    assert "invalid choice: 'slurm'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc; empty elsewhere)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid``: a pool's workers are the fork server's children, not the study's."""
    return [d for c in _children(pid) for d in (c, *_descendants(c))]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _assert_gone(pids: list[int], within: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _running(p)]
    assert not alive, f"worker processes {alive} outlived the killed study"


def _shards_done(out: Path) -> int:
    """The shards the manifest lists (0 before it exists); a manifest that does not parse fails the test."""
    path = out / "manifest.json"
    return len(json.loads(path.read_text())["done"]) if path.exists() else 0


@pytest.mark.heavy(12)
def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_table(tmp_path, monkeypatch):
    """A real SIGKILL (no cleanup runs) of a 16-shard study on the local pool, once while its pool
    starts (the store open, no shard done) and once after its first shard; each resumed run must
    equal the uninterrupted one byte for byte, with no row missing or doubled, and no worker may
    outlive the killed study."""
    import subprocess
    import sys
    import time

    from studies.reports import coord_check as report
    monkeypatch.setattr(report, "plot_coord_check", lambda *a, **k: plt.figure())  # the tables are the point here
    # shards of about 0.1 s at n = 2048: the others are still running when the first is seen done
    args = ["coord-check", "--model", "linear", "--widths", "256,512,1024,2048", "--steps", "4", "--seeds", "4",
            "--schemes", "loraplus,lora-const,lora-sqrt,lora-inv"]
    reference = tmp_path / "ref"
    assert main([*args, "--executor", "inline", "--out", str(reference)]) == 0  # the executors agree (test above)
    expected = (reference / "results.csv").read_bytes()
    total = _shards_done(reference)
    outs = {kill_at: tmp_path / f"killed_at{kill_at}" for kill_at in (0, 1)}
    procs = {kill_at: subprocess.Popen([sys.executable, "-m", "studies", *args, "--executor", "local", "--out", str(out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for kill_at, out in outs.items()}  # side by side: each is killed at its own point
    deadline, family = time.monotonic() + 120, []
    while procs and time.monotonic() < deadline:
        for kill_at, proc in list(procs.items()):
            if (outs[kill_at].is_dir() and _shards_done(outs[kill_at]) >= kill_at) or proc.poll() is not None:
                family += _descendants(proc.pid)
                proc.kill()
                proc.wait()
                del procs[kill_at]
        time.sleep(0.005)  # the manifest is replaced atomically: every read sees a whole one
    assert not procs
    _assert_gone(family)  # their pools' workers (and fork servers) end with them, none left waiting for work
    for kill_at, out in outs.items():
        assert kill_at <= _shards_done(out) < total  # killed mid-study: the resume below has work to do
        assert main([*args, "--executor", "inline", "--out", str(out)]) == 0
        assert (out / "results.csv").read_bytes() == expected


# one width, two seeds: two shards, and few figures to draw (the figures are not what is tested here)
GRID_ARGS = ["lr-grid", "--model", "toy", "--widths", "64", "--eta-a-range", "1e-3:1", "--eta-b-range", "1e-3:1",
             "--per-decade", "1", "--steps", "4", "--eval-at", "4", "--seeds", "2", "--optimizer", "adam",
             "--test-size", "16"]


def test_lr_grid_resumes_from_its_shards_with_the_same_bits(tmp_path, monkeypatch, capsys):
    """The grid's shards hold the eval-step table and the whole curves (npz); a resumed grid
    writes the same grid and curve tables as an uninterrupted one. (On the local executor, the
    grid's shards give the inline bits: test_a_run_keeps_its_local_pool_across_phases.)"""
    from studies import lr_grid
    from studies.reports import lr_grid as lr_grid_report
    monkeypatch.setattr(lr_grid_report, "save_figure", lambda fig, stem: plt.close(fig))  # tables are the point
    assert main([*GRID_ARGS, "--out", str(tmp_path / "ref"), "--executor", "inline"]) == 0
    real, calls = lr_grid.lr_grid_shard, []

    def dies_after_one(*a):
        if calls:
            raise KeyboardInterrupt
        calls.append(a[1:3])
        return real(*a)

    monkeypatch.setattr(lr_grid, "lr_grid_shard", dies_after_one)
    out = tmp_path / "resumed"
    assert main([*GRID_ARGS, "--out", str(out), "--executor", "inline"]) == 130
    assert len(json.loads((out / "manifest.json").read_text())["done"]) == 1 and not (out / "grid.csv").exists()
    monkeypatch.setattr(lr_grid, "lr_grid_shard", real)
    assert main([*GRID_ARGS, "--out", str(out), "--executor", "inline"]) == 0
    assert json.loads((out / "meta.json").read_text())["resumed_shards"] == 1
    for name in ("grid.csv", "curves.csv", "optima.csv"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def _table(i: int) -> pd.DataFrame:
    return pd.DataFrame({"i": [i]})


@pytest.mark.heavy(3)
def test_a_run_keeps_its_local_pool_across_phases(tmp_path):
    """Two phases of one run (two run_shards calls sharing ``pools``): a coordinate check's shards,
    then an lr-grid's, which also return whole loss curves (npz arrays). Both run on the same pool's
    workers and give the inline executor's bits, tables and arrays; close_pools ends the workers."""
    from studies.lr_grid import LrGridSpec, lr_grid_shard
    from studies.run.runner import coord_check_shards
    from studies.run.shards import Shard, ShardStore, close_pools, run_shards
    from studies.run.spec import CoordCheckSpec
    spec = CoordCheckSpec(model="linear", widths=(32, 64), steps=2, seeds=(0, 1), schemes=("loraplus", "lora-const"))
    grid = LrGridSpec(model="toy", widths=(64,), eta_a_range=(1e-3, 1.0), eta_b_range=(1e-3, 1.0), per_decade=1,
                      steps=4, eval_at=(4,), seeds=(0, 1), optimizer="adam", test_size=16)
    phases = [coord_check_shards(spec, torch.device("cpu")),
              [Shard(f"grid_s{s}", lr_grid_shard, (grid, 64, s, torch.device("cpu"))) for s in grid.seeds]]
    inline = ShardStore(tmp_path / "inline", {"study": "t"})
    assert run_shards([sh for phase in phases for sh in phase], inline, "inline") == 0  # its CPU is this process's
    pooled, pools, workers = ShardStore(tmp_path / "local", {"study": "t"}), {}, []
    for phase in phases:
        assert run_shards(phase, pooled, "local", 2, pools=pools) > 0  # the workers' CPU, for meta.json
        (pool,) = pools.values()
        workers.append(dict(pool._processes))
    assert workers[0] == workers[1] and len(workers[0]) == 2  # the second phase ran on the first one's workers
    keys = [sh.key for phase in phases for sh in phase]
    pd.testing.assert_frame_equal(pooled.load(keys), inline.load(keys), check_exact=True)
    for sh in phases[1]:
        ours, theirs = pooled.load_arrays(sh.key), inline.load_arrays(sh.key)
        assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    close_pools(pools)
    assert not pools and not any(w.is_alive() for w in workers[0].values())


def test_progress_off_a_terminal_is_plain_lines_and_says_what_was_resumed(tmp_path, capsys):
    import io

    from studies.run.shards import Shard, ShardStore, progress_bar, run_shards

    log = io.StringIO()  # not a terminal: one plain line per refresh, never a carriage return
    with progress_bar(3, "job", "shard", file=log) as bar:
        bar.update(3)
    assert "\r" not in log.getvalue() and log.getvalue().splitlines()[-1].startswith("job: 100%")
    assert "3/3" in log.getvalue()

    shards = [Shard(f"s{i}", _table, (i,)) for i in range(3)]
    store = ShardStore(tmp_path, {"study": "t"})
    run_shards(shards[:2], store, bar="job")
    capsys.readouterr()
    run_shards(shards, ShardStore(tmp_path, {"study": "t"}), bar="job")
    err = capsys.readouterr().err
    assert "job: 2 of 3 shards already done" in err and "running the other 1" in err and "1/1" in err
    run_shards(shards, ShardStore(tmp_path, {"study": "t"}), bar="job")
    assert capsys.readouterr().err.strip() == f"job: 3 of 3 shards already done in {tmp_path}"
