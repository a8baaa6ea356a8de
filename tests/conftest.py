"""Test-session settings: the suite's tensors are tiny, so one intra-op thread is both the
fastest choice (no thread-pool wake-ups, no contention with other processes) and removes
any thread-count dependence of floating-point reductions. That holds for numpy's and scipy's
BLAS too (OpenBLAS, whose idle threads spin): its thread count is read from the environment
when numpy is first imported, so it is set before any import below, and every process the
tests start (a pool's workers, the course's kernel, ``python -m studies``) inherits it. With
a BLAS thread per core in each pytest-xdist worker, the spinning threads took the other
worker's core: 251 s of CPU for the suite instead of 184 - 207 s (five runs). The families' cache of pretrained
bases points at a fresh directory of this session: tests never read or fill the user's cache.
``--executor auto`` means inline here (LORAPLUS_EXECUTOR): a process pool starts a fork server
that imports torch and the package again, seconds per test process for shards of milliseconds;
the pool itself is tested where it is the point (tests/test_shards.py, the finetune smoke test),
with ``--executor local``.

Tests marked ``heavy(seconds)`` run first, the longest first (``pytest_collection_modifyitems``):
pytest-xdist hands out tests in collection order, so a long test collected last could start when
the other worker is nearly done, and the run would wait for it alone."""
import os

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_threads] = "1"

import atexit  # noqa: E402  (after the thread settings, which numpy reads when first imported)
import shutil  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import replace  # noqa: E402
from functools import lru_cache  # noqa: E402

import torch  # noqa: E402

from studies.families.cache import CACHE_ENV  # noqa: E402
from studies.run.shards import EXECUTOR_ENV  # noqa: E402

torch.set_num_threads(1)
os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="loraplus-test-bases-")
atexit.register(shutil.rmtree, os.environ[CACHE_ENV], ignore_errors=True)
os.environ[EXECUTOR_ENV] = "inline"


def run_context(out, spec: dict | None = None):
    """A RunContext for tests: inline executor, no progress bars, a fresh store in ``out``."""
    from studies.run.context import RunContext, RunOptions
    return RunContext(RunOptions(out=out, device="cpu", executor="inline", progress=False), spec or {"study": "test"})


def small_corner():
    """validate's corner law (linear, Adam, Init[1], B and A edges) at three narrow widths and two
    seeds: the same search and analysis as ``validate.corner_config()``, in a fraction of the time."""
    from studies import validate
    return replace(validate.corner_config(), widths=(64, 128, 256), seeds=(0, 1), per_decade=2)


@lru_cache(maxsize=None)
def _phase_diagram(*args, **kwargs):
    from scaling.phase import phase_diagram
    return phase_diagram(*args, **kwargs, resolution=0.25)


def small_validate(monkeypatch, settings) -> None:
    """``validate --quick`` on ``settings`` (a validate.SuiteSettings) with the small corner law.
    The theory's phase diagrams (pure functions of optimizer, init and model, a few seconds each
    at their default resolution) are drawn on a coarse grid, once per test process; what they
    show is tested in tests/test_laws.py and tests/test_theory.py."""
    from studies import validate
    from studies.reports import validate as report
    corner = small_corner()
    monkeypatch.setattr(validate, "QUICK", settings)
    monkeypatch.setattr(validate, "corner_config", lambda: corner)
    monkeypatch.setattr(report, "corner_config", lambda: corner)
    monkeypatch.setattr(report, "phase_diagram", _phase_diagram)


def pytest_collection_modifyitems(config, items):
    """Heavy tests first, longest first; the others keep their order (a stable sort, the same in
    every xdist worker, as xdist requires)."""
    def cost(item):
        mark = item.get_closest_marker("heavy")
        return -mark.args[0] if mark else 0.0
    items.sort(key=cost)
