"""A watchdog that ends processes a driver started when the driver dies, however it dies (kill -9 too).

Ray's local cluster (GCS server, raylet, agents) runs in child processes of the driver that
``ray.init()`` started; they outlive a driver killed with SIGKILL. :func:`guard_children` starts one
small watcher process that holds the read end of a pipe whose write end only the driver holds: when the
driver ends, the kernel closes it, and the watcher terminates the processes it was given (SIGTERM, then
SIGKILL after a grace period), with their descendants (the raylet's agents). A driver that ends normally
first tells it to stand down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STAND_DOWN = b"done\n"
GRACE_S = 3.0

_WATCHER = r"""
import glob, os, select, signal, sys, time


def started(pid):
    # The process's start time (field 22 of /proc/PID/stat): tells it from a later one with its pid.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def tree(pid):
    # pid and its descendants (Ray's raylet starts agents of its own), from Linux's /proc.
    found = [pid]
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                found += [q for child in f.read().split() for q in tree(int(child))]
        except OSError:
            pass
    return found


known = {}  # pid -> start time, of every process seen in the guarded trees
roots = [int(p) for p in sys.argv[1:]]
message = b""
while True:
    # The guarded processes may die with the driver (Ray's fate sharing) and orphan their children
    # before this wakes, so the trees are remembered as they grow, once a second.
    for root in roots:
        for pid in tree(root):
            known.setdefault(pid, started(pid))
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready:
        chunk = os.read(sys.stdin.fileno(), 64)
        message += chunk
        if not chunk or message == DONE:
            break  # the driver stood down, or died (its end of the pipe closed)
if message != DONE:
    pids = [pid for pid, start in known.items() if start is not None and started(pid) == start]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + GRACE
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            if not [pid for pid in pids if started(pid) is not None]:
                sys.exit(0)
            time.sleep(0.1)
"""


def child_pids(pid: int | None = None) -> list[int]:
    """Direct children of process ``pid`` (default: this one), from Linux's ``/proc``; [] elsewhere."""
    pid = os.getpid() if pid is None else pid
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(children))


class Watchdog:
    """The watcher of some processes; :meth:`stand_down` when they have been ended normally."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def stand_down(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.write(STAND_DOWN)
                self.process.stdin.close()
            except OSError:
                pass
        self.process.wait(timeout=10)


def guard_children(pids: list[int]) -> Watchdog | None:
    """Start a watcher that ends ``pids`` if this process dies before :meth:`Watchdog.stand_down`."""
    if not pids:
        return None
    code = _WATCHER.replace("DONE", repr(STAND_DOWN)).replace("GRACE", repr(GRACE_S))
    process = subprocess.Popen(
        [sys.executable, "-c", code, *(str(p) for p in pids)],
        stdin=subprocess.PIPE,
        start_new_session=True,  # not in the driver's process group: a group kill must not take it too
        close_fds=True,
    )
    return Watchdog(process)
