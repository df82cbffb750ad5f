"""jobs.extract against real clusters: a local one that must go with its driver, and a two-raylet cluster
started by ``ray start`` with token authentication (Ray 2.60's default for ``ray start --head``).

Every process is found and killed by PID (never ``ray stop``, which would hit other users' clusters): the
``ray start`` daemons by a marker environment variable and the private temp dir in their command lines.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jobs.cli.reaper import _stat, descendants
from manifests.shards import load_shards

from fixtures import synthetic_shards
from test_extract import ARGS, BAD, GOOD_FRAMES, make_source, make_videos, wait_for_shard
from videoutil import moving_square, write_video

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("src")
    return make_source(d / "manifests", make_videos(d / "videos"))


def extract_cmd(source: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs.extract",
        "--manifest",
        str(source),
        "--out",
        str(out),
        "--shard-size",
        "1",
        *ARGS,
        *extra,
    ]


def env_with(**kv: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return {**env, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "", **kv}


def shard_hashes(vdir: Path) -> dict[str, tuple[str, str]]:
    return {r.video_id: (r.shard_sha256, r.checksums["rgbf"]) for r in load_shards(vdir).records}


def alive(procs: dict[int, int]) -> list[int]:
    """PIDs of ``{pid: start time}`` still running (same start time: never a reused PID)."""
    return [q for q, start in procs.items() if (_stat(q) or (0, None))[1] == start]


# ---------------------------------------------------------------------------------- local cluster lifetime
@pytest.mark.slow
def test_local_cluster_goes_with_the_driver_and_failure_rate_guard(source, tmp_path):
    out = tmp_path / "shards"
    # 1. kill -9 of the driver mid-run: every process it started is gone within 10 s
    p = subprocess.Popen(
        extract_cmd(source, out, "--workers", "1"),
        cwd=REPO,
        env=env_with(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_shard(out, p)
    tree = descendants(p.pid)
    assert len(tree) >= 3  # gcs_server, raylet, workers, agents, the watchdog
    p.send_signal(signal.SIGKILL)
    p.communicate()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and alive(tree):
        time.sleep(0.1)
    left = alive(tree)
    for q in left:  # do not leak them into the rest of the suite
        os.kill(q, signal.SIGKILL)
    assert not left, f"still alive 10 s after kill -9 of the driver: {left}"
    # 2. the rerun finishes; 4 of 12 videos fail (33%): refused under --max-failure-rate 0.2, the work dir kept
    log = tmp_path / "run2.log"
    with open(log, "w") as f:  # a file, not a pipe: nobody reads while we sample
        p = subprocess.Popen(
            extract_cmd(source, out, "--workers", "1", "--max-failure-rate", "0.2"),
            cwd=REPO,
            env=env_with(),
            stdout=subprocess.DEVNULL,
            stderr=f,
            text=True,
        )
        seen: dict[int, int] = {}
        while p.poll() is None:  # every process the job starts, sampled while it runs
            seen.update(descendants(p.pid))
            time.sleep(0.1)
    err = log.read_text()
    assert p.returncode == 1, err
    assert "4 of 12 videos failed (33% > --max-failure-rate 0.2); nothing published" in err
    assert "Top reasons:" in err and "1 x static:" in err and "Traceback" not in err
    assert not (out / "LATEST").exists() and len(list(out.glob(".work-*/shards/*.h5"))) == len(GOOD_FRAMES) + len(BAD)
    # 3. after a normal exit nothing the job started remains (the watchdog leaves within a second)
    assert len(seen) >= 3
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and alive(seen):
        time.sleep(0.1)
    assert not alive(seen), f"outlived the job: {alive(seen)}"
    # 4. the default rate publishes from the kept shards: nothing is redone
    r = subprocess.run(
        extract_cmd(source, out, "--workers", "1"),
        cwd=REPO,
        env=env_with(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert f"({len(GOOD_FRAMES) + len(BAD)} done earlier)" in r.stderr and "ok 0, failed 0" in r.stderr
    assert len(load_shards(out / r.stdout.split()[-1]).records) == len(GOOD_FRAMES)


# ------------------------------------------------------------------------ two raylets with token auth on
def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class TokenCluster:
    """`ray start --head` + `ray start --address` on this machine, token auth on, private temp dir."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="r12-", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.mark = secrets.token_hex(8)
        self.env = env_with(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), ASYM3D_TEST_RAY=self.mark)
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"

    def ray_start(self, *args: str) -> None:
        ports = free_ports(7)
        common = [
            "--num-cpus",
            "1",
            "--node-ip-address",
            "127.0.0.1",
            "--disable-usage-stats",
            "--object-store-memory",
            str(80 * 2**20),
            "--node-manager-port",
            str(ports[0]),
            "--object-manager-port",
            str(ports[1]),
            "--dashboard-agent-listen-port",
            str(ports[2]),
            "--dashboard-agent-grpc-port",
            str(ports[3]),
            "--metrics-export-port",
            str(ports[4]),
            "--runtime-env-agent-port",
            str(ports[5]),
        ]
        r = subprocess.run([RAY, "start", *args, *common], env=self.env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed: {r.stderr[-2000:]}")

    def start_head(self) -> None:
        """`ray start --head` on the private port and temp dir, no dashboard, a free client-server port (not
        Ray's default 10001, which another test's cluster may hold); skips the test where Ray cannot start."""
        if shutil.which(RAY) is None:
            pytest.skip(f"no `ray` command next to {sys.executable}")
        client = str(free_ports(1)[0])
        try:
            self.ray_start(
                *("--head", "--port", str(self.port), "--temp-dir", str(self.tmp)),
                *("--include-dashboard", "false", "--ray-client-server-port", client),
            )
        except RuntimeError as e:
            pytest.skip(f"`ray start` cannot run here: {e}")

    def raylets(self) -> set[int]:
        return {pid for pid, cmd in self.processes() if "raylet/raylet" in cmd}

    def processes(self) -> list[tuple[int, str]]:
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or _stat(int(name)) is None:
                continue
            try:
                cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                env = Path(f"/proc/{name}/environ").read_bytes()
            except OSError:
                continue
            if str(self.tmp) in cmd or f"ASYM3D_TEST_RAY={self.mark}".encode() in env or self._holds_tmp(name):
                found.append((int(name), cmd))
        return found

    def _holds_tmp(self, pid: str) -> bool:
        """An open file under the private temp dir: Ray's agents retitle themselves (cmdline and environ
        overwritten) and outlive a killed raylet as orphans, but keep their session logs open."""
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(self.tmp)) for fd in fds)
        except OSError:
            return False

    def kill_all(self) -> None:
        for _ in range(5):
            procs = self.processes()
            procs += [(q, "") for pid, _ in procs for q in descendants(pid)]
            if not procs:
                break
            for pid, _ in procs:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.slow
