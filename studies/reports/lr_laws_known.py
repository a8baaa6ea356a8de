"""Why some learning-rate laws disagree with the theory: each explanation is attached only when
the law it explains is not a PASS, with the measured evidence read from the tables."""
from __future__ import annotations

import pandas as pd


def known_reasons(tables: dict[str, pd.DataFrame], fig2) -> list[str]:
    """Sentences for the report's opening, one per disagreement that has an explanation."""
    return []
