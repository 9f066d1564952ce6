"""The engine's watchdog: processes a driver started (Ray's local cluster) end when the driver is
killed with SIGKILL, and are left alone when it ends normally."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

DRIVER = r"""
import subprocess, sys, time
from segany.engine.watchdog import child_pids, guard_children
# A child that starts a grandchild of its own (as Ray's raylet starts its agents).
child = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
grandchild = int(child.stdout.readline())
watchdog = guard_children(child_pids())
print(child.pid, grandchild, flush=True)
if sys.argv[1] == "normal":
    watchdog.stand_down()
    print("stood down", flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its (dead) parent counts as gone
        return f.read().split(") ")[1][0] != "Z"


def _start(mode: str) -> tuple[subprocess.Popen, list[int]]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE, text=True)
    return driver, [int(pid) for pid in driver.stdout.readline().split()]


def test_children_and_theirs_end_when_the_driver_is_killed() -> None:
    driver, started = _start("killed")
    assert all(_alive(pid) for pid in started)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in started)


def test_children_are_left_alone_after_standing_down() -> None:
    driver, started = _start("normal")
    try:
        assert driver.stdout.readline().strip() == "stood down"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(1.0)
        assert all(_alive(pid) for pid in started)
    finally:
        for pid in reversed(started):
            os.kill(pid, signal.SIGKILL)
