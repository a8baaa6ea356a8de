"""The finetune study: where SST-2 is found, SST-2 loading (label-first layouts, GLUE's, HF
records, the generated stand-in) and 3-step smoke tests on a tiny config-built model saved
locally. Nothing here needs the real data set."""
from __future__ import annotations

import json
import sys
import types

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from studies.cli import main
from studies import finetune
from studies.finetune import FinetuneSpec, best_lrs, steps_to_target
from studies.reports import finetune as finetune_report
from studies.run.spec import SpecError
from studies import sst2
from studies.sst2 import SST2_ENV, find_sst2, from_records, load_sst2, read_tsv, sample_sentences, write_sample

ROWS = [("a great movie", 1), ("awful and dull", 0), ("loved it", 1), ("boring plot", 0), ("fun", 1), ("bad", 0)]


def write(path, header, rows, label_first=True):
    lines = ["\t".join(header)] + ["\t".join((str(y), t) if label_first else (t, str(y))) for t, y in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("header,label_first", [(("label", "sentence"), True), (("label", "content"), True),
                                                (("sentence", "label"), False), (("col0", "col1"), True)])
def test_tsv_layouts(tmp_path, header, label_first):
    write(tmp_path / "x.tsv", header, ROWS, label_first)
    assert read_tsv(tmp_path / "x.tsv") == ROWS
    assert read_tsv(tmp_path / "x.tsv", limit=2) == ROWS[:2]


def test_shared_copy_layout_train_and_dev(tmp_path):
    write(tmp_path / "train.tsv", ("label", "sentence"), ROWS)
    write(tmp_path / "dev.tsv", ("label", "content"), ROWS[:3])
    assert load_sst2(str(tmp_path), "train") == ROWS and load_sst2(str(tmp_path), "dev") == ROWS[:3]


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "x.tsv").write_text("label\tsentence\n2\tnot binary\n")
    with pytest.raises(SpecError, match="not 0 or 1"):
        read_tsv(tmp_path / "x.tsv")
    with pytest.raises(SpecError, match="cannot read"):
        read_tsv(tmp_path / "missing.tsv")
    with pytest.raises(SpecError, match="not a directory"):
        load_sst2(str(tmp_path / "nowhere"), "train")


def test_sst2_is_found_in_the_documented_order(tmp_path, monkeypatch):
    """--data, then $LORAPLUS_SST2, then ../shared/data/sst2 beside the repository, then
    hf:glue/sst2 when datasets is installed; otherwise a SpecError saying what to give."""
    clone = tmp_path / "clone"  # a repository with nothing beside it
    clone.mkdir()
    monkeypatch.delenv(SST2_ENV, raising=False)
    monkeypatch.setattr(sst2, "_datasets_installed", lambda: False)
    with pytest.raises(SpecError, match=f"--data.*{SST2_ENV}=DIR.*pip install datasets"):
        find_sst2(None, clone)
    monkeypatch.setattr(sst2, "_datasets_installed", lambda: True)
    assert find_sst2(None, clone) == "hf:glue/sst2"
    beside = tmp_path / "shared" / "data" / "sst2"
    beside.mkdir(parents=True)
    assert find_sst2(None, clone) == str(beside)
    monkeypatch.setenv(SST2_ENV, "/data/sst2")
    assert find_sst2(None, clone) == "/data/sst2"
    assert find_sst2("given", clone) == "given"


def test_no_sst2_is_one_error_line_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(SST2_ENV, raising=False)
    monkeypatch.setattr(sst2, "REPO", tmp_path / "clone")
    monkeypatch.setattr(sst2, "_datasets_installed", lambda: False)
    for extra in ([], ["--data", str(tmp_path / "nowhere")]):
        assert main(["finetune", *extra, "--steps", "1", "--out", str(tmp_path / "ft")]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error: --data") and "Traceback" not in err
        assert not (tmp_path / "ft").exists()


def test_generated_sample_reads_like_sst2(tmp_path):
    pairs = sample_sentences(400, seed=3)
    assert pairs == sample_sentences(400, seed=3) != sample_sentences(400, seed=4)
    assert 0.35 < sum(y for _, y in pairs) / len(pairs) < 0.65  # both labels, roughly balanced
    write_sample(tmp_path, n_train=50, n_dev=20)
    train, dev = load_sst2(str(tmp_path), "train"), load_sst2(str(tmp_path), "dev")
    assert len(train) == 50 and len(dev) == 20 and train != dev[:20]


def test_hf_sst2_unreachable_is_one_clear_error(monkeypatch):
    """datasets installed but offline (or the hub down): the error says what to give instead."""
    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)\nmore detail")
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(SpecError, match=f"--data hf:glue/sst2: cannot load it .*Couldn't reach.*{SST2_ENV}=DIR") as err:
        load_sst2("hf:glue/sst2", "train")
    assert "\n" not in str(err.value)


def test_hf_dataset_records():
    records = [{"sentence": t, "label": y, "idx": i} for i, (t, y) in enumerate(ROWS)]  # what datasets yields
    assert from_records(records) == ROWS and from_records(records, limit=3) == ROWS[:3]
    with pytest.raises(SpecError, match="labelled"):
        from_records([{"sentence": "hidden", "label": -1}])


HEADINGS = ["# finetune: {model} on SST-2", "## Best per ratio (best over lr of the seed-mean final dev accuracy)",
            "## Figures"]


def headings(report: str) -> list[str]:
    """The report's headings, the model's path in the title replaced by {model}."""
    lines = [line for line in report.splitlines() if line.startswith("#")]
    return [lines[0].split(":")[0] + ": {model} on SST-2", *lines[1:]]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for t, _ in ROWS for w in t.split()} | {"great", "terrible"})
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    cfg = BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertForSequenceClassification(cfg).save_pretrained(d)
    return d


