"""A watchdog that ends processes a driver started when the driver dies, however it dies (kill -9 too).

Ray's local cluster (GCS server, raylet, agents) runs in child processes of the driver that
``ray.init()`` started; they outlive a driver killed with SIGKILL. :func:`guard_children` starts one
small watcher process that holds the read end of a pipe whose write end only the driver holds: when the
driver ends, the kernel closes it, and the watcher terminates the processes it was given (SIGTERM, then
SIGKILL after a grace period). A driver that ends normally first tells it to stand down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STAND_DOWN = b"done\n"
GRACE_S = 3.0

_WATCHER = r"""
import os, signal, sys, time
pids = [int(p) for p in sys.argv[1:]]
message = sys.stdin.buffer.read()  # returns when the driver writes and closes, or dies
if message != DONE:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + GRACE
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            alive = []
            for pid in pids:
                try:
                    os.kill(pid, 0)
                    alive.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            if not alive:
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
