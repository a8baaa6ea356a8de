"""coord-check --factory: the README's example end to end, the Python API, and bad factories
(one ``error:`` line naming the factory, exit 2, nothing written)."""
from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from scaling.factory import FactoryError, Task, inspect_task, load_factory
from studies.cli import main



REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
EXAMPLE = str(EXAMPLES / "tiny_mlp_factory.py") + ":make"
SMALL = ["--widths", "32,64,128", "--seeds", "2", "--steps", "3", "--schemes", "loraplus,lora-const",
         "--executor", "inline", "--device", "cpu"]


def test_the_readme_example_runs_end_to_end_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["coord-check", "--factory", EXAMPLE, *SMALL, "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv", dtype={"init": str})
    assert set(results.width) == {32, 64, 128} and set(results.seed) == {0, 1}
    assert set(results.layer) == {"hidden1", "hidden2", "all"} and set(results.init) == {"1"}
    assert (results[results.layer == "hidden1"].upstream_lora == 0).all()
    assert (results[results.layer == "hidden2"].upstream_lora == 1).all()
    d1 = results[(results.metric == "delta1") & (results.step == 1)]
    assert len(d1) and (d1.value == 0).all()  # B = 0: A's first step cannot reach the output
    # the schemes meet at the narrowest width, then part as (n / 32)^gamma
    rates = results.drop_duplicates(["scheme", "width"]).set_index(["scheme", "width"])
    assert rates.loc[("loraplus", 32)].eta_a == rates.loc[("lora-const", 32)].eta_a == pytest.approx(1e-3)
    assert rates.loc[("loraplus", 128)].eta_a == pytest.approx(1e-3 / 4)
    exponents = pd.read_csv(out / "exponents.csv")
    assert set(exponents.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    step1 = exponents[(exponents.metric == "delta1") & (exponents.step == 1) & (exponents.layer == "hidden1")]
    assert len(step1) == 2 and (step1.verdict == "PASS").all()  # predicted exactly zero, measured exactly zero
    later = exponents[(exponents.layer == "hidden2") & (exponents.scheme == "lora-const")]
    assert (later.verdict == "INCONCLUSIVE").all()  # behind an unstable LoRA layer: no sharp prediction
    meta = json.loads((out / "meta.json").read_text())
    assert meta["training_paths"] == {"torch.func": 6} and meta["spec"]["factory"] == EXAMPLE
    # the golden factory-check report: the title, the layer map, the verdicts, the first sharp layer's checks
    report = (out / "report.md").read_text()
    assert [line for line in report.splitlines() if line.startswith("#")] == [
        f"# coord-check --factory {EXAMPLE}: hidden 32, 64, 128, 2 seeds", "## LoRA layers and their predictions",
        "## Verdicts", "## hidden1"]
    assert (out / "figures" / "coord_check.png").is_file()
    # a second run resumes every shard
    assert main(["coord-check", "--factory", EXAMPLE, *SMALL, "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["resumed_shards"] == 3


@pytest.mark.heavy(3)
def test_the_loop_path_writes_the_same_table(tmp_path, capsys):
    args = ["coord-check", "--factory", EXAMPLE, *SMALL, "--widths", "32,64"]
    assert main([*args, "--out", str(tmp_path / "f")]) == 0
    assert main([*args, "--out", str(tmp_path / "l"), "--train-path", "loop"]) == 0
    keys = ["scheme", "width", "seed", "step", "layer", "metric"]
    f = pd.read_csv(tmp_path / "f" / "results.csv").set_index(keys).value.sort_index()
    loop = pd.read_csv(tmp_path / "l" / "results.csv").set_index(keys).value.sort_index()
    assert f.index.equals(loop.index)
    assert ((f - loop).abs() <= 1e-4 * loop.abs() + 1e-9).all()  # float32: the same to rounding
    assert json.loads((tmp_path / "l" / "meta.json").read_text())["training_paths"] == {"loop (asked for)": 4}


def test_python_api_returns_the_tidy_table():
    from studies.api import coord_check, judge
    make = load_factory(EXAMPLE).make
    table = coord_check(make, widths=(32, 64, 128), seeds=2, steps=2)
    assert {"width", "scheme", "seed", "step", "layer", "metric", "value", "eta_a", "eta_b"} <= set(table.columns)
    verdicts = judge(table)
    assert len(verdicts) and set(verdicts.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}


def test_a_spec_file_names_the_factory(tmp_path, capsys):
    spec = tmp_path / "check.toml"
    spec.write_text(f'factory = "{EXAMPLE}"\nwidths = [32, 64]\nseeds = 2\nsteps = 2\nexecutor = "inline"\n'
                    'schemes = "loraplus"\n')
    assert main(["coord-check", "--spec", str(spec), "--out", str(tmp_path / "run")]) == 0
    assert set(pd.read_csv(tmp_path / "run" / "results.csv").width) == {32, 64}


def test_a_factory_loaded_from_a_file_travels_to_other_processes_by_reference():
    factory = load_factory(EXAMPLE)
    again = pickle.loads(pickle.dumps(factory))
    a, b = factory(32, 2, 0), again(32, 2, 0)
    assert torch.equal(a.model.hidden1.lora_A, b.model.hidden1.lora_A)


def test_the_layer_map_and_init_are_read_from_the_model():
    shape = inspect_task(load_factory(EXAMPLE)(32, 2, 0))
    assert shape.layers == ["hidden1", "hidden2"] and shape.init == "1"
    assert shape.upstream == {"hidden1": [], "hidden2": ["hidden1"]}


# -- bad factories ---------------------------------------------------------------------------------
FACTORIES = {
    "broken.py": "import torch\nthis is not python\n",
    "raises.py": "raise RuntimeError('no GPU here')\n",
    "signature.py": "def make(width):\n    return None\n",
    "no_lora.py": textwrap.dedent("""
        import torch
        def make(width, rank, seed):
            model = torch.nn.Linear(width, 1)
            x = torch.randn(4, width)
            return model, x, lambda m, b: m(b).pow(2).mean()
        """),
    "picky.py": textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from tiny_mlp_factory import make as tiny
        def make(width, rank, seed):
            if width %% 48:
                raise ValueError(f"width must be a multiple of 48, got {width}")
            return tiny(width, rank, seed)
        """ % str(REPO / "docs" / "examples")),
    "not_a_task.py": "def make(width, rank, seed):\n    return 'a model'\n",
    "nan_loss.py": textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from tiny_mlp_factory import make as tiny
        def make(width, rank, seed):
            task = tiny(width, rank, seed)
            task.loss_fn = lambda m, b: m(b[0]).sum() * float('nan')
            return task
        """ % str(REPO / "docs" / "examples")),
}

BAD = {
    "does not import (syntax)": ("broken.py:make", "importing"),
    "does not import (raises)": ("raises.py:make", "no GPU here"),
    "no such file": ("missing.py:make", "no such file"),
    "no such module": ("no_such_package.factories:make", "cannot import no_such_package"),
    "no such attribute": ("signature.py:build", "has no attribute 'build'"),
    "wrong signature": ("signature.py:make", "cannot be called as make(width, rank, seed)"),
    "no LoRA layers": ("no_lora.py:make", "no LoRA layer"),
    "width rejected": ("picky.py:make", "rejects width 64"),
    "not a task": ("not_a_task.py:make", "returned str"),
    "loss not finite": ("nan_loss.py:make", "finite scalar"),
    "no colon": ("picky.py", "expected MODULE:NAME"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_factory_is_one_error_line_naming_it_and_nothing_is_written(case, tmp_path, capsys, monkeypatch):
    for name, source in FACTORIES.items():
        (tmp_path / name).write_text(source)
    monkeypatch.chdir(tmp_path)
    ref, expected = BAD[case]
    out = tmp_path / "out"
    code = main(["coord-check", "--factory", ref, "--widths", "48,64", "--seeds", "1", "--steps", "1",
                 "--executor", "inline", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert ref.split(":")[0] in lines[0] and expected in lines[0], lines[0]
    assert not out.exists()


def test_toy_model_options_are_refused_with_a_factory(tmp_path, capsys):
    code = main(["coord-check", "--factory", EXAMPLE, "--depth", "3", "--out", str(tmp_path / "out")])
    assert code == 2 and "--depth is an option of the built-in toy models" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_as_task_refuses_what_is_not_a_model():
    from scaling.factory import as_task
    with pytest.raises(FactoryError, match="not an nn.Module"):
        as_task(("model", None))
    assert isinstance(as_task((torch.nn.Linear(2, 2), torch.zeros(1, 2))), Task)


def test_the_example_factories_map_their_stacked_lora_layers():
    """The pre-LayerNorm block (LoRA on query, value, fc1) and the conv net (LoRA on two
    stacked convolutions, which the monitor does not measure but lr-laws trains): every LoRA
    layer is found, the chains of LoRA layers feeding each other are two long, and Init[2]
    reaches the convolutions' factors too."""
    pytest.importorskip("peft")
    from scaling.factory import inspect_task, load_factory
    from scaling.monitor import all_lora_weights
    from studies.families.pretrain import apply_init

    block = inspect_task(load_factory(str(EXAMPLES / "prenorm_block_factory.py") + ":make")(32, 2, 0))
    assert [n.rsplit(".", 1)[-1] for n in block.layers] == ["query", "value", "fc1"] and block.chain == 2
    assert [n.rsplit(".", 1)[-1] for n in block.upstream[block.layers[2]]] == ["query", "value"]
    conv = load_factory(str(EXAMPLES / "conv_factory.py") + ":make")(16, 2, 0)
    shape = inspect_task(conv)
    assert shape.layers == [] and len(shape.skipped) == 2 and shape.init == "1" and shape.chain == 2
    torch.manual_seed(0)
    apply_init(conv.model, "2")
    assert all(not A.any() and B.any() for A, B in all_lora_weights(conv.model).values())
    assert inspect_task(conv).init == "2"
