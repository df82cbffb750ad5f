"""Every snippet of docs/ecosystem.md's client sections runs as written (docs/ecosystem.md marks each with
``<!-- snippet: NAME -->``), in a scratch directory holding a small UCF-101-kind version at
``data/shards/LATEST`` (12 videos of 17 frames at 120x160, so the snippets' clip length 16 and crop 112 fit).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_export import MM_PYTHON, kind_shards

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ecosystem.md"


def snippets() -> dict[str, tuple[str, str]]:
    """name -> (language, code) of every marked fenced block."""
    found = re.findall(r"<!-- snippet: ([\w-]+) -->\n```(\w+)\n(.*?)```", DOC.read_text(), re.S)
    return {name: (lang, code) for name, lang, code in found}


def run(scratch: Path, name: str, extra: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    lang, code = snippets()[name]
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # `python`: this one
    if lang == "python":
        (scratch / f"{name}.py").write_text(code)
        cmd = [sys.executable, f"{name}.py"]
    else:
        cmd = ["bash", "-ec", code.strip() + extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=scratch)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs")
    kind_shards(d / "data", frames=17, size=(120, 160))
    return d


def test_the_snippets_are_marked():
    assert set(snippets()) == {"export", "mmaction2-train", "mmaction2-run", "own-loop", "ray-train"}


@pytest.mark.slow
def test_export_and_mmaction2_snippets(scratch):
    r = run(scratch, "export")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (scratch / "data/ucf101/configs/ucf101_split_1_rgb.py").is_file()
    if not MM_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{MM_PYTHON} missing: `make test` creates it")
        pytest.skip("no .venv-mm: run `make mmaction2-env`")
    (scratch / ".venv-mm").symlink_to(MM_PYTHON.parents[1])
    (scratch / "train.py").write_text(snippets()["mmaction2-train"][1])
    r = run(scratch, "mmaction2-run", extra=" --cfg-options train_cfg.max_epochs=1")  # one epoch, not 45
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Epoch(val) [1]" in r.stdout + r.stderr and list((scratch / "work_dirs/rgb").glob("*.pth"))


@pytest.mark.slow
def test_own_loop_snippet(scratch):
    r = run(scratch, "own-loop")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == ["epoch 0", "epoch 1", "epoch 2"]


@pytest.mark.slow
def test_ray_train_snippet_beside_another_cluster(scratch):
    """RAY_ADDRESS names a cluster that does not answer: a plain ray.init() would try to join it;
    the snippet's ray.init(address="local") starts its own instance and trains."""
    pytest.importorskip("ray")
    r = run(scratch, "ray-train", env={"RAY_ADDRESS": "127.0.0.1:1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "finished: ok"


@pytest.mark.slow
def test_ray_train_snippet_beside_a_running_cluster(scratch):
    """A real cluster runs on this machine (`ray start --head`, token auth on) and RAY_ADDRESS names it, as on
    a shared node: the snippet starts its own instance, trains, and leaves the other cluster running."""
    from test_cluster import TokenCluster

    c = TokenCluster()
    try:
        c.start_head()
        heads = c.raylets()
        assert heads
        r = run(scratch, "ray-train", env={**c.env, "RAY_ADDRESS": c.address})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert r.stdout.strip().splitlines()[-1] == "finished: ok"
        assert heads <= c.raylets()  # the other cluster still runs
    finally:
        c.kill_all()
