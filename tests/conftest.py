"""Test-session settings: the suite's tensors are tiny, so one intra-op thread is both the
fastest choice (no thread-pool wake-ups, no contention with other processes) and removes
any thread-count dependence of floating-point reductions. The families' cache of pretrained
bases points at a fresh directory of this session: tests never read or fill the user's cache."""
import atexit
import os
import shutil
import tempfile

import torch

from studies.families.cache import CACHE_ENV

torch.set_num_threads(1)
os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="loraplus-test-bases-")
atexit.register(shutil.rmtree, os.environ[CACHE_ENV], ignore_errors=True)


def run_context(out, spec: dict | None = None):
    """A RunContext for tests: inline executor, no progress bars, a fresh store in ``out``."""
    from studies.run.context import RunContext, RunOptions
    return RunContext(RunOptions(out=out, device="cpu", executor="inline", progress=False), spec or {"study": "test"})
