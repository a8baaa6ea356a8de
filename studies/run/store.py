"""Writing results: atomic files (temporary file, then rename) and run metadata."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy
import pandas as pd
import scipy
import torch


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it is a writable directory (ValueError otherwise)."""
    if not str(path).strip():  # Path("") is the working directory: never write there by accident
        raise ValueError("--out is empty; give a directory, e.g. runs/NAME")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create --out {out}: {err.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} is not writable")
    return out


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


LABEL_COLUMNS = {"init": str, "rule": str}  # labels, not numbers: init names such as "1", transfer rules


def read_table(path: Path) -> pd.DataFrame:
    """A table written by write_csv, with its label columns read back as labels."""
    return pd.read_csv(path, dtype=LABEL_COLUMNS)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False))


def write_text(text: str, path: Path) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def metadata(spec: dict, device: str, wall_time_s: float, **extra) -> dict:
    """Spec, package versions, git revision, device and wall time of a study."""
    try:
        pkg = version("loraplus-scaling")
    except PackageNotFoundError:
        pkg = "not installed"
    return {"spec": spec, "versions": {"loraplus-scaling": pkg, "torch": torch.__version__,
                                        "numpy": numpy.__version__, "scipy": scipy.__version__,
                                        "pandas": pd.__version__, "python": platform.python_version()},
            "git_revision": git_revision(), "device": device, "wall_time_s": round(wall_time_s, 3),
            "seeding": "each shard's generators derive from (seed, width, stream)", **extra}


def write_json(obj: dict, path: Path) -> None:
    write_text(json.dumps(obj, indent=2, default=str) + "\n", path)
