"""jobs.extraction.flowpool without Ray: the batcher gathers requests of several callers into one batch, a bad
request fails alone, and the results (and a shard written through a flow service) equal solving locally."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from jobs.extraction.flowpool import FlowBatcher
from manifests.extraction import ExtractConfig, ShardPlan, VideoTask, build_shard
from pipeline.flow import BroxFlow, FlowConfig, brox_params, check_frames

from videoutil import moving_square, write_video

FAST = {"inner": 2, "outer": 2, "solver": 2}


def fake_solver(log: list):
    """solve_many that records each batch and returns, per pair, the sum of its two frames (traceable)."""

    def solve_many(seqs):
        log.append([len(s) - 1 for s in seqs])
        return [np.stack([(s[k].astype(np.float32) + s[k + 1])[..., :2] for k in range(len(s) - 1)]) for s in seqs]

    return solve_many


def run(coro):
    return asyncio.run(coro)


def test_batches_hold_requests_of_several_callers_up_to_the_batch_size():
    log: list = []
    b = FlowBatcher(fake_solver(log), lambda h, w: 10, max_wait_s=0.05, check=check_frames)
    rng = np.random.default_rng(0)
    reqs = [rng.integers(0, 100, (n, 4, 5, 3), dtype=np.uint8) for n in (5, 3, 7, 2, 12, 4)]  # 4,2,6,1,11,3 pairs

    async def main():
        return await asyncio.gather(*(b.submit(r) for r in reqs))

    out = run(main())
    for r, f in zip(reqs, out):  # every caller gets its own pairs back, in order
        assert f.shape == (len(r) - 1, 4, 5, 2)
        assert np.array_equal(f, (r[:-1].astype(np.float32) + r[1:])[..., :2])
    assert sorted(n for batch in log for n in batch) == [1, 2, 3, 4, 6, 11]
    assert any(len(batch) > 1 for batch in log)  # a batch held several callers' requests
    for batch in log:  # never more than the batch size, except one request larger than it alone
        assert sum(batch) <= 10 or len(batch) == 1
    st = b.stats()
    assert st["requests"] == 6 and st["pairs"] == 27 and st["batches"] == len(log) and st["max_requests_per_batch"] > 1


def test_bad_request_fails_alone_and_solver_errors_reach_the_batch():
    log: list = []
    b = FlowBatcher(fake_solver(log), lambda h, w: 100, max_wait_s=0.05, check=check_frames)
    good = np.zeros((3, 4, 5, 3), np.uint8)

    async def main():
        return await asyncio.gather(
            b.submit(good), b.submit(np.zeros((3, 4, 5), np.uint8)), b.submit(good), return_exceptions=True
        )

    res = run(main())
    assert isinstance(res[1], ValueError) and "shape" in str(res[1])
    assert res[0].shape == (2, 4, 5, 2) and res[2].shape == (2, 4, 5, 2) and log == [[2, 2]]

    def broken(seqs):
        raise RuntimeError("device lost")

    b2 = FlowBatcher(broken, lambda h, w: 100, max_wait_s=0.05)

    async def main2():
        return await asyncio.gather(b2.submit(good), b2.submit(good), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in run(main2())) and b2.stats()["errors"] == 1


def test_batched_brox_equals_each_video_alone():
    """Pairs of videos solved in shared batches (sizes 8, odd tails, two one-pair requests together: a
    video's last request, which its own shard task solves as a batch of one) give the flow of each alone."""
    flow = BroxFlow(brox_params(**FAST), device="cpu")
    a, v = moving_square(11, 32, 40, seed=1), moving_square(6, 32, 40, seed=2)
    b = FlowBatcher(flow.solve_sequences, flow.batch_size, max_wait_s=0.05, check=check_frames)

    async def main():
        return await asyncio.gather(b.submit(a), b.submit(v), b.submit(a[3:6]), b.submit(a[9:]), b.submit(v[4:]))

    fa, fv, part, tail_a, tail_v = run(main())
    assert np.array_equal(fa, flow(a)) and np.array_equal(fv, flow(v)) and np.array_equal(part, flow(a)[3:5])
    assert np.array_equal(tail_a, flow(a[9:])) and np.array_equal(tail_v, flow(v[4:]))  # each a batch of one
    assert b.stats()["max_requests_per_batch"] >= 2


class LocalService:
    """A flow service without Ray (RemoteFlow's interface) that solves on a later ``result`` call, in any
    order, and counts what was outstanding."""

    def __init__(self, in_flight: int):
        self.flow = BroxFlow(brox_params(**FAST), device="cpu")
        self.max_batch, self.in_flight, self.most = self.flow.max_batch, in_flight, 0
        self.out: set = set()

    def at(self, start):
        return self

    def submit(self, frames):
        h = object()
        self.out.add(h)
        self.most = max(self.most, len(self.out))
        return (h, frames)

    def result(self, handle):
        self.out.discard(handle[0])
        return self.flow(handle[1])

    def __call__(self, frames):
        return self.flow(frames)


def test_shard_through_a_flow_service_is_byte_identical(tmp_path):
    vids = []
    for i, n in enumerate((150, 9, 70)):  # several 64-pair groups, so requests overlap
        p = write_video(tmp_path / f"v{i}.avi", moving_square(n, 48, 64, seed=i))
        vids.append(VideoTask(f"v{i}", str(p), p.name, None, None))
    plan = ShardPlan(0, "00000.h5", tuple(vids))
    cfg = ExtractConfig(size=(32, 40), flow=FlowConfig.resolve(**FAST))
    local = build_shard(plan, cfg, str(tmp_path / "local"))
    svc = LocalService(in_flight=2)
    remote = build_shard(plan, cfg, str(tmp_path / "remote"), flow=svc)
    assert svc.most == 3  # two outstanding + the one being submitted before the oldest is collected
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert [v["n_flow"] for v in remote["videos"]] == [149, 8, 69]
    assert digest(local["path"]) == digest(remote["path"])


# ------------------------------------------------------------------------------ RemoteFlow on a local Ray
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    here = Path(__file__).resolve().parent  # workers import this module's actor classes
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}},
    )
    yield ray
    ray.shutdown()


