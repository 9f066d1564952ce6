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
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
time.sleep(0.2)
watchdog = guard_children(child_pids())
print(child.pid, flush=True)
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


def _start(mode: str) -> tuple[subprocess.Popen, int]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE, text=True)
    child = int(driver.stdout.readline())
    return driver, child


def test_children_end_when_the_driver_is_killed() -> None:
    driver, child = _start("killed")
    assert _alive(child)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_children_are_left_alone_after_standing_down() -> None:
    driver, child = _start("normal")
    try:
        assert driver.stdout.readline().strip() == "stood down"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(1.0)
        assert _alive(child)
    finally:
        os.kill(child, signal.SIGKILL)
