"""lr-laws: the learning-rate scaling laws measured and judged.

``config`` (slices, configurations, the catalogue), ``search`` (the edge search as shards),
``factory`` (the same on a factory's model), ``fig2`` (the paper's one-width grid under every
reading), ``analysis`` (edges, laws with verdicts, optima, profiles, transfer curves).
"""