class Stuck:
    """A flow actor that never answers (its node is gone and it cannot be placed again)."""

    async def solve(self, frames):
        await asyncio.sleep(3600)

    async def ping(self):
        await asyncio.sleep(3600)

    async def load(self):
        await asyncio.sleep(3600)


class Echo:
    async def solve(self, frames):
        if frames.ndim != 4:
            raise ValueError("frames must have shape (T, H, W, 3)")
        return frames[1:, ..., :2].astype(np.float32)

    async def ping(self):
        return os.getpid()

    async def load(self):
        return 0


def test_remote_flow_moves_requests_off_a_dead_or_stuck_actor(ray_local):
    from jobs.extraction.flowpool import RemoteFlow

    ray = ray_local
    opts = {"num_cpus": 0, "max_concurrency": 100}
    stuck, echo = ray.remote(Stuck).options(**opts).remote(), ray.remote(Echo).options(**opts).remote()
    dead = ray.remote(Echo).options(**opts).remote()
    ray.kill(dead, no_restart=True)
    frames = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    flow = RemoteFlow([stuck, dead, echo], stall_s=2.0, ping_s=2.0)  # echo answers in ms
    assert np.array_equal(flow(frames), frames[1:, ..., :2])  # the only actor that reports a load: echo
    # a request already sent to the stuck actor: no answer, no ping -> the dead one (actor error) -> echo
    assert np.array_equal(flow.result([frames, 0, stuck.solve.remote(frames)]), frames[1:, ..., :2])
    from jobs.extraction.flowpool import _DOWN

    assert {k for (tok, k) in _DOWN if tok == flow.token} == {0, 1}  # both skipped by this process for a while
    assert flow.at(0).submit(frames)[1] == 2
    with pytest.raises(ValueError, match="shape"):  # the request's own error is the caller's, not a failover
        RemoteFlow([echo])(frames[0])
    with pytest.raises(RuntimeError, match="no flow actor"):
        RemoteFlow([stuck], stall_s=0.2, ping_s=0.2, give_up_s=1.0)(frames)


def test_window_flow_groups_64_pairs_for_a_stage_that_sizes_its_batches_per_call():
    """BroxFlow on CUDA has max_batch None (its batch comes from free memory per call): WindowFlow still
    groups 64 pairs per call instead of failing on the missing batch."""
    from manifests.extraction import WindowFlow

    class PerCallBatch:
        max_batch = None

        def __call__(self, frames):
            return np.zeros((len(frames) - 1, *frames.shape[1:3], 2), np.float32)

    assert WindowFlow("v.avi", PerCallBatch(), ExtractConfig(), out=None).step == 64
    assert WindowFlow("v.avi", BroxFlow(device="cpu", max_batch=3), ExtractConfig(), out=None).step == 66
