"""The benchmarks' flags are checked like every CLI flag: one line naming the flag, exit 2, before any video is
generated, Ray started, a model built or a report written. Every entry point that does work is replaced by
pytest.fail, so a case passes only if the check comes first; the valid invocations of the Makefile and the
docs still get past the checks (to the first entry point, replaced by a marker)."""

from __future__ import annotations

import json

import pytest
import ray

from jobs.bench import export, extract, manifest, models, pipelined, scale, train
from jobs.cli import cluster

from fixtures import synthetic_shards

WORK = {  # flags every case of a benchmark gets first (a case's own flags come after and win)
    extract: ["--out", "{tmp}/out", "--work", "{tmp}/work"],
    pipelined: ["--out", "{tmp}/out/pipelined.md", "--work", "{tmp}/work"],
    manifest: ["--out", "{tmp}/out/manifest.md", "--cache", "{tmp}/cache"],
    models: ["--out", "{tmp}/out/models.md", "--device", "cpu"],
    train: ["--out", "{tmp}/out/train.md", "--data", "{tmp}/work", "--device", "cpu"],
    scale: ["--out", "{tmp}/out/scale.md", "--work", "{tmp}/work"],
    export: ["--manifest", "{shards}", "--out", "{tmp}/out/export.md", "--work", "{tmp}/work"],
}
EXPENSIVE = {  # what does work in each benchmark (and what it calls first)
    extract: ["make_source", "bench_extract", "extract", "real_videos", "machine"],
    pipelined: ["make_source", "run_modes", "extract", "machine"],
    manifest: ["machine", "ensure_dataset", "run_one", "contain_costs", "cpu_per_video"],
    models: ["run", "report"],
    train: ["write_data", "moving_square_shards", "train_step_time", "machine"],
    scale: ["generate", "bench_decode", "bench_flow", "bench_rss", "check_model", "rss_child", "project"],
    export: ["bench", "report"],
}

CASES = [
    (extract, ["--frames", "0"], "--frames 0: must be an integer >= 2"),
    (extract, ["--frames", "abc"], "--frames: invalid int value: 'abc'"),
    (extract, ["--size", "0", "5"], "--size 0 5: height and width must be >= 8"),
    (extract, ["--videos", "7"], "--videos 7: makes 2 demo class(es) of 4 videos"),
    (extract, ["--frames", "16"], "--frames 16: the storage tables read 16-frame clips"),
    (extract, ["--frames", "500"], "--frames 500: the real-footage table cuts clips"),
    (extract, ["--reads", "2"], "--reads 2: must be an integer >= 3"),
    (extract, ["--flow-param", "bogus=1"], "--flow-param: unknown flow parameter 'bogus'"),
    (extract, ["--work", "{tmp}/nope"], "--work {tmp}/nope: no such directory"),
    (extract, ["--out", "{file}"], "--out {file}: is a file, not a directory"),
    (pipelined, ["--videos", "3"], "--videos 3: makes 1 demo class(es) of 3 videos"),
    (pipelined, ["--size", "-1", "4"], "--size -1 4: height and width must be >= 8"),
    (pipelined, ["--rounds", "0"], "--rounds 0: must be an integer >= 1"),
    (pipelined, ["--flow-param", "inner"], "--flow-param inner: expected key=value"),
    (pipelined, ["--out", "{file}/p.md"], "--out {file}/p.md: cannot be created: {file} is a file"),
    (manifest, ["--sizes", "0"], "--sizes 0: must be an integer >= 1"),
    (manifest, ["--workers", "1", "0"], "--workers 0: must be an integer >= 1"),
    (manifest, ["--chunk", "0"], "--chunk 0: must be an integer >= 1"),
    (manifest, ["--cache", "{file}/c"], "--cache {file}/c: cannot be created: {file} is a file"),
    (models, ["--models", "nosuch"], "--models nosuch: unknown model or group"),
    (models, ["--batch", "0"], "--batch 0: must be an integer >= 1"),
    (models, ["--iters", "0"], "--iters 0: must be an integer >= 1"),
    (models, ["--width", "0"], "--width 0: must be a number > 0"),
    (models, ["--device", "nosuch"], "--device nosuch: expected cpu, cuda or cuda:N"),
    (train, ["--workers", "x"], "--workers x: expected a comma list of integers"),
    (train, ["--workers", "0,-1"], "--workers -1: must be an integer >= 0"),
    (train, ["--videos", "0"], "--videos 0: must be an integer >= 1"),
    (train, ["--models", "c3d-b5,nosuch"], "--models nosuch: unknown"),
    (train, ["--codecs", "default,zip"], "--codecs zip: unknown"),
    (train, ["--steps", "0"], "--steps 0: must be an integer >= 1"),
    (train, ["--data", "{tmp}/nope"], "--data {tmp}/nope: no such directory"),
    (scale, ["--pairs", "0"], "--pairs 0: must be an integer >= 1"),
    (scale, ["--pairs", "250"], "--pairs 250: the flow section's source has 250 frames: must be <= 249"),
    (scale, ["--sections", "decode", "nope"], "--sections nope: unknown"),
    (scale, ["--check-videos", "40"], "--check-videos 40: the check makes 10 demo classes"),
    (scale, ["--rss-seconds", "0"], "--rss-seconds 0: must be a number of seconds >= 1"),
    (scale, ["--merge", "{tmp}/nope.json"], "--merge {tmp}/nope.json: no such file"),
    (scale, ["--merge", "{file}"], "--merge {file}: not JSON"),
    (scale, ["--merge", "{partial}"], "--merge: no flow, rss, check section"),
    (scale, ["--rss-child", "{tmp}/nope.mp4", "128x171"], "--rss-child PATH {tmp}/nope.mp4: no such file"),
    (scale, ["--rss-child", "{file}", "64x64"], "--rss-child SIZE 64x64: unknown"),
    (export, ["--manifest", "{tmp}/nope"], "--manifest {tmp}/nope: not a dataset version"),
    (export, ["--work", "{tmp}/nope"], "--work {tmp}/nope: no such directory"),
    (export, ["--out", "{tmp}/work"], "--out {tmp}/work: is a directory, not a file"),
]


