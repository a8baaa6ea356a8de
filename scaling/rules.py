"""Learning-rate scaling schemes: eta = c * (n / n0) ** gamma, separately for A and B.

Built-in schemes (gA, gB): ``loraplus`` (-1, 0), ``lora-const`` (0, 0), ``lora-sqrt``
(-1/2, -1/2), ``lora-inv`` (-1, -1). Custom: a string such as
``gA=-1,gB=0,cA=0.5,cB=0.05,n0=128`` (exponents also as fractions: ``gA=-1/2``).

Default constants (used when cA / cB are not given): at the base width n0 = 128 every scheme
uses the same rates, so coordinate-check curves fan out from one point. They were chosen to
be stable and to move the model visibly within a few steps at n0 on every toy model:
Adam / AdamW cA = cB = 1e-2; SGD cA = cB = 0.05 (SGD rates are tied to the loss
normalisation: see scaling.theory).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_N0 = 128
DEFAULT_CONSTANTS = {"adam": (1e-2, 1e-2), "adamw": (1e-2, 1e-2), "sgd": (0.05, 0.05)}


@dataclass(frozen=True)
class Scheme:
    """A learning-rate scaling scheme; cA / cB None means the optimiser's default constant."""

    name: str
    gA: float
    gB: float
    cA: float | None = None
    cB: float | None = None
    n0: int = DEFAULT_N0

    def rates(self, width: int, optimizer: str) -> tuple[float, float]:
        """(eta_A, eta_B) at ``width`` for ``optimizer``."""
        dA, dB = DEFAULT_CONSTANTS[optimizer]
        cA = dA if self.cA is None else self.cA
        cB = dB if self.cB is None else self.cB
        ratio = width / self.n0
        return cA * ratio ** self.gA, cB * ratio ** self.gB


BUILTIN_SCHEMES = {
    "loraplus": Scheme("loraplus", -1.0, 0.0),
    "lora-const": Scheme("lora-const", 0.0, 0.0),
    "lora-sqrt": Scheme("lora-sqrt", -0.5, -0.5),
    "lora-inv": Scheme("lora-inv", -1.0, -1.0),
}



def parse_number(text: str) -> float:
    """A finite number written as a decimal or a fraction: '-1', '-0.5', '-1/2', '1e-3'
    (exponents are usually written as fractions); ValueError otherwise."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"not a finite number: {text!r}") from None
    return value


_KEYS = {"gA": parse_number, "gB": parse_number, "cA": float, "cB": float, "n0": int}


def parse_scheme(text: str) -> Scheme:
    """A built-in name or ``key=value,...`` with keys gA, gB (required), cA, cB, n0."""
    text = text.strip()
    if text in BUILTIN_SCHEMES:
        return BUILTIN_SCHEMES[text]
    if "=" not in text:
        raise ValueError(f"unknown scheme {text!r}; choose from {', '.join(BUILTIN_SCHEMES)} "
                         "or give 'gA=..,gB=..[,cA=..,cB=..,n0=..]'")
    fields: dict[str, float] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in _KEYS:
            raise ValueError(f"scheme {text!r}: unknown key {key!r}; allowed: {', '.join(_KEYS)}")
        try:
            fields[key] = _KEYS[key](value.strip())
        except ValueError:
            raise ValueError(f"scheme {text!r}: {key} must be a number, got {value.strip()!r}") from None
        if not math.isfinite(fields[key]):
            raise ValueError(f"scheme {text!r}: {key} must be finite")
    if "gA" not in fields or "gB" not in fields:
        raise ValueError(f"scheme {text!r}: both gA and gB are required")
    for key in ("cA", "cB", "n0"):
        if key in fields and fields[key] <= 0:
            raise ValueError(f"scheme {text!r}: {key} must be positive")
    return Scheme(text, **fields)


def split_schemes(text: str) -> list[str]:
    """Scheme strings separated by ';' (or ',' between built-in names), stripped."""
    parts = [p.strip() for p in (text.split(";") if ";" in text or "=" in text else text.split(",")) if p.strip()]
    if not parts:
        raise ValueError("no scheme given")
    return parts