def test_token_auth_cluster_node_lost_mid_run_equals_uninterrupted_run(source, tmp_path):
    c = TokenCluster()
    try:
        c.start_head()
        head_raylets = c.raylets()
        c.ray_start("--address", c.address)
        worker_raylet = c.raylets() - head_raylets
        assert len(head_raylets) == 1 and len(worker_raylet) == 1, c.processes()

        # a driver without the token is refused with one line (authentication is never turned off for it)
        r = subprocess.run(
            extract_cmd(source, tmp_path / "refused", "--address", c.address),
            cwd=REPO,
            env={k: v for k, v in c.env.items() if not k.startswith("RAY_AUTH")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        last = [ln for ln in r.stderr.splitlines() if ln.startswith("extract: error:")]
        assert r.returncode == 2 and len(last) == 1 and "RAY_AUTH_MODE=token" in last[0], r.stderr[-1500:]
        assert not (tmp_path / "refused").exists()
        # the other stages that join a cluster start Ray through the same helper (jobs.cli.cluster): same line
        videos, shards = tmp_path / "folder", synthetic_shards(tmp_path / "syn")
        write_video(videos / "Walk" / "v_walk.avi", moving_square(4, 32, 32))
        for stage, argv in (
            ("build_manifest", ["--dataset", "folder", "--videos", str(videos)]),
            ("export", ["--manifest", str(shards), "--workers", "2"]),
        ):
            r = subprocess.run(
                [sys.executable, "-m", f"jobs.{stage}", *argv, "--out", str(tmp_path / stage), "--address", c.address],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
                env={k: v for k, v in c.env.items() if not k.startswith("RAY_AUTH")},
            )
            last = [ln for ln in r.stderr.splitlines() if ln.startswith(f"{stage}: error:")]
            assert r.returncode == 2 and len(last) == 1 and "RAY_AUTH_MODE=token" in last[0], r.stderr[-1500:]
            assert f"--address {c.address}: the cluster refused the connection" in last[0]

        # with the token: extract through --address; the second node's raylet dies mid-run
        out = tmp_path / "lost"
        p = subprocess.Popen(
            extract_cmd(source, out, "--address", c.address, "--workers", "2"),
            cwd=REPO,
            env=c.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_shard(out, p, timeout=240)
        os.kill(worker_raylet.pop(), signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=400)
        if p.returncode != 0:  # retries exhausted: nothing published, the rerun finishes
            assert "nothing published" in stderr, stderr[-2000:]
            r = subprocess.run(
                extract_cmd(source, out, "--address", c.address),
                cwd=REPO,
                env=c.env,
                capture_output=True,
                text=True,
                timeout=400,
            )
            assert r.returncode == 0, r.stderr[-2000:]
            stdout = r.stdout
        vid = stdout.split()[-1]

        # an uninterrupted run of the same inputs (the remaining node) gives the same version, byte for byte
        r = subprocess.run(
            extract_cmd(source, tmp_path / "clean", "--address", c.address),
            cwd=REPO,
            env=c.env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert r.returncode == 0 and r.stdout.split()[-1] == vid, r.stderr[-2000:]
        lost, clean = shard_hashes(out / vid), shard_hashes(tmp_path / "clean" / vid)
        assert sorted(lost) == sorted(GOOD_FRAMES) and lost == clean
    finally:
        c.kill_all()