def name(module) -> str:
    return module.__name__.split(".")[-1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(tmp_path_factory.mktemp("shards") / "shards")


@pytest.fixture
def places(tmp_path, shards) -> dict[str, str]:
    """The case's folder: a scratch folder, a plain file and the JSON of two partial bench.scale runs."""
    (tmp_path / "work").mkdir()
    (tmp_path / "file").write_text("not a directory\n")
    (tmp_path / "partial.json").write_text(json.dumps({"date": "2026-12-01 00:00 UTC", "decode": []}))
    rest = {"date": "2026-12-02 00:00 UTC", "flow": [], "rss": [], "check": {}}
    (tmp_path / "partial2.json").write_text(json.dumps(rest))
    return {
        "tmp": str(tmp_path),
        "file": str(tmp_path / "file"),
        "partial": str(tmp_path / "partial.json"),
        "partial2": str(tmp_path / "partial2.json"),
        "shards": str(shards),
    }


def snapshot(root) -> dict[str, object]:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("module, argv, expect", CASES, ids=[f"{name(m)}:{' '.join(a)}" for m, a, _ in CASES])
def test_bad_flag_one_line_exit_2_nothing_done(module, argv, expect, tmp_path, places, capsys, monkeypatch):
    for attr in EXPENSIVE[module]:
        monkeypatch.setattr(module, attr, lambda *a, _n=attr, **k: pytest.fail(f"{_n} ran before the flag check"))
    monkeypatch.setattr(extract, "machine", lambda *a, **k: pytest.fail("machine() ran before the flag check"))
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started before the flag check"))
    monkeypatch.setattr(cluster, "start", lambda *a, **k: pytest.fail("Ray started before the flag check"))
    before = snapshot(tmp_path)
    full = [a.format(**places) for a in (*WORK[module], *argv)]
    assert module.main(full) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    want = expect.format(**places)
    assert len(lines) == 1 and lines[0].startswith(f"bench.{name(module)}: error: ") and want in lines[0], lines
    assert snapshot(tmp_path) == before  # no report, no scratch folder, no video


class Reached(Exception):
    """The first entry point that does work was called: every check passed."""


VALID = [  # the Makefile's bench-* targets (defaults) and the commands in docs/benchmarks/*.md
    (extract, [], "make_source"),
    (extract, ["--videos", "24", "--rounds", "2", "--skip-storage"], "make_source"),
    (extract, ["--videos", "5", "--frames", "2", "--size", "8", "9", "--skip-storage"], "make_source"),
    (pipelined, [], "make_source"),
    (pipelined, ["--videos", "96", "--frames", "72", "--rounds", "1"], "make_source"),
    (manifest, ["--sizes", "1000", "--workers", "2", "--rounds", "2"], "machine"),
    (models, [], "run"),
    (models, ["--models", "b5-M3", "--width", "0.0625", "--frames", "4", "--size", "16", "--warmup", "0"], "run"),
    (train, [], "write_data"),
    (train, ["--workers", "0", "--codecs", "lzf", "--models", ""], "write_data"),
    (scale, [], "bench_decode"),
    (scale, ["--rss-seconds", "10", "30", "90", "--check-videos", "200"], "bench_decode"),
    (scale, ["--sections", "check"], "check_model"),
    (scale, ["--rss-child", "{file}", "256x320"], "rss_child"),  # internal: bench_rss's fresh process
    (scale, ["--merge", "{partial}", "{partial2}"], "project"),
    (export, [], "bench"),
]


@pytest.mark.parametrize("module, argv, entry", VALID, ids=[f"{name(m)}:{' '.join(a)}" for m, a, _ in VALID])
def test_valid_flags_pass_the_checks(module, argv, entry, places, monkeypatch):
    def reached(*a, **k):
        raise Reached(entry)

    monkeypatch.setattr(module, entry, reached)
    monkeypatch.setattr(extract, "machine", lambda *a, **k: "machine")
    with pytest.raises(Reached):
        module.main([a.format(**places) for a in (*WORK[module], *argv)])


def test_scale_sources_are_named_by_their_length(tmp_path):
    """A kept --work never hands a source of another length to a later run: the decode section at 2 s and
    the flow section's 10 s source are two files."""
    assert scale.source_path(tmp_path, "320x240", 2) != scale.source_path(tmp_path, "320x240", scale.FLOW_SOURCE_S)
    assert scale.source_path(tmp_path, "320x240", 2.5).name == "src_320x240_2.5s.mp4"
