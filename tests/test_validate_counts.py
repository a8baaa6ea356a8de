"""validate's counting: checks with a prediction apart from the rows without one (tables, not prose)."""
import pandas as pd
import pytest
import torch

from studies.reports.validate import class_table, split_checks
from studies.validate import (NOT_PREDICTED_KINDS, STACK_CONTROL_SEEDS, SuiteSettings, reason_counts, stack_control_spec, store_spec,
                              suite_shards, verdict_counts)


def _rows(*spec) -> pd.DataFrame:
    """An exponents table from (scheme, verdict, reason_kind, count) tuples, one setting."""
    rows = [{"model": "mlp", "optimizer": "adam", "init": "1", "scheme": scheme, "classification": "efficient",
             "verdict": verdict, "reason_kind": kind}
            for scheme, verdict, kind, count in spec for _ in range(count)]
    return pd.DataFrame(rows)


TABLE = _rows(("loraplus", "PASS", "", 6), ("loraplus", "FAIL", "contradicted", 1),
              ("loraplus", "INCONCLUSIVE", "slopes still moving", 2),
              ("lora-const", "PASS", "", 3), ("lora-const", "INCONCLUSIVE", "after an unstable layer", 4),
              ("lora-const", "INCONCLUSIVE", "correction not separated", 1),
              ("lora-const", "INCONCLUSIVE", "SGD past its blow-up", 3))


def test_counts_take_the_verdicts_over_checks_with_a_prediction_and_count_the_rest_apart():
    c = verdict_counts(TABLE)
    assert (c["rows"], c["checks"], c["not_predicted"]) == (20, 13, 7)
    assert (c["PASS"], c["FAIL"], c["INCONCLUSIVE"]) == (9, 1, 3)
    assert c["inconclusive_share"] == pytest.approx(3 / 13)
    # the share over every row keeps the rows not predicted as the INCONCLUSIVE they are in exponents.csv
    assert (c["inconclusive_rows"], c["inconclusive_share_rows"]) == (10, pytest.approx(10 / 20))


def test_only_the_named_kinds_are_not_predicted():
    assert set(NOT_PREDICTED_KINDS) == {"after an unstable layer", "SGD past its blow-up"}
    checks, apart = split_checks(TABLE)
    assert set(apart.reason_kind) == set(NOT_PREDICTED_KINDS)
    assert len(checks) + len(apart) == len(TABLE)
    # a crossover or an unsettled slope is INCONCLUSIVE among the checks, never moved apart
    assert {"slopes still moving", "correction not separated", "contradicted"} <= set(checks.reason_kind)


def test_reason_counts_list_fails_first_then_kinds_by_size_and_the_not_predicted_last():
    r = reason_counts(TABLE)
    assert list(zip(r.predicted, r.reason_kind, r.rows)) == [
        (True, "contradicted", 1), (True, "slopes still moving", 2), (True, "correction not separated", 1),
        (False, "after an unstable layer", 4), (False, "SGD past its blow-up", 3)]
    assert r.rows.sum() == (TABLE.verdict != "PASS").sum()


def test_class_table_counts_pass_over_checks_and_names_the_rows_not_predicted():
    t = class_table(TABLE, style="text").set_index("setting")
    assert t.loc["mlp, Adam, Init[1]", "loraplus"] == "efficient: 6/9, 1 FAIL"
    assert t.loc["mlp, Adam, Init[1]", "lora-const"] == "efficient: 3/4, 7 n/p"


def test_an_empty_table_counts_nothing():
    c = verdict_counts(TABLE.iloc[:0])
    assert (c["rows"], c["checks"], c["PASS"]) == (0, 0, 0)


def test_the_stacking_control_runs_in_the_suites_mlp_shards_with_the_lora_inputs_detached():
    settings = SuiteSettings(widths={"toy": (64, 128), "linear": (32, 64), "mlp": (32, 64)},
                             seeds={"toy": 2, "linear": 2, "mlp": 3}, steps=3)
    spec = stack_control_spec(settings)
    assert (spec.model, spec.optimizer, spec.init, spec.schemes) == ("mlp", "adam", "1", ("loraplus",))
    assert spec.detach_lora_input and spec.widths == (32, 64) and spec.seeds == (0, 1, 2)
    many = SuiteSettings(widths=settings.widths, seeds={"toy": 2, "linear": 2, "mlp": STACK_CONTROL_SEEDS + 2},
                         steps=3)
    assert stack_control_spec(many).seeds == tuple(range(STACK_CONTROL_SEEDS))
    shards, parts = suite_shards(many, torch.device("cpu"))
    mlp = {sh.key: dict(sh.args[0]) for sh in shards if sh.key.startswith("mlp_")}
    assert len(mlp) == 2 * (STACK_CONTROL_SEEDS + 2) and parts["stackcontrol"] == ["stackcontrol"]
    # the control rides in the shards of its own seeds, beside the suite's mlp and the B0 control
    with_control = {key for key, group in mlp.items() if "stackcontrol" in group}
    assert with_control == {f"mlp_w{w}_s{s}" for w in (32, 64) for s in range(STACK_CONTROL_SEEDS)}
    assert all({"mlp_adam_init1", "mlp_adam_init2", "b0control"} <= set(group) for group in mlp.values())
    assert not any("stackcontrol" in dict(sh.args[0]) for sh in shards if not sh.key.startswith("mlp_"))
    # a store made before the control existed holds shards without it: its spec differs
    assert store_spec(settings)["controls"][-1] == f"stacking on {STACK_CONTROL_SEEDS} seeds"


def test_fewer_seeds_at_the_costly_widths_drop_only_those_shards():
    settings = SuiteSettings(widths={"toy": (64, 128), "linear": (32, 64), "mlp": (32, 64, 128)},
                             seeds={"toy": 2, "linear": 2, "mlp": 4}, steps=3, fewer_seeds={"mlp": {64: 3, 128: 1}})
    assert [settings.seeds_at("mlp", w) for w in (32, 64, 128)] == [4, 3, 1] and settings.seeds_at("toy", 128) == 2
    keys = {sh.key for sh in suite_shards(settings, torch.device("cpu"))[0]}
    assert {k for k in keys if k.startswith("mlp_")} == (
        {f"mlp_w32_s{s}" for s in range(4)} | {f"mlp_w64_s{s}" for s in range(3)} | {"mlp_w128_s0"})
    assert len(keys) == 8 + 2 * 2 + 2 * 2  # mlp, toy, linear
    assert store_spec(settings)["fewer_seeds"] == {"mlp": {64: 3, 128: 1}}  # a store of other seeds is refused
