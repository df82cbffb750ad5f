"""pipeline.contain: results and exceptions come back, a crash or a hang costs one call, the child is reused
and restarted, and it does not outlive its caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.contain import Contained, Crashed, TimedOut
from pipeline.decode import DecodeError, decode_timeout, decode_video_ex

from videoutil import moving_square, write_video

REPO = Path(__file__).resolve().parents[1]


def frames(n: int) -> np.ndarray:  # module level: the child imports it by reference
    return np.arange(n * 4 * 5 * 3, dtype=np.uint8).reshape(n, 4, 5, 3)


def fail(msg: str) -> None:
    raise DecodeError("/x/y.avi", msg)


def die(sig: int) -> None:
    os.kill(os.getpid(), sig)


def sleep(s: float) -> int:
    time.sleep(s)
    return os.getpid()


def spawn_sleeper() -> int:
    """Start a grandchild (like ffmpeg) that would outlive a killed child if its group were not killed."""
    return subprocess.Popen(["sleep", "300"]).pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting to be reaped counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def box():
    c = Contained()
    yield c
    c.close()


def test_results_exceptions_crashes_and_timeouts(box):
    out = box.call(frames, 7)
    assert out.shape == (7, 4, 5, 3) and np.array_equal(out, frames(7)) and out.flags.writeable
    big = box.call(frames, 20000)  # 1.2 MB: through a memfd, not the pipe
    assert np.array_equal(big, frames(20000)) and big.flags.writeable
    big[0] = 0  # a private mapping: writable here
    assert box.call(sleep, 0) == box.call(sleep, 0)  # the same child serves every call
    with pytest.raises(DecodeError, match="y.avi: nope") as e:
        box.call(fail, "nope")
    assert e.value.reason == "nope"
    for sig in (signal.SIGSEGV, signal.SIGABRT):
        with pytest.raises(Crashed, match=f"decoder crashed \\(signal {int(sig)}, {sig.name}\\)") as e:
            box.call(die, sig)
        assert e.value.signal == sig
    t0 = time.time()
    with pytest.raises(TimedOut, match="decoder timed out after 0.5 s"):
        box.call(sleep, 60, timeout=0.5)
    assert time.time() - t0 < 10
    assert np.array_equal(box.call(frames, 2), frames(2)) and box.starts == 4  # restarted after each failure


def test_timeout_kills_grandchildren(box):
    grandchild = box.call(spawn_sleeper)
    assert alive(grandchild)
    with pytest.raises(TimedOut):
        box.call(sleep, 60, timeout=0.3)
    t0 = time.time()
    while alive(grandchild) and time.time() - t0 < 5:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_child_exits_when_the_caller_is_killed(tmp_path):
    code = (
        "import os, sys, time; sys.path.insert(0, sys.argv[1]); from pipeline.contain import Contained;"
        "c = Contained(); print(c.call(os.getpid), flush=True); c.call(time.sleep, 300)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", code, str(REPO)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    child = int(p.stdout.readline())
    assert alive(child)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t0 = time.time()
    while alive(child) and time.time() - t0 < 10:
        time.sleep(0.05)
    assert not alive(child)


def test_fault_hook_and_decode_timeout(tmp_path, monkeypatch):
    good = write_video(tmp_path / "good.avi", moving_square(5, 32, 40))
    bad = write_video(tmp_path / "bad.avi", moving_square(5, 32, 40))
    monkeypatch.setenv("ASYM3D_TEST_DECODE_FAULTS", "bad.avi=segv,other.avi=hang")
    box = Contained(preload=("faults.sitecustomize",))  # the test-only hook (tests/faults), in the child only
    try:
        assert len(box.call(decode_video_ex, good, (16, 20)).frames) == 5  # the child inherits the variable
        with pytest.raises(Crashed, match="signal 11"):
            box.call(decode_video_ex, bad, (16, 20))
    finally:
        box.close()
    assert decode_timeout(7.0, 25.0, 320, 240) == 30.0  # a UCF-101 clip: the floor
    assert decode_timeout(600.0, 30.0, 1920, 1080) == pytest.approx(18000 * 1920 * 1080 / 1e7, abs=0.1)
    assert decode_timeout(None, 25.0, 320, 240) == 600.0


def test_map_batch_attributes_crash_and_timeout_to_one_call(box):
    calls = [(3,), (4,), (5,), (6,)]
    out = box.map(frames, calls, [None] * 4)
    assert [o.shape[0] for o in out] == [3, 4, 5, 6] and box.starts == 1
    out = box.map(
        ident_or_fault, [("a",), ("segv",), ("b",), ("hang",), ("fail",), ("c",)], [5.0, 5.0, 5.0, 0.5, 5.0, 5.0]
    )
    assert out[0] == "a" and out[2] == "b" and out[5] == "c"
    assert isinstance(out[1], Crashed) and out[1].signal == signal.SIGSEGV
    assert isinstance(out[3], TimedOut) and isinstance(out[4], DecodeError)
    assert box.starts == 3  # restarted after the crash and after the timeout, the rest went to the new child


def ident_or_fault(x: str) -> str:
    if x == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == "hang":
        time.sleep(60)
    if x == "fail":
        fail("bad")
    return x
