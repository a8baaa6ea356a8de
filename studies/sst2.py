"""SST-2: where it is (``find_sst2``), loading it from GLUE TSV files (any column order, either
header naming) or a HF dataset, and a small generated stand-in (``write_sample``).

Some offline copies have a label-first header (``label``/``sentence`` in train.tsv,
``label``/``content`` in dev.tsv); GLUE's own files are sentence-first (``sentence``/``label``).
Columns are found by name when the header names them, otherwise by content (the label
column is the one whose every value is 0 or 1).
"""
from __future__ import annotations

import csv
import importlib.util
import os
import random
from pathlib import Path

from studies.run.spec import SpecError

TEXT_NAMES = ("sentence", "content", "text")
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "validation": "dev.tsv"}
SST2_ENV = "LORAPLUS_SST2"  # a directory with train.tsv and dev.tsv, or hf:glue/sst2
HF_SST2 = "hf:glue/sst2"
REPO = Path(__file__).resolve().parents[1]


def _datasets_installed() -> bool:
    return importlib.util.find_spec("datasets") is not None


def find_sst2(data: str | None = None, repo: Path | None = None) -> str:
    """Where SST-2 is read from, the first of: ``data`` (``--data``), the environment variable
    LORAPLUS_SST2, ``../shared/data/sst2`` beside the repository when that directory exists,
    and hf:glue/sst2 (online, or from the HF cache) when the ``datasets`` package is installed.
    SpecError when none applies, saying what to give."""
    for source in (data, os.environ.get(SST2_ENV)):
        if source:
            return source
    beside = (repo or REPO).parent / "shared" / "data" / "sst2"
    if beside.is_dir():
        return str(beside)
    if _datasets_installed():
        return HF_SST2
    raise SpecError(f"--data: no SST-2 found (no --data, ${SST2_ENV} not set, no {beside}); give --data DIR "
                    f"(train.tsv and dev.tsv, e.g. GLUE's SST-2 folder), set {SST2_ENV}=DIR, or pip install "
                    f"datasets to read {HF_SST2} online")


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
            raise SpecError(f"--data {source}: cannot load it ({str(err).splitlines()[0]}); for a local copy "
                            f"give --data DIR or set {SST2_ENV}=DIR") from None
        return from_records(ds, limit)
    path = Path(source)
    if not path.is_dir():
        raise SpecError(f"--data {source}: not a directory with {SPLIT_FILES[split]} (or hf:glue/sst2)")
    return read_tsv(path / SPLIT_FILES[split], limit)


# The generated stand-in: short movie-review sentences in SST-2's style (lower case, spaced
# punctuation) whose label follows from the words: the adjective's polarity, flipped by a
# negation, and after "but" the second clause's. Not SST-2: a way to run the pipeline (the
# course's Lesson 6, smoke tests) where the real data set is not at hand.
_SUBJECTS = ("the film", "this movie", "the story", "the acting", "the script", "the ending", "the cast",
             "its soundtrack", "the dialogue", "the pacing", "every scene", "the plot")
_POSITIVE = ("wonderful", "moving", "sharp", "funny", "beautiful", "gripping", "charming", "smart",
             "heartfelt", "brilliant", "fresh", "touching")
_NEGATIVE = ("dull", "tedious", "clumsy", "lifeless", "predictable", "shallow", "bland", "messy",
             "forgettable", "painful", "hollow", "tiresome")
_VERBS = ("is", "feels", "seems", "remains")
_DEGREES = ("", "truly ", "rather ", "quite ", "utterly ", "often ")
_NEGATIONS = ("is not", "is never", "is hardly", "never feels", "does not seem")


def _clause(rng: random.Random) -> tuple[str, int]:
    label = rng.randint(0, 1)
    adjective = rng.choice(_POSITIVE if label else _NEGATIVE)
    if rng.random() < 0.2:  # a negation flips the label
        return f"{rng.choice(_SUBJECTS)} {rng.choice(_NEGATIONS)} {adjective}", 1 - label
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_DEGREES)}{adjective}", label


def sample_sentences(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` generated (sentence, label) pairs, the same for the same seed."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        text, label = _clause(rng)
        if rng.random() < 0.25:  # "x , but y": y decides
            second, label = _clause(rng)
            text = f"{text} , but {second}"
        pairs.append((text, label))
    return pairs


def write_sample(directory: str | Path, n_train: int = 2000, n_dev: int = 200, seed: int = 0) -> Path:
    """Write generated train.tsv and dev.tsv (label-first, ``label``/``sentence``) into
    ``directory`` (created); return it. Train and dev come from different seeds."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train.tsv", sample_sentences(n_train, seed)), ("dev.tsv", sample_sentences(n_dev, seed + 1))):
        lines = ["label\tsentence"] + [f"{y}\t{t}" for t, y in pairs]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory
