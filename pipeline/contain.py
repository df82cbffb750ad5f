"""Run a function in a reusable child process, so that a native crash or a hang costs one call, not the caller.

Native decoders (decord/FFmpeg) can segfault, abort or hang on pathological files; run in-process, that kills
or blocks the whole Ray task (and every other video of it). ``Contained`` keeps one long-lived child per
calling process and sends it calls through a pipe:

    c = Contained()                        # the child starts on the first call
    c.call(fn, *args, timeout=30.0)        # fn's result, or fn's exception re-raised here, or
                                           #   Crashed (the child died: signal / exit status) or
                                           #   TimedOut (no answer within `timeout` s: the child is killed)
    c.map(fn, [args1, args2], [t1, t2])    # a batch in one hand-over: per call a result or an exception
                                           #   instance; after a crash / timeout the rest go to a new child

Contract:
- ``fn`` and its arguments/result must be picklable (``fn`` by reference: a module-level function).
  Results go back with pickle protocol 5 and out-of-band buffers: a numpy array's bytes are not pickled;
  a large one (>= SHM_MIN_BYTES) is copied once into an anonymous memory file (memfd) whose descriptor is
  passed over the socket and mapped by the caller as the array's memory, a small one goes through the pipe.
- After Crashed or TimedOut the child is gone (killed with its whole process group, so a hung ``ffmpeg``
  grandchild goes too); the next call starts a new one. Other calls are unaffected.
- The child runs in its own session and exits when the caller dies (it watches a pipe the caller holds),
  so a killed Ray worker leaves no orphan decoding forever.
- Children come from the ``forkserver`` start method (``spawn`` where that is missing): forking a process
  that runs threads (a Ray worker does) is unsafe; the fork server is a fresh single-threaded interpreter,
  and each restart after a crash is a cheap fork of it. A new child imports ``fn``'s module (and any
  ``preload`` modules) and reports ready before the first call is sent, so imports never count against a
  call's ``timeout`` (StartupError if it cannot start at all).

``map_contained(fn, ...)`` uses one ``Contained`` per process (``shared()``); ``contained=False`` runs ``fn``
in-process (what the benchmarks compare against). This module imports nothing of the project.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import mmap
import multiprocessing as mp
import os
import pickle
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from multiprocessing import reduction
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

KILL_GRACE_S = 5.0  # after SIGKILL, how long to wait for the child to be reaped
STARTUP_TIMEOUT_S = 300.0  # a new child imports its preload modules; not counted in any call's timeout


class ContainedFailure(RuntimeError):
    """The contained call did not return: see Crashed and TimedOut. ``reason`` is a short phrase."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StartupError(RuntimeError):
    """A new child did not come up (import error, or not ready within STARTUP_TIMEOUT_S): not a call's fault."""


class Crashed(ContainedFailure):
    """The child died during the call: killed by ``signal`` (SIGSEGV, SIGABRT, ...) or exited with ``exitcode``."""

    def __init__(self, exitcode: int | None):
        self.exitcode = exitcode
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        if self.signal:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = "unknown"
            reason = f"decoder crashed (signal {self.signal}, {name})"
        else:
            reason = f"decoder crashed (exit status {exitcode})"
        super().__init__(reason)


class TimedOut(ContainedFailure):
    """No answer within ``timeout`` seconds; the child was killed."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        super().__init__(f"decoder timed out after {timeout:g} s")


# ------------------------------------------------------------------------------------------ wire format
SHM_MIN_BYTES = 256 * 1024  # larger buffers travel as a memfd (one copy, one message), smaller through the pipe


def _sock(conn) -> socket.socket:
    """A socket object over the connection's socketpair end (for passing file descriptors)."""
    return socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)


def _send(conn, obj: Any) -> None:
    """pickle-5 header, then each out-of-band buffer (e.g. an ndarray's bytes): a small one as a message,
    a large one copied once into an anonymous memory file whose descriptor is passed over the socket, so a
    frame array needs no chain of 64 KiB pipe hand-overs (each a wait for the scheduler on a busy machine)."""
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    raws = [b.raw() for b in bufs]
    shm = hasattr(os, "memfd_create")
    conn.send_bytes(pickle.dumps((head, [r.nbytes for r in raws], shm), protocol=5))
    for r in raws:
        if shm and r.nbytes >= SHM_MIN_BYTES:
            fd = os.memfd_create("asym3d-contain", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, r.nbytes)
                with mmap.mmap(fd, r.nbytes) as m:
                    m[:] = r
                with _sock(conn) as sk:
                    reduction.sendfds(sk, [fd])
            finally:
                os.close(fd)
        else:
            conn.send_bytes(r)


