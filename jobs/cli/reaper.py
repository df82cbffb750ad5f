"""Take the local Ray cluster a CLI started down with it, even after ``kill -9`` of the driver.

``ray.init(address="local")`` starts gcs_server, raylet and helpers as children of the driver. On a normal
exit ``ray.shutdown()`` stops them. After SIGKILL of the driver, GCS and raylet follow within a second, but
Ray 2.60's dashboard and runtime-env agents outlive it by ~60 s (until their GCS reconnect timeout). So a
stage that starts a local cluster also starts ``watch()``: a small watchdog process, in its own session,
that records the driver's descendants every ``INTERVAL_S`` and, once the driver is gone, SIGKILLs the
recorded ones still alive (matched by PID *and* start time, so a reused PID is never hit), then exits.
It touches nothing but processes descended from the driver; connecting to a cluster (--address) starts
no watchdog. Linux only (reads /proc); elsewhere ``watch`` does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

INTERVAL_S = 0.5


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live, non-zombie process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of ``root``."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                children.setdefault(st[0], []).append((int(name), st[1]))
    out, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in out:
                out[pid] = start
                todo.append(pid)
    return out


def run(driver: int, driver_start: int) -> None:
    """Watchdog loop: remember the driver's descendants; when it dies, kill the ones still alive."""
    seen: dict[int, int] = {}
    me = os.getpid()
    while (st := _stat(driver)) is not None and st[1] == driver_start:
        seen.update(descendants(driver))
        seen.pop(me, None)
        time.sleep(INTERVAL_S)
    for _ in range(2):  # a second pass catches children forked while the first was killing
        for pid, start in list(seen.items()):
            st = _stat(pid)
            if st is not None and st[1] == start:
                seen.update({p: s for p, s in descendants(pid).items() if p != me})
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


_WATCHER: subprocess.Popen | None = None


def watch() -> subprocess.Popen | None:
    """Start the watchdog for this process, once (call right after starting a local cluster)."""
    global _WATCHER
    me = _stat(os.getpid()) if sys.platform.startswith("linux") else None
    if me is None:
        return None
    if _WATCHER is not None and _WATCHER.poll() is None:
        return _WATCHER
    code = "import sys; from jobs.cli.reaper import run; run(int(sys.argv[1]), int(sys.argv[2]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    _WATCHER = subprocess.Popen(
        [sys.executable, "-c", code, str(os.getpid()), str(me[1])],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return _WATCHER


if __name__ == "__main__":
    run(int(sys.argv[1]), int(sys.argv[2]))