@pytest.mark.heavy(6)
def test_three_step_finetune_smoke(tmp_path, tiny_model_dir, capsys, monkeypatch):
    data = tmp_path / "sst2"
    data.mkdir()
    write(data / "train.tsv", ("label", "sentence"), ROWS)
    write(data / "dev.tsv", ("label", "content"), ROWS[:4])
    out = tmp_path / "ft"
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(data), "--ratios", "1,16",
            "--lrs", "1e-3,1.6e-2", "--steps", "3", "--seeds", "2", "--batch-size", "2", "--eval-every", "1",
            "--monitor-every", "1", "--rank", "2", "--no-bracket"]
    assert main(args + ["--out", str(out), "--executor", "local"]) == 0
    evals = pd.read_csv(out / "evals.csv")
    assert len(evals) == 2 * 2 * 2 * 4  # ratios x lrs x seeds x (steps 0..3)
    monitor = pd.read_csv(out / "monitor.csv")
    assert {"delta1", "delta2", "delta3"} <= set(monitor.metric) and set(monitor.step) == {0, 1, 2, 3}
    for name in ("report.md", "best_per_ratio.csv", "figures/accuracy_vs_ratio.png", "figures/curves.png",
                 "figures/steps_to_target.png", "figures/monitor.png"):
        assert (out / name).is_file(), name
    # the golden finetune report: its sections, and the best-per-ratio table is best_per_ratio.csv's
    report = (out / "report.md").read_text()
    assert headings(report) == HEADINGS
    best = pd.read_csv(out / "best_per_ratio.csv")
    assert sorted(best.ratio) == [1.0, 16.0] and set(best.best_lr) <= {1e-3, 1.6e-2}
    table = report.split(HEADINGS[1])[1].split("\n\n")[1].splitlines()
    assert [c.strip() for c in table[0].strip("|").split("|")] == list(best.columns) and len(table) == 2 + len(best)
    # one shard per (ratio, lr, seed): a rerun computes nothing, and inline gives the pool's bits
    first = (out / "evals.csv").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(finetune_report, "save_figure", lambda fig, stem: plt.close(fig))  # the tables are the point
    assert main(args + ["--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["resumed_shards"] == 8
    assert (out / "evals.csv").read_bytes() == first
    assert main(args + ["--out", str(tmp_path / "inline"), "--executor", "inline"]) == 0
    assert (tmp_path / "inline" / "evals.csv").read_bytes() == first


def test_run_shorter_than_the_monitor_interval_writes_its_report(tmp_path, tiny_model_dir, capsys):
    """--steps 3 with the default --monitor-every 10: the monitor measured step 1 only, whose
    deltas the summary leaves out; the report says so instead of the run dying after its shards."""
    data = tmp_path / "sst2"
    data.mkdir()
    write(data / "train.tsv", ("label", "sentence"), ROWS)
    write(data / "dev.tsv", ("label", "content"), ROWS[:4])
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(tiny_model_dir), "--data", str(data), "--ratios", "1,16", "--lrs", "1e-3",
                 "--steps", "3", "--seeds", "1", "--batch-size", "2", "--rank", "2", "--no-bracket",
                 "--executor", "inline", "--out", str(out)]) == 0
    monitor = pd.read_csv(out / "monitor.csv")
    assert set(monitor.query("metric == 'delta1'").step) == {1}
    tables = finetune.analyse(3, 10, pd.read_csv(out / "evals.csv"), monitor)
    assert tables.monitor_summary.empty and len(tables.notes) == 1  # nothing to draw, and a note saying why
    report = (out / "report.md").read_text()
    assert headings(report) == HEADINGS and tables.notes[0] in report and tables.notes[0] in capsys.readouterr().out
    assert not (out / "figures" / "monitor.png").exists() and (out / "figures" / "curves.png").is_file()


def test_bracketing_rule_and_steps_to_target():
    rows = []
    for lr, acc in ((1e-4, 0.6), (1e-3, 0.8), (1e-2, 0.7)):
        for seed in (0, 1):
            rows += [{"ratio": 1.0, "lr": lr, "seed": seed, "step": 0, "dev_acc": 0.5},
                     {"ratio": 1.0, "lr": lr, "seed": seed, "step": 5, "dev_acc": acc - 0.1},
                     {"ratio": 1.0, "lr": lr, "seed": seed, "step": 10, "dev_acc": acc}]
    rows += [{"ratio": 16.0, "lr": lr, "seed": 0, "step": 10, "dev_acc": acc} for lr, acc in ((1e-4, 0.9), (1e-3, 0.6))]
    best = best_lrs(pd.DataFrame(rows), 10).set_index("ratio")
    assert best.loc[1.0].best_lr == 1e-3 and best.loc[1.0].bracketed
    assert best.loc[16.0].best_lr == 1e-4 and not best.loc[16.0].bracketed  # at the low edge
    assert steps_to_target(pd.DataFrame(rows), 1.0, 1e-3, 0.7) == 5.0
    assert steps_to_target(pd.DataFrame(rows), 1.0, 1e-4, 0.9) != steps_to_target(pd.DataFrame(rows), 1.0, 1e-4, 0.9)


@pytest.mark.parametrize("kw,match", [({"lrs": (0.0,)}, "lrs"), ({"steps": 0}, "steps"), ({"targets": ()}, "targets"),
                                      ({"train_limit": -5}, "train-limit"), ({"alpha": float("nan")}, "alpha"),
                                      ({"alpha": 0.0}, "alpha")])
def test_bad_spec(kw, match):
    with pytest.raises(SpecError, match=match):
        FinetuneSpec(**kw)
