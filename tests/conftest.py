"""Test-session settings: the suite's tensors are tiny, so one intra-op thread is both the
fastest choice (no thread-pool wake-ups, no contention with other processes) and removes
any thread-count dependence of floating-point reductions."""
import torch

torch.set_num_threads(1)
