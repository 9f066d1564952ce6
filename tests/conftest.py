"""Shared by every test: no test leaks process-wide state into the next one."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tests that pin torch to one thread (bit-identical reruns) get the suite's setting back after."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