def _recv(conn) -> Any:
    head, sizes, shm = pickle.loads(conn.recv_bytes())
    bufs: list[Any] = []
    for n in sizes:
        if shm and n >= SHM_MIN_BYTES:
            with _sock(conn) as sk:
                (fd,) = reduction.recvfds(sk, 1)
            try:  # private writable mapping: the array owns it, writes never reach the sender
                bufs.append(mmap.mmap(fd, n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE))
            finally:
                os.close(fd)
        else:
            buf = np.empty(n, np.uint8)  # uninitialised: filled by the pipe read, no zeroing pass
            conn.recv_bytes_into(buf)
            bufs.append(buf)
    return pickle.loads(head, buffers=bufs)


# ------------------------------------------------------------------------------------------------ child
def _watch_caller(alive) -> None:
    """Exit at once when the caller is gone (its end of ``alive`` closes)."""
    try:
        alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(0)


def _child(conn, alive, env: dict[str, str], preload: tuple[str, ...]) -> None:
    os.environ.clear()  # the caller's environment at start, not the (older) one of the fork server
    os.environ.update(env)
    os.setsid()  # own process group: a timeout kills our subprocesses (ffmpeg) with us
    threading.Thread(target=_watch_caller, args=(alive,), daemon=True).start()
    try:  # imports before "ready", so that they never count against a call's time limit
        for name in preload:
            importlib.import_module(name)
    except Exception as e:  # noqa: BLE001
        _send(conn, ("err", f"{type(e).__name__}: {e}"))
        os._exit(1)
    _send(conn, ("ready", None))
    while True:
        try:
            fn, calls = _recv(conn)  # a batch: [(args, kwargs), ...], one answer per call, in order
        except (EOFError, OSError):
            os._exit(0)
        for args, kwargs in calls:
            try:
                out = ("ok", fn(*args, **kwargs))
            except Exception as e:  # noqa: BLE001  any Python-level failure goes back to the caller
                out = ("err", e)
            try:
                _send(conn, out)
            except (pickle.PicklingError, TypeError, AttributeError) as e:  # unpicklable exception or result
                _send(conn, ("err", RuntimeError(f"{type(out[1]).__name__}: {out[1]} (not picklable: {e})")))


def _context(preload: tuple[str, ...] = ()) -> ForkServerContext | SpawnContext:
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver") if "forkserver" in methods else mp.get_context("spawn")
    if preload and ctx.get_start_method() == "forkserver":
        # modules the fork server imports once (effective only before it starts): each child, first or a
        # restart after a crash, is then a fork with them already loaded
        ctx.set_forkserver_preload(list(preload))
    return ctx


