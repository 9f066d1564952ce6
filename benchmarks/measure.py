"""Measuring helpers shared by the benchmark scripts: best-of timing and peak resident memory."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import torch


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` wall-clock seconds of ``fn()`` (the best is the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def rss() -> int:
    """Resident memory of this process in bytes (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRss:
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20


class PeakCuda:
    """Peak CUDA memory allocated by PyTorch while the block runs, above what was allocated before."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> PeakCuda:
        torch.cuda.synchronize(self.device)
        self.base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.cuda.synchronize(self.device)
        self.peak = torch.cuda.max_memory_allocated(self.device)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20
