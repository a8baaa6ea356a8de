"""scaling.rules: learning-rate scaling schemes eta = c (n / n0)^gamma."""
from __future__ import annotations

import math

import pytest

from scaling.rules import BUILTIN_SCHEMES, DEFAULT_CONSTANTS, DEFAULT_N0, Scheme, parse_scheme, split_schemes


def test_builtin_exponents():
    got = {name: (s.gA, s.gB) for name, s in BUILTIN_SCHEMES.items()}
    assert got == {"loraplus": (-1.0, 0.0), "lora-const": (0.0, 0.0),
                   "lora-sqrt": (-0.5, -0.5), "lora-inv": (-1.0, -1.0)}
    for name, s in BUILTIN_SCHEMES.items():
        assert parse_scheme(name) is s and parse_scheme(f"  {name} ") is s
        assert s.n0 == DEFAULT_N0 == 128


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_builtin_rates_coincide_at_n0_and_scale_with_width(optimizer):
    cA, cB = DEFAULT_CONSTANTS[optimizer]
    for s in BUILTIN_SCHEMES.values():
        assert s.rates(DEFAULT_N0, optimizer) == pytest.approx((cA, cB), rel=1e-15)
        for n in (32, 256, 2048):
            eta_a, eta_b = s.rates(n, optimizer)
            assert eta_a == pytest.approx(cA * (n / 128) ** s.gA, rel=1e-12)
            assert eta_b == pytest.approx(cB * (n / 128) ** s.gB, rel=1e-12)
    # loraplus: the ratio eta_B / eta_A grows linearly with the width
    lp = BUILTIN_SCHEMES["loraplus"]
    r1 = lp.rates(256, optimizer)[1] / lp.rates(256, optimizer)[0]
    r2 = lp.rates(1024, optimizer)[1] / lp.rates(1024, optimizer)[0]
    assert r2 / r1 == pytest.approx(4.0, rel=1e-12)


def test_default_constants():
    assert DEFAULT_CONSTANTS["adam"] == DEFAULT_CONSTANTS["adamw"] == (1e-2, 1e-2)
    assert DEFAULT_CONSTANTS["sgd"] == (0.05, 0.05)


def test_parse_custom_scheme():
    s = parse_scheme("gA=-1,gB=0,cA=0.5,cB=0.05")
    assert (s.gA, s.gB, s.cA, s.cB, s.n0) == (-1.0, 0.0, 0.5, 0.05, 128)
    assert s.name == "gA=-1,gB=0,cA=0.5,cB=0.05"
    for opt in ("sgd", "adam"):  # explicit constants override the optimiser's defaults
        assert s.rates(128, opt) == pytest.approx((0.5, 0.05), rel=1e-15)
    assert s.rates(512, "adam") == pytest.approx((0.5 / 4, 0.05), rel=1e-12)
    assert s.rates(64, "adam") == pytest.approx((1.0, 0.05), rel=1e-12)


def test_parse_custom_scheme_with_n0_spaces_and_defaults():
    s = parse_scheme(" gA = -0.5 , gB = 0.25 , n0 = 64 ")
    assert (s.gA, s.gB, s.cA, s.cB, s.n0) == (-0.5, 0.25, None, None, 64)
    eta_a, eta_b = s.rates(64 * 9, "sgd")
    assert eta_a == pytest.approx(0.05 / 3, rel=1e-12)
    assert eta_b == pytest.approx(0.05 * math.sqrt(3), rel=1e-12)
    assert s.rates(64, "adam") == pytest.approx((1e-2, 1e-2))


def test_scheme_rates_property():
    s = Scheme("x", gA=-1.0, gB=0.5, cA=2.0, cB=3.0, n0=100)
    for n in (10, 100, 1000, 12345):
        eta_a, eta_b = s.rates(n, "adam")
        assert eta_a == pytest.approx(2.0 * (n / 100) ** -1.0, rel=1e-12)
        assert eta_b == pytest.approx(3.0 * (n / 100) ** 0.5, rel=1e-12)


@pytest.mark.parametrize("text", [
    "", "lora-fast", "gA=-1", "gB=0", "gA=-1,gB", "gA=-1,gB=zero", "gA=-1,gB=0,lr=1",
    "gA=nan,gB=0", "gA=-1,gB=inf", "gA=-1,gB=0,cA=0", "gA=-1,gB=0,cB=-1", "gA=-1,gB=0,n0=0",
    "gA=-1,gB=0,n0=1.5", "gA=-1,,gB=0", "=1,gA=-1,gB=0",
])
def test_bad_scheme_strings_raise_one_line_value_errors(text):
    with pytest.raises(ValueError) as info:
        parse_scheme(text)
    assert "\n" not in str(info.value) and str(info.value)


def parse_schemes(text: str) -> list[Scheme]:
    """What --schemes does: split the list (split_schemes), then parse each (the spec's parse_scheme)."""
    return [parse_scheme(p) for p in split_schemes(text)]


def test_parse_schemes_lists():
    assert [s.name for s in parse_schemes("loraplus,lora-inv")] == ["loraplus", "lora-inv"]
    custom = parse_schemes("gA=-1,gB=0;gA=0,gB=0,cA=1e-3")
    assert [(s.gA, s.gB, s.cA) for s in custom] == [(-1.0, 0.0, None), (0.0, 0.0, 1e-3)]
    mixed = parse_schemes("loraplus;gA=-0.5,gB=-0.5")
    assert mixed[0] is BUILTIN_SCHEMES["loraplus"] and mixed[1].gA == -0.5
    for text in ("", ";", " , "):
        with pytest.raises(ValueError):
            parse_schemes(text)
    with pytest.raises(ValueError):
        parse_schemes("loraplus,nonsense")