@contextlib.contextmanager
def _main_hidden():
    """multiprocessing re-runs the caller's ``__main__`` in every new child (spawn's "prepare"); in a Ray
    worker that is Ray's worker module, which imports all of ray, about a second per child start on a
    loaded machine, and the child never needs it. Show it an empty ``__main__`` while the child starts
    (functions defined in ``__main__`` therefore cannot be sent; use a module-level function)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class Contained:
    """One reusable child process; see the module docstring. Calls from several threads run one at a time."""

    def __init__(self, preload: tuple[str, ...] = ()):
        self.preload = tuple(preload)  # modules each child imports before its first call
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.alive: Connection | None = None
        self.starts = 0  # children started so far (1 + restarts after crashes / timeouts)
        self.lock = threading.Lock()

    def _start(self, extra: tuple[str, ...] = ()) -> None:
        ctx = _context(self.preload)
        parent, child = ctx.Pipe(duplex=True)
        alive_r, alive_w = ctx.Pipe(duplex=False)
        preload = tuple(dict.fromkeys(self.preload + extra))
        proc = ctx.Process(
            target=_child, args=(child, alive_r, dict(os.environ), preload), daemon=True, name="asym3d-contained"
        )
        with _main_hidden():
            proc.start()
        child.close()
        alive_r.close()
        self.proc, self.conn, self.alive = proc, parent, alive_w
        self.starts += 1
        try:
            status, value = _recv(self.conn) if self.conn.poll(STARTUP_TIMEOUT_S) else ("err", "not ready in time")
        except (EOFError, OSError):
            status, value = "err", f"exited with status {proc.exitcode}"
        if status != "ready":
            self._kill()
            raise StartupError(f"contained child process did not start: {value}")

    def _kill(self) -> int | None:
        """Kill the child's process group (it leads its own session), reap it, return its exit code."""
        proc, self.proc = self.proc, None
        for c in (self.conn, self.alive):
            if c is not None:
                c.close()
        self.conn = self.alive = None
        if proc is None:
            return None
        if proc.exitcode is None:
            try:
                os.killpg(cast(int, proc.pid), signal.SIGKILL)  # started: it has a pid
            except (ProcessLookupError, PermissionError):  # not (yet) a group leader: kill it alone
                proc.kill()
        proc.join(KILL_GRACE_S)
        return proc.exitcode

    def _reap(self) -> int | None:
        """The child closed the pipe: wait for its exit code (kill it if it lingers), clean up its group."""
        proc = self.proc
        if proc is not None:
            proc.join(KILL_GRACE_S)
        code = proc.exitcode if proc is not None else None
        self._kill()  # also takes down anything left in its process group
        return code

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) in the child. Raises fn's exception, Crashed or TimedOut (see module doc)."""
        (out,) = self.map(fn, [args], [timeout], [kwargs])
        if isinstance(out, BaseException):
            raise out
        return out

    def map(
        self,
        fn: Callable[..., Any],
        arg_list: list[tuple],
        timeouts: list[float | None],
        kwarg_list: list[dict] | None = None,
    ) -> list[Any]:
        """fn(*args) for each args in the child, sent as one batch (one hand-over to the child, which then
        answers each call as it finishes it): per call its result, or the exception instance it raised, or
        Crashed / TimedOut for the call in progress when the child died or its ``timeouts[i]`` ran out
        (counted from the previous answer); the remaining calls then go to a new child."""
        kwarg_list = kwarg_list or [{}] * len(arg_list)
        calls = list(zip(arg_list, kwarg_list))
        mod = (getattr(fn, "__module__", None) or "builtins",)
        out: list[Any] = []
        with self.lock:
            while len(out) < len(calls):
                self._send_batch(fn, calls[len(out) :], mod)
                conn = cast("Connection", self.conn)  # _send_batch left a started child
                while len(out) < len(calls):
                    limit = timeouts[len(out)]
                    if not conn.poll(limit):
                        self._kill()
                        out.append(TimedOut(cast(float, limit)))  # poll(None) never returns False
                        break
                    try:
                        status, value = _recv(conn)
                    except (EOFError, OSError):
                        out.append(Crashed(self._reap()))
                        break
                    out.append(value)
        return out

    def _send_batch(self, fn: Callable[..., Any], calls: list, mod: tuple[str, ...]) -> None:
        if self.proc is None or not self.proc.is_alive():
            if self.proc is not None:
                self._kill()
            self._start(mod)
        try:
            _send(self.conn, (fn, calls))
        except (BrokenPipeError, ConnectionResetError):  # died between calls: not this call's fault, retry once
            self._kill()
            self._start(mod)
            _send(self.conn, (fn, calls))

    def close(self) -> None:
        """Stop the child (it exits on EOF); the next call starts a new one."""
        if self.proc is not None:
            self._kill()


_SHARED: Contained | None = None


def shared(preload: tuple[str, ...] = ()) -> Contained:
    """This process's Contained (created on first use, closed at exit); ``preload`` adds modules that its
    children import before their first call (e.g. the decoder library, so its import is not timed)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Contained(("numpy",))
        atexit.register(_SHARED.close)
    _SHARED.preload = tuple(dict.fromkeys(_SHARED.preload + tuple(preload)))
    return _SHARED


def map_contained(
    fn: Callable[..., Any],
    arg_list: list[tuple],
    timeouts: list[float | None],
    contained: bool = True,
    preload: tuple[str, ...] = (),
) -> list[Any]:
    """Contained.map in this process's child (in-process, same result convention, if not ``contained``)."""
    if contained:
        return shared(preload).map(fn, arg_list, timeouts)
    out = []
    for args in arg_list:
        try:
            out.append(fn(*args))
        except Exception as e:  # noqa: BLE001  returned like the contained child's exceptions
            out.append(e)
    return out
