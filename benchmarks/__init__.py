"""Speed benchmarks (``python benchmarks/bench_engine.py``)."""
