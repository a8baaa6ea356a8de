"""SST-2 loading: GLUE TSV files (any column order, either header naming) or a HF dataset.

The shared offline copy has a label-first header (``label``/``sentence`` in train.tsv,
``label``/``content`` in dev.tsv); GLUE's own files are sentence-first (``sentence``/``label``).
Columns are found by name when the header names them, otherwise by content (the label
column is the one whose every value is 0 or 1).
"""
from __future__ import annotations

import csv
from pathlib import Path

from studies.run.spec import SpecError

TEXT_NAMES = ("sentence", "content", "text")
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "validation": "dev.tsv"}


def _columns(header: list[str], rows: list[list[str]], path: Path) -> tuple[int, int]:
    """(label column, text column) of a TSV with ``header``."""
    names = [h.strip().lower() for h in header]
    if "label" in names:
        label = names.index("label")
    else:  # by content: the column whose values are all 0/1
        binary = [j for j in range(len(names)) if all(len(r) > j and r[j].strip() in ("0", "1") for r in rows[:200])]
        if len(binary) != 1:
            raise SpecError(f"{path}: cannot tell which column holds the 0/1 labels (header {header})")
        label = binary[0]
    text = next((names.index(n) for n in TEXT_NAMES if n in names), None)
    if text is None:
        others = [j for j in range(len(names)) if j != label]
        if len(others) != 1:
            raise SpecError(f"{path}: cannot tell which column holds the sentence (header {header})")
        text = others[0]
    return label, text


def read_tsv(path: str | Path, limit: int | None = None) -> list[tuple[str, int]]:
    """(sentence, label) pairs of one SST-2 TSV file, in file order (the first ``limit``)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except OSError as err:
        raise SpecError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not UTF-8 text") from None
    if len(rows) < 2:
        raise SpecError(f"{path}: no data rows")
    header, body = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    label, text = _columns(header, body, path)
    out = []
    for i, r in enumerate(body[:limit] if limit else body, start=2):
        try:
            y = int(r[label])
        except (IndexError, ValueError):
            raise SpecError(f"{path}:{i}: label {r[label] if len(r) > label else ''!r} is not 0 or 1") from None
        if y not in (0, 1):
            raise SpecError(f"{path}:{i}: label {y} is not 0 or 1")
        out.append((r[text], y))
    return out


def from_records(records, limit: int | None = None) -> list[tuple[str, int]]:
    """(sentence, label) pairs from a HF dataset (or any iterable of {'sentence', 'label'}
    records); labels of -1 (GLUE's hidden test labels) are refused."""
    out = []
    for rec in records:
        y = int(rec["label"])
        if y not in (0, 1):
            raise SpecError(f"SST-2 record with label {y}: only labelled splits (train, validation) can be used")
        out.append((rec["sentence"], y))
        if limit and len(out) >= limit:
            break
    return out


def load_sst2(source: str, split: str, limit: int | None = None) -> list[tuple[str, int]]:
    """SST-2 ``split`` ('train' or 'dev') from a directory of TSV files or ``hf:glue/sst2``
    (needs the ``datasets`` package and the internet or its cache)."""
    if split not in SPLIT_FILES:
        raise SpecError(f"unknown split {split!r}; choose train or dev")
    if source.startswith("hf:"):
        try:
            from datasets import load_dataset
        except ImportError:
            raise SpecError("--data hf:... needs the 'datasets' package (pip install datasets)") from None
        name = source[3:].split("/")
        try:
            ds = load_dataset(*name, split="train" if split == "train" else "validation")
        except Exception as err:  # offline, unknown name: one line for the user
            raise SpecError(f"cannot load {source}: {str(err).splitlines()[0]}") from None
        return from_records(ds, limit)
    path = Path(source)
    if not path.is_dir():
        raise SpecError(f"--data {source}: not a directory with {SPLIT_FILES[split]} (or hf:glue/sst2)")
    return read_tsv(path / SPLIT_FILES[split], limit)
