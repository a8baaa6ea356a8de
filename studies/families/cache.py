"""Pretrained bases on disk, so that a second run of a family study does not pretrain again.

One file per (family, width, seed, pretraining settings): ``<dir>/<family>-n<width>-s<seed>-<key>.pt``,
where ``key`` hashes the manifest, i.e. every setting that shapes the base: the family's class
and its settings (all but the fine-tune-only ones), the width, the seed, the device type, the
torch version (its arithmetic may change a base) and ``FORMAT`` (raised whenever the
pretraining code changes what a base holds). Changed settings therefore name another file.

A file holds {"manifest", "loss", "state", "digest"}: the manifest it was built for, the base's
pretraining loss, its state dict (CPU tensors) and a SHA-256 of the state's names, shapes,
dtypes and bytes. It is trusted only when it loads with ``torch.load(weights_only=True)`` (no
arbitrary unpickling), its manifest equals the one asked for (else it is stale), its digest
matches the tensors (else it is corrupt) and the model takes the state strictly; anything else
is rebuilt and overwritten. Files are written atomically (a temporary file, then a rename), so
a reader never sees half a file and two processes building the same base both end with a
whole one.

Where: ``$LORAPLUS_SCALING_CACHE`` if set (``off`` turns the cache off), else
``$XDG_CACHE_HOME/loraplus-scaling/bases``, else ``~/.cache/loraplus-scaling/bases``; never
inside the repository.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

CACHE_ENV = "LORAPLUS_SCALING_CACHE"
FORMAT = 1


def cache_dir() -> Path | None:
    """The directory of cached bases, or None when the cache is off."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given.lower() == "off":
        return None
    if given:
        return Path(given).expanduser()
    root = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(root) / "loraplus-scaling" / "bases"


def manifest(family: str, settings: dict, width: int, seed: int, device: torch.device | str | None) -> dict:
    """What a base is built from (JSON values only)."""
    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return {"format": FORMAT, "family": family, "settings": json.loads(json.dumps(settings)), "width": int(width),
            "seed": int(seed), "device": torch.device(device or "cpu").type, "torch": major_minor}


def entry_path(directory: Path, m: dict) -> Path:
    key = hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:16]
    slug = "".join(ch if ch.isalnum() else "_" for ch in m["family"])
    return directory / f"{slug}-n{m['width']}-s{m['seed']}-{key}.pt"


def digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, shapes, dtypes and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read(path: Path, m: dict) -> tuple[dict, float] | None:
    """(state, loss) of a trustworthy entry, None for a missing, unreadable, stale or corrupt one."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # a foreign file's pickle protocol draws a warning: it is rebuilt anyway
            warnings.simplefilter("ignore")
            entry = torch.load(path, map_location="cpu", weights_only=True)
        ok = (isinstance(entry, dict) and entry.get("manifest") == m and isinstance(entry.get("state"), dict)
              and entry.get("digest") == digest(entry["state"]))
    except Exception:  # a truncated or foreign file: whatever the unpickler says, it is not a base
        return None
    return (entry["state"], float(entry["loss"])) if ok else None


def _write(path: Path, m: dict, state: dict, loss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().cpu().clone() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"manifest": m, "loss": float(loss), "state": cpu, "digest": digest(cpu)}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_base(family: str, settings: dict, width: int, seed: int, device, fresh: Callable[[], nn.Module],
                build: Callable[[nn.Module], float]) -> tuple[nn.Module, float, str]:
    """(base, pretraining loss, where it came from: "cache", "built" or "built (cache off)").

    fresh(): the untrained model (on ``device``); build(model): pretrains it in place and
    returns its loss. A trustworthy entry is loaded into fresh() instead of building."""
    directory = cache_dir()
    if directory is None:
        model = fresh()
        return model, build(model), "built (cache off)"
    m = manifest(family, settings, width, seed, device)
    path = entry_path(directory, m)
    found = _read(path, m)
    if found is not None:
        model = fresh()
        try:
            model.load_state_dict(found[0], strict=True)
            return model, found[1], "cache"
        except (RuntimeError, KeyError, ValueError):  # the architecture no longer takes this state
            pass
    model = fresh()
    loss = build(model)
    try:
        _write(path, m, model.state_dict(), loss)
    except OSError:  # a read-only or full disk costs the next run its pretraining, not this run
        pass
    return model, loss, "built"
