"""Flow as a service for the pipelined extraction (``jobs.extract --mode pipelined``).

Shard tasks (CPU) decode, sample, make the flow images / RGBF and write their shard exactly as in the
per-shard mode (``manifests.extraction.build_shard``); only the Brox solves move to a pool of flow actors, one
per GPU (or, on a cluster without GPUs, one per CPU core):

* ``FlowBatcher`` (asyncio, no Ray) gathers the requests of many callers into batches of up to the flow
  stage's batch size, waiting at most ``max_wait_s`` for a batch to fill, and solves one batch at a time in
  a worker thread while new requests keep arriving: a GPU batch holds pairs of several videos.
* ``FlowActor`` is the Ray actor around it (async methods: ``solve``, ``stats``, ``ping``).
* ``RemoteFlow`` is what a shard task holds instead of ``BroxFlow``: the same call (frames -> flow) plus
  ``submit`` / ``result``, so ``WindowFlow`` keeps ``in_flight`` requests outstanding per task (a bounded
  queue: a slow flow pool back-pressures decoding, and the object store holds at most tasks x in_flight
  requests).

Faults: actors are created with ``max_restarts=-1, max_task_retries=-1``, so a killed flow worker is
restarted and its pending requests are sent again (a pair's flow is a pure function of the pair). An actor
that cannot come back (its node is gone and no other node has room for it) would leave its callers waiting:
``RemoteFlow.result`` pings the actor whenever a request takes longer than ``stall_s`` (``STALL_S``,
30 s) and, when the ping does not return in time either, sends the request to the
next actor of the pool; the worker process then skips that actor for ``DOWN_S`` seconds.

A pair's flow does not depend on the other pairs of its batch, bit for bit (``BroxFlow.solve_sequences``;
tested on CPU with batches of 1, 2 and 3, ``jobs.bench.flow --device cuda`` checks CUDA), so the shards equal
those of the per-shard mode byte for byte on CPU, also when the last one-pair requests of two videos share a
batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipeline.flow import BroxParams

STALL_S = 30.0  # seconds before a slow request's actor is pinged
LOAD_S = 1.0  # seconds to wait for the actors' loads before sending a request
DOWN_S = 60.0  # an actor that failed a ping is skipped by this process's requests for this long
_DOWN: dict[tuple[str, int], float] = {}  # (pool token, actor index) -> monotonic time it is skipped until


class FlowBatcher:
    """Gathers frame sequences from concurrent callers into batches for one solver.

    ``solve_many([frames (T_i, H, W, 3) uint8]) -> [flow (T_i - 1, H, W, 2)]`` runs in one worker thread, one
    batch at a time. ``batch_pairs(h, w)``: pairs per batch at that frame size; a batch is closed when it
    holds that many pairs or ``max_wait_s`` after its first request arrived, whichever comes first (a
    request is never split; a batch holds at least one). ``check(frames)`` raises ValueError for a bad
    request before it joins a batch, so one bad request never fails the others."""

    def __init__(
        self,
        solve_many: Callable[[list[np.ndarray]], list[np.ndarray]],
        batch_pairs: Callable[[int, int], int],
        max_wait_s: float = 0.005,
        check: Callable[[np.ndarray], None] | None = None,
    ):
        self.solve_many, self.batch_pairs, self.max_wait_s, self.check = solve_many, batch_pairs, max_wait_s, check
        self.queue: list[tuple[np.ndarray, asyncio.Future]] = []
        self.solving = 0  # pairs of the batch being solved
        self.arrived: asyncio.Event | None = None
        self.runner: asyncio.Task | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flow")
        self.counts = {
            "requests": 0,
            "pairs": 0,
            "batches": 0,
            "max_requests_per_batch": 0,
            "max_pairs_per_batch": 0,
            "busy_s": 0.0,
            "errors": 0,
        }
        self.t0 = time.monotonic()

    async def submit(self, frames: np.ndarray) -> np.ndarray:
        if self.check is not None:
            self.check(frames)
        loop = asyncio.get_running_loop()
        if self.runner is None:
            self.arrived = asyncio.Event()
            self.runner = loop.create_task(self._run())
        fut = loop.create_future()
        self.queue.append((frames, fut))
        self.arrived.set()
        return await fut

    def _pairs(self, frames: np.ndarray) -> int:
        return max(len(frames) - 1, 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            if not self.queue:
                continue
            h, w = self.queue[0][0].shape[1:3]
            want = max(1, self.batch_pairs(h, w))
            deadline = loop.time() + self.max_wait_s
            while sum(self._pairs(f) for f, _ in self.queue) < want and loop.time() < deadline:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    break
            batch, n = [], 0
            while self.queue and (not batch or n + self._pairs(self.queue[0][0]) <= want):
                item = self.queue.pop(0)
                batch.append(item)
                n += self._pairs(item[0])
            t = time.monotonic()
            self.solving = n
            try:
                flows = await loop.run_in_executor(self.pool, self.solve_many, [f for f, _ in batch])
            except Exception as e:  # noqa: BLE001  the batch's callers get the error
                self.counts["errors"] += 1
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
            else:
                for (_, fut), flow in zip(batch, flows):
                    if not fut.done():
                        fut.set_result(flow)
            self.solving = 0
            c = self.counts
            c["busy_s"] += time.monotonic() - t
            c["requests"] += len(batch)
            c["pairs"] += n
            c["batches"] += 1
            c["max_requests_per_batch"] = max(c["max_requests_per_batch"], len(batch))
            c["max_pairs_per_batch"] = max(c["max_pairs_per_batch"], n)
            if self.queue:
                self.arrived.set()

    def queued_pairs(self) -> int:
        """Pairs waiting or being solved: what a caller choosing the least loaded actor compares."""
        return sum(self._pairs(f) for f, _ in self.queue) + self.solving

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "busy_s": round(self.counts["busy_s"], 3),
            "alive_s": round(time.monotonic() - self.t0, 3),
            "pid": os.getpid(),
        }


class FlowActor:
    """One flow worker (a Ray actor; ``start_pool`` wraps it with ``ray.remote``): a ``BroxFlow`` on
    ``device`` behind a ``FlowBatcher``. Like a streaming shard worker, it pins glibc's mmap threshold at one
    chunk of the frames it is sent (``bound_heap``, on the first request of each frame size): the frames and
    flow of a request are then mapped and unmapped, not carved from a heap whose extent creeps up with the
    number of requests served."""

    def __init__(
        self,
        params: BroxParams,
        device: str,
        max_batch: int | None = None,
        max_wait_s: float = 0.005,
        threads: int | None = None,
    ):
        import torch

        from pipeline.flow import BroxFlow, check_frames

        if threads:
            torch.set_num_threads(threads)
        self.flow = BroxFlow(params, device=device, max_batch=max_batch)
        self.batcher = FlowBatcher(self.flow.solve_sequences, self.flow.batch_size, max_wait_s, check_frames)
        self.heap_bound_for: tuple[int, int] | None = None

    async def solve(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim == 4 and frames.shape[1:3] != self.heap_bound_for:
            from manifests.extraction.shard import bound_heap

            self.heap_bound_for = (int(frames.shape[1]), int(frames.shape[2]))
            bound_heap(*self.heap_bound_for)
        return await self.batcher.submit(frames)

    async def stats(self) -> dict[str, Any]:
        return self.batcher.stats()

    async def ping(self) -> int:
        return os.getpid()

    async def load(self) -> int:
        return self.batcher.queued_pairs()


def start_pool(
    ray,
    n: int,
    actor_opts: dict[str, Any],
    params: BroxParams,
    device: str,
    max_batch: int | None = None,
    max_wait_s: float = 0.005,
) -> list:
    """``n`` flow actors with ``actor_opts`` (num_cpus / num_gpus), restarted after a crash with their
    pending requests sent again. Returns their handles (the pool lives until ``stop_pool`` or the driver's
    exit)."""
    cls = ray.remote(FlowActor).options(**actor_opts, max_restarts=-1, max_task_retries=-1, max_concurrency=1000)
    threads = max(1, int(actor_opts.get("num_cpus", 1) or 1))
    return [cls.remote(params, device, max_batch, max_wait_s, threads) for _ in range(n)]


def _answers_within(ray, refs: list, timeout: float) -> list:
    """The values of ``refs`` that arrive within ``timeout`` s; None for one that does not, or whose actor
    failed (an actor that is down, restarting or waiting for room)."""
    ready = set(ray.wait(refs, num_returns=len(refs), timeout=timeout)[0])
    out = []
    for r in refs:
        try:
            out.append(ray.get(r) if r in ready else None)
        except ray.exceptions.RayError:
            out.append(None)
    return out


def pool_stats(ray, actors: Sequence, timeout: float = 10.0) -> list[dict[str, Any] | None]:
    """Each actor's counters (None for one that did not answer in ``timeout`` s)."""
    return _answers_within(ray, [a.stats.remote() for a in actors], timeout)


