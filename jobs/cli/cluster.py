"""Ray for the command-line stages: start a local instance or join a cluster, and run tasks a few at a time.

``start(address, workers)`` joins ``address`` (the caller's ``--address``, which defaults to ``RAY_ADDRESS``),
turning a refusal into one line that says how to fix it (token authentication), or starts a new local
instance of our own with ``workers`` CPUs, never one another process left running, and the watchdog that
takes it down with the driver (``jobs.cli.reaper``). ``session`` is the same as a context manager that
shuts Ray down at the end.

``bounded(ray, submit, items, limit)`` submits one task per item with at most ``limit`` in flight
(``ray.wait``), so the driver holds few ObjectRefs however many items there are, and yields (item, result)
as tasks finish; a task that failed for good yields its ``RayError`` as the result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from jobs.cli import checks, reaper

T = TypeVar("T")
START_ATTEMPTS = 3  # a local start that times out (a node gets 30 s to register) is tried again


def start(address: str | None = None, workers: int | None = None, *, arg: str = "--address"):
    """``ray`` after ``ray.init``: joined to ``address``, or a new local instance when it is None or empty."""
    import ray

    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ray.exceptions.AuthenticationError) as e:
            mode = os.environ.get("RAY_AUTH_MODE", "unset")
            raise checks.UsageError(
                f"{arg} {address}: the cluster refused the connection ({checks.one_line(e)}); clusters started "
                f"by `ray start --head` use token authentication: set RAY_AUTH_MODE=token (now {mode}) and give "
                f"the cluster's token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN), see README"
            ) from None
        return ray
    for attempt in range(1, START_ATTEMPTS + 1):
        try:  # "local": always a new instance of our own
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
            break
        except Exception as e:  # ray raises a plain Exception for a start that timed out
            if "timed out during startup" not in str(e) or attempt == START_ATTEMPTS:
                raise
            ray.shutdown()
    reaper.watch()  # the instance goes when this driver goes, even after kill -9
    return ray


@contextlib.contextmanager
def session(address: str | None = None, workers: int | None = None, *, arg: str = "--address"):
    """``start`` ... ``ray.shutdown()``."""
    ray = start(address, workers, arg=arg)
    try:
        yield ray
    finally:
        ray.shutdown()


def bounded(ray, submit: Callable[[T], Any], items: Iterable[T], limit: int) -> Iterator[tuple[T, Any]]:
    """(item, result) of ``submit(item)`` (an ObjectRef) for every item, in completion order, with at most
    ``limit`` tasks in flight; the result is the task's ``RayError`` when it failed for good."""
    pending: dict[Any, T] = {}
    todo = iter(items)
    end = object()
    nxt: Any = None
    while nxt is not end or pending:
        while len(pending) < limit and (nxt := next(todo, end)) is not end:
            pending[submit(nxt)] = nxt
        if not pending:
            break
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            item = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                result = e
            yield item, result


def error_line(e: BaseException) -> str:
    """A task's RayError as one line: its type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
