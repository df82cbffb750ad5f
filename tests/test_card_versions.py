"""Dataset cards (jobs.report.dataset_card, jobs.card, publishing hooks) and version listing / diffs (jobs.versions)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import build_manifest, versions
from jobs import card as card_job
from jobs.report import dataset_card as card
from jobs.report import plots
from manifests.shards import FailureRecord, VideoStreams, load_shards, write_shard_dataset
from manifests.source.schema import (
    KIND,
    LABELS_FILE,
    SCHEMA_VERSION,
    VIDEOS_FILE,
    VideoRecord,
    labels_table,
    videos_table,
)
from manifests.versioning import VersionMeta, file_digest, publish, utc_now

from fixtures import synthetic_shards
from videoutil import moving_square, write_video

PNG = b"\x89PNG\r\n\x1a\n"


def make_source(root) -> str:
    """A source manifest version with 6 ok videos and 3 failures of two kinds."""
    recs = [
        VideoRecord(
            f"v{i}",
            f"c{i % 2}/v{i}.avi",
            (i % 2,),
            (f"c{i % 2}",),
            {"split1": "test" if i % 3 == 2 else "train"},
            1000 + i,
            f"{i:064x}",
            1.0 + i / 2,
            25.0,
            64,
            48,
            25 + 12 * i,
            "ok",
            None,
        )
        for i in range(6)
    ]
    recs += [
        VideoRecord(
            "gone",
            "c0/gone.avi",
            (0,),
            ("c0",),
            {"split1": "train"},
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "missing",
            "no such file",
        ),
        VideoRecord(
            "txt",
            "c1/txt.avi",
            (1,),
            ("c1",),
            {"split1": "test"},
            10,
            "ab",
            None,
            None,
            None,
            None,
            None,
            "unreadable",
            "c1/txt.avi: Invalid data found when processing input",
        ),
        VideoRecord(
            "zero",
            "c1/zero.avi",
            (1,),
            ("c1",),
            {"split1": "train"},
            0,
            "cd",
            None,
            None,
            None,
            None,
            None,
            "empty",
            "empty file (0 bytes)",
        ),
    ]
    meta = VersionMeta(
        "src0000000000001",
        KIND,
        SCHEMA_VERSION,
        {"videos_root": str(root / "videos")},
        None,
        utc_now(),
        extra={
            "num_videos": len(recs),
            "status_counts": {"ok": 6, "missing": 1, "unreadable": 1, "empty": 1},
            "num_labels": 2,
        },
    )

    def write(tmp):
        pq.write_table(videos_table(recs), tmp / VIDEOS_FILE)
        pq.write_table(labels_table(["c0", "c1"]), tmp / LABELS_FILE)

    return publish(root / "manifests", meta.version_id, write, meta)


def shards_with_failures(root, n=5, seed=0):
    rng = np.random.default_rng(seed)
    vids = []
    for i in range(n):
        rgb = rng.integers(0, 255, (6 + i, 20, 24, 3), dtype=np.uint8)
        vids.append(
            VideoStreams(
                f"v{i}",
                {"rgb": rgb, "flow": rgb[1:], "rgbf": rgb[:-1]},
                (i % 2,),
                {"split1": "train" if i % 2 else "test"},
            )
        )
    fails = [
        FailureRecord("bad0", "decode", "bad0.avi: Invalid data"),
        FailureRecord("bad1", "static", "no motion"),
        FailureRecord("bad2", "decode", "bad2.avi: moov atom not found"),
    ]
    return write_shard_dataset(root, vids, ["c0", "c1"], failures=fails, shard_size=2)


def _tables(vdir):
    files = sorted(vdir.glob("*.parquet")) + [vdir / "version.json"]
    return {p.name: file_digest(p) for p in files}


def test_cards_for_source_and_shard_versions(tmp_path):
    src = make_source(tmp_path)
    shards = shards_with_failures(tmp_path / "shards")
    shard_figures = ["classes", "lengths", "failures", "flow_magnitude", "bytes", "sample_0", "sample_1"]
    for vdir, figures in ((src, ["classes", "lengths", "failures"]), (shards, shard_figures)):
        before = _tables(vdir)
        path = card.write_card(vdir)
        text = path.read_text()
        for f in figures:
            png = vdir / "card" / f"{f}.png"
            assert png.read_bytes()[:8] == PNG and f"card/{f}.png" in text
        assert _tables(vdir) == before and vdir.name in text  # the version is untouched
        card.write_card(vdir)  # regenerating replaces the card, leaves no temporary dirs
        assert not [p for p in vdir.iterdir() if p.name.startswith(".")]
    src_text = (src / "card.md").read_text()
    assert "| missing | 1 |" in src_text and "Invalid data found" in src_text
    assert "| split1 | 4 | 2 | 0 | 2 |" in src_text  # ok videos only
    sh_text = (shards / "card.md").read_text()
    assert "| decode | 2 |" in sh_text and "moov atom" in sh_text and "| static | 1 |" in sh_text
    ds = load_shards(shards)
    assert f"| rgb | {sum(r.n_rgb for r in ds.records)} |" in sh_text


def test_card_failure_only_warns_and_cli(tmp_path, monkeypatch, capsys):
    shards = synthetic_shards(tmp_path / "s", num_videos=4, frames=5)
    monkeypatch.setattr(plots, "plot_bars", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    msgs = []
    assert card.write_card_safely(shards, msgs.append) is None
    assert "boom" in msgs[0] and "python -m jobs.card" in msgs[0]
    assert load_shards(shards).meta.version_id == shards.name and not (shards / "card.md").exists()
    monkeypatch.undo()
    assert card_job.main([str(tmp_path / "s")]) == 0 and (shards / "card.md").is_file()  # root with LATEST
    capsys.readouterr()
    assert card_job.main([str(tmp_path / "nothing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_build_manifest_publishes_a_card(tmp_path, capsys):
    videos = tmp_path / "videos"
    for i, cls in enumerate(("Jump", "Jump", "Run")):
        write_video(videos / cls / f"v_{cls}_{i}.avi", moving_square(8 + i, 32, 40, seed=i))
    (videos / "Run" / "v_Run_text.avi").write_text("not a video\n" * 20)
    assert (
        build_manifest.main(
            ["--dataset", "folder", "--videos", str(videos), "--out", str(tmp_path / "m"), "--workers", "0"]
        )
        == 0
    )
    vid = capsys.readouterr().out.strip().splitlines()[-1]
    text = (tmp_path / "m" / vid / "card.md").read_text()
    assert "| unreadable | 1 |" in text and (tmp_path / "m" / vid / "card" / "lengths.png").is_file()


def test_versions_ls_and_diff(tmp_path, capsys):
    make_source(tmp_path)
    a = synthetic_shards(tmp_path / "shards", num_videos=4, frames=5)
    b = shards_with_failures(tmp_path / "shards")
    assert versions.main(["ls", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("(* = ")
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in out[1:-1]}
    assert set(rows) == {"src0000000000001", a.name, b.name}
    assert rows[b.name].startswith("*") and not rows[a.name].startswith("*")  # LATEST of shards/ is b
    assert rows["src0000000000001"].startswith("*")  # LATEST of manifests/
    assert "9 videos, 3 not ok, 2 labels" in rows["src0000000000001"] and "5 videos, 3 failed, 3 shards" in rows[b.name]
    assert versions.main(["ls", str(tmp_path), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert all(r["bytes"] > 0 for r in js) and {r["kind"] for r in js} == {"source", "shards"}
    # diff of shard versions: a has v000..v003 with labels class0/1, b has v0..v4 with c0/c1
    assert versions.main(["diff", str(a), str(b)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "+ v0" in lines and "- v000" in lines and "+ label c0" in lines
    assert lines[-1].endswith("5 added, 4 removed, 0 changed")
    assert versions.main(["diff", str(b), str(b)]) == 0
    capsys.readouterr()
    src = tmp_path / "manifests" / "src0000000000001"
    for args in (["diff", str(a), str(src)], ["diff", str(a), str(tmp_path / "x")], ["ls", str(tmp_path / "x")]):
        assert versions.main(args) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_shard_diff_names_changed_fields(tmp_path, capsys):
    a = synthetic_shards(tmp_path / "a", num_videos=4, frames=5, seed=0)
    b = synthetic_shards(tmp_path / "b", num_videos=4, frames=[5, 5, 6, 5], seed=0)
    assert versions.main(["diff", str(a), str(b)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("~ v002: n_rgb, n_flow, checksums") for line in lines), lines


@pytest.mark.slow
def test_extract_publishes_a_card_without_changing_the_id(tmp_path, monkeypatch, capsys):
    """jobs.extract on 3 tiny videos (local Ray, 1 CPU): the card appears next to the version; with the card
    writer broken the same version id is published and only a warning is printed."""
    from jobs import extract

    videos = tmp_path / "videos"
    for i, cls in enumerate(("Jump", "Run", "Run")):
        write_video(videos / cls / f"v_{cls}_{i}.avi", moving_square(5, 32, 40, seed=i))
    assert (
        build_manifest.main(
            ["--dataset", "folder", "--videos", str(videos), "--out", str(tmp_path / "m"), "--workers", "0"]
        )
        == 0
    )
    args = [
        "--manifest",
        str(tmp_path / "m"),
        "--size",
        "24",
        "32",
        "--workers",
        "1",
        "--flow-param",
        "inner=2",
        "--flow-param",
        "outer=2",
        "--flow-param",
        "solver=2",
    ]
    assert extract.main([*args, "--out", str(tmp_path / "s")]) == 0
    vid = capsys.readouterr().out.strip().splitlines()[-1]
    text = (tmp_path / "s" / vid / "card.md").read_text()
    assert "3 videos extracted" in text and (tmp_path / "s" / vid / "card" / "sample_0.png").is_file()
    # how it was made: preset and every resolved Brox parameter, sampling, size, codecs, code and source versions
    for row in (
        "| flow | Brox, preset `accurate` |",
        "| flow: inner | `2` |",
        "| flow: outer | `2` |",
        "| flow: alpha |",
        "| flow: warp |",
        "| flow-image bound | 20 px |",
        "| temporal sampling | every frame at the native rate; one window of every frame |",
        "| frame size | 24x32 (H x W), resize `stretch` |",
        "| codecs | `{",
        "| code version | `extract-",
        "(dataset folder;",
    ):
        assert row in text, row
    monkeypatch.setattr(card, "write_card", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    assert extract.main([*args, "--out", str(tmp_path / "s2")]) == 0
    out = capsys.readouterr()
    assert out.out.strip().splitlines()[-1] == vid and "warning: dataset card" in out.err
    assert load_shards(tmp_path / "s2" / vid).meta.version_id == vid