def stop_pool(ray, actors: Sequence) -> None:
    for a in actors:
        try:
            ray.kill(a, no_restart=True)
        except Exception:  # noqa: BLE001  already gone
            pass


class RemoteFlow:
    """A shard task's flow stage in the pipelined mode: ``BroxFlow``'s call plus ``submit`` / ``result``.

    Each request goes to the actor with the fewest queued pairs (``FlowActor.load``), ties broken in turn
    from ``start`` (the shard's index, so shards spread over the pool). ``max_batch`` is the batch that
    ``WindowFlow`` groups pairs by (as with a local ``BroxFlow``); ``in_flight`` how many requests
    ``WindowFlow`` keeps outstanding."""

    def __init__(
        self,
        actors: Sequence,
        max_batch: int = 8,
        in_flight: int = 2,
        start: int = 0,
        stall_s: float | None = None,
        ping_s: float | None = None,
        give_up_s: float = 3600.0,
        token: str | None = None,
    ):
        if not actors:
            raise ValueError("RemoteFlow needs at least one flow actor")
        self.actors, self.max_batch, self.in_flight = list(actors), max_batch, in_flight
        self.stall_s = STALL_S if stall_s is None else stall_s
        self.ping_s = self.stall_s if ping_s is None else ping_s
        self.next, self.give_up_s = start, give_up_s
        self.token = token or os.urandom(8).hex()  # names this pool in the process's list of actors down

    def at(self, start: int) -> RemoteFlow:
        """The same pool, taking actors in turn from ``start`` (a shard task's copy)."""
        return RemoteFlow(
            self.actors, self.max_batch, self.in_flight, start, self.stall_s, self.ping_s, self.give_up_s, self.token
        )

    def submit(self, frames: np.ndarray) -> list:
        """Send a request to the least loaded actor (pairs queued; ties: the next in turn) among those not
        down; an actor that does not report its load within ``LOAD_S`` is passed over this time."""
        import ray

        now, n = time.monotonic(), len(self.actors)
        up = [k % n for k in range(self.next, self.next + n) if _DOWN.get((self.token, k % n), 0) <= now]
        k = up[0] if up else self.next % n  # all down: try the next one anyway
        if len(up) > 1:
            answers = _answers_within(ray, [self.actors[j].load.remote() for j in up], LOAD_S)
            loads = {j: q for j, q in zip(up, answers) if q is not None}
            if loads:
                k = min(loads, key=lambda j: (loads[j], up.index(j)))
        self.next = k + 1
        return [frames, k, self.actors[k].solve.remote(frames)]

    def result(self, handle: list) -> np.ndarray:
        import ray

        frames, k, ref = handle
        t0 = time.monotonic()
        while True:
            ready, _ = ray.wait([ref], timeout=self.stall_s)
            if ready:
                try:
                    return ray.get(ref)
                except ray.exceptions.RayTaskError:
                    raise  # the request itself failed (ValueError for bad frames): the caller decides
                except ray.exceptions.RayError:  # the actor is gone for good: another one solves it
                    pass
            elif self._answers(self.actors[k]):
                continue  # alive and busy: keep waiting
            if time.monotonic() - t0 > self.give_up_s:
                raise RuntimeError(f"no flow actor solved a request in {self.give_up_s:g} s")
            _DOWN[(self.token, k)] = time.monotonic() + DOWN_S  # this process's next requests go elsewhere
            time.sleep(min(1.0, 0.05 * len(self.actors)))  # every actor down: do not spin
            k = (k + 1) % len(self.actors)
            ref = self.actors[k].solve.remote(frames)

    def _answers(self, actor) -> bool:
        import ray

        return _answers_within(ray, [actor.ping.remote()], self.ping_s)[0] is not None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.result(self.submit(frames))


def describe(stats: Sequence[dict[str, Any] | None], seconds: float) -> str:
    """One line about the pool's work for the job log."""
    live = [s for s in stats if s]
    pairs = sum(s["pairs"] for s in live)
    batches = sum(s["batches"] for s in live)
    busy = sum(s["busy_s"] for s in live) / max(len(live), 1) / max(seconds, 1e-9)
    most = max((s["max_requests_per_batch"] for s in live), default=0)
    return (
        f"flow pool: {len(stats)} actors ({len(stats) - len(live)} did not answer), {pairs} pairs in {batches} "
        f"batches ({pairs / max(batches, 1):.1f} pairs, up to {most} "
        f"requests per batch), busy {100 * busy:.0f}% of {seconds:.1f} s, pids {[s['pid'] for s in live]}"
    )
