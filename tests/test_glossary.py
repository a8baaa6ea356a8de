"""Every report ends with a pointer to the glossary, and the glossary explains the words the
reports use (the terms the pointer names, the report's reason kinds' words)."""
from __future__ import annotations

from pathlib import Path

from studies.run.study import GLOSSARY_PAGE, GLOSSARY_WORDS, glossary_note

GLOSSARY = Path(__file__).resolve().parents[1] / GLOSSARY_PAGE

# report words -> the glossary entry that explains them (an entry's title line contains the word)
TERMS = {"Init[1]": "Init[1]", "Init[2]": "Init[2]", "Theta(1)": r"$\Theta(1)$", "delta1..3": "delta1, delta2, delta3",
         "lazy side": "lazy side", "edge": "edge (B edge", "corner": "corner", "B0 path": "B0 path",
         "local slopes": "local slopes", "omega": "omega", "stacked": "stacked LoRA layers",
         "stacking control": "stacking control", "readout": "readout: mean-field, standard",
         "transfer": "transfer test", "recommended": "recommended rates"}


def entry_titles() -> list[str]:
    """The glossary's entry titles: the line before each ':   ' definition."""
    lines = GLOSSARY.read_text().splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if line.startswith(":   ") and i > 0 and lines[i - 1].strip()]


def test_the_note_points_at_the_glossary_and_names_words_it_explains():
    note = glossary_note()
    assert GLOSSARY.is_file() and f"`{GLOSSARY_PAGE}`" in note
    titles = entry_titles()
    for word, title in TERMS.items():
        assert any(title in t for t in titles), f"no glossary entry for {word!r}"
    for word in GLOSSARY_WORDS:
        assert word in note and word in TERMS, f"the note names {word!r}, which TERMS does not map to an entry"
