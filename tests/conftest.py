"""Test-session settings: the suite's tensors are tiny, so one intra-op thread is both the
fastest choice (no thread-pool wake-ups, no contention with other processes) and removes
any thread-count dependence of floating-point reductions."""
import torch

torch.set_num_threads(1)


def run_context(out, spec: dict | None = None):
    """A RunContext for tests: inline executor, no progress bars, a fresh store in ``out``."""
    from studies.run.context import RunContext, RunOptions
    return RunContext(RunOptions(out=out, device="cpu", executor="inline", progress=False), spec or {"study": "test"})
