"""Dataset builders on tiny annotation files in the real formats (CRLF), without probing.

Builders only read annotations and list directories, so the video files here are placeholder bytes;
tests/test_manifest_build.py covers real encoded videos.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.source.annotations import BuildError, read_lines
from manifests.source.builders import (
    BUILDERS,
    FCVID_NUM_CATEGORIES,
    build_fcvid,
    build_folder,
    build_hmdb51,
    build_ucf101,
    hashed_part,
    load_fcvid170,
)


def crlf(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{ln}\r\n" for ln in lines).encode())
    return path


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())


def by_path(plan):
    return {e.rel_path: e for e in plan.entries}


def test_read_lines_handles_crlf_bom_and_blank_lines(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbf1 A\r\n\r\n2 B\r\n")
    assert read_lines(p) == ["1 A", "2 B"]


@pytest.fixture
def ucf(tmp_path):
    v, a = tmp_path / "videos", tmp_path / "ann"
    touch(
        v,
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "HandstandPushups/v_HandStandPushups_g01_c01.avi",
        "HandstandPushups/v_HandStandPushups_g02_c01.avi",
        "ApplyEyeMakeup/v_extra_g09_c01.avi",
        "Mystery/v_Mystery_g01_c01.avi",
        "ApplyEyeMakeup/v_odd name é_g03_c01.avi",
    )
    crlf(a / "classInd.txt", ["1 ApplyEyeMakeup", "2 HandstandPushups"])
    crlf(
        a / "trainlist01.txt",
        [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
            "HandstandPushups/v_HandstandPushups_g01_c01.avi 2",  # case differs from the file on disk
            "ApplyEyeMakeup/v_odd name é_g03_c01.avi 1",  # spaces and unicode
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",  # listed twice
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g99_c01.avi 1",  # not on disk
            "Mystery/v_Mystery_g01_c01.avi 3",  # not a class in classInd
        ],
    )
    crlf(
        a / "testlist01.txt",
        [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
            "HandstandPushups/v_HandStandPushups_g02_c01.avi",
            "HandstandPushups/v_HandStandPushups_g01_c01.avi",
        ],
    )  # also train in split1
    crlf(a / "trainlist02.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2"])  # label disagrees w/ folder
    crlf(a / "testlist02.txt", [])  # empty split file
    return v, a


def test_ucf101(ucf):
    plan = build_ucf101(*ucf)
    assert plan.labels == ["ApplyEyeMakeup", "HandstandPushups"] and plan.label_source_index == [1, 2]
    assert plan.split_names == ["split1", "split2"]
    e = by_path(plan)
    ok = e["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"]
    assert (ok.status, ok.labels, ok.splits) == ("ok", (0,), {"split1": "train", "split2": "unused"})
    assert any("listed twice" in n for n in ok.notes)
    odd = e["ApplyEyeMakeup/v_odd name é_g03_c01.avi"]
    assert odd.status == "ok" and odd.splits["split1"] == "train"
    g01 = e["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"]
    assert g01.status == "ok" and g01.labels == (0,) and g01.splits == {"split1": "test", "split2": "train"}
    assert any("folder used" in n for n in g01.notes)
    conflict = e["HandstandPushups/v_HandStandPushups_g01_c01.avi"]  # found despite the case difference
    assert conflict.status == "duplicate" and "as train and as test in split1" in conflict.error
    assert conflict.labels == (1,)
    assert e["ApplyEyeMakeup/v_ApplyEyeMakeup_g99_c01.avi"].status == "missing"
    assert e["Mystery/v_Mystery_g01_c01.avi"].status == "unknown_class"
    extra = e["ApplyEyeMakeup/v_extra_g09_c01.avi"]
    assert extra.status == "unlisted" and extra.splits == {"split1": "unused", "split2": "unused"}
    assert any("testlist02.txt: empty split file" in w for w in plan.warnings)


def test_ucf101_requires_class_index(tmp_path):
    touch(tmp_path / "v", "A/x.avi")
    with pytest.raises(BuildError, match="classInd.txt"):
        build_ucf101(tmp_path / "v", tmp_path / "ann")


def test_hmdb51(tmp_path):
    v, a = tmp_path / "videos", tmp_path / "ann"
    touch(
        v,
        "brush_hair/a.avi",
        "brush_hair/b c.avi",
        "brush_hair/d.avi",
        "wave/w1.avi",
        "wave/w2.avi",
        "wave/unlisted.avi",
    )
    for s in (1, 2):
        crlf(a / f"brush_hair_test_split{s}.txt", ["a.avi 1 ", "b c.avi 2 ", "d.avi 0 "])
        crlf(a / f"wave_test_split{s}.txt", ["w1.avi 1", "w2.avi 2" if s == 1 else "w2.avi 1"])
    crlf(a / "jump_test_split1.txt", ["j.avi 1"])  # class without a folder
    crlf(a / "wave_test_split3.txt", [])
    plan = build_hmdb51(v, a)
    assert plan.labels == ["brush_hair", "wave"] and plan.split_names == ["split1", "split2", "split3"]
    e = by_path(plan)
    assert e["brush_hair/b c.avi"].splits == {"split1": "test", "split2": "test", "split3": "unused"}
    assert e["brush_hair/d.avi"].status == "ok" and set(e["brush_hair/d.avi"].splits.values()) == {"unused"}
    assert e["wave/w2.avi"].splits == {"split1": "test", "split2": "train", "split3": "unused"}
    assert e["wave/w2.avi"].labels == (1,)
    jump = e["jump/j.avi"]  # file failures come first; the unknown class is kept as a note
    assert jump.status == "missing" and any("class 'jump'" in n for n in jump.notes)
    assert e["wave/unlisted.avi"].status == "unlisted"
    assert any("wave_test_split3.txt: empty" in w for w in plan.warnings)


def fcvid_row(*cols: int) -> str:
    row = ["0"] * FCVID_NUM_CATEGORIES
    for c in cols:
        row[c - 1] = "1"
    return " ".join(row)


def test_fcvid170_is_the_human_motion_reconstruction():
    kept = load_fcvid170()
    assert len(kept) == 170 and len({n for _, n in kept}) == 170
    assert kept[0] == (1, "accordionPerformance") and all(1 <= i <= 239 for i, _ in kept)
    assert 4 not in {i for i, _ in kept}  # amusementPark: a venue, not a human motion


def test_fcvid_multilabel_filter(tmp_path):
    v, a = tmp_path / "videos", tmp_path / "ann"
    touch(
        v,
        "accordionPerformance/x1.mp4",
        "archery/x2.mp4",
        "beach/x3.mp4",
        "archery/x4.mp4",
        "archery/x5.mp4",
        "archery/x6.mp4",
    )
    crlf(
        a / "FCVID_VideoName_TrainTestSplit.txt",
        [
            "accordionPerformance/x1.mp4 train",
            "archery/x2.mp4 test",
            "beach/x3.mp4 train",
            "videos/archery/x4.mp4 test",  # different prefix: matched by the unique file name
            "archery/x5.mp4 train",
            "archery/x6.mp4 train",
        ],
    )
    crlf(
        a / "FCVID_Label.txt", [fcvid_row(1), fcvid_row(5, 16, 3), fcvid_row(16), fcvid_row(5), "1 0 1"]
    )  # x5: short row; x6: no row
    plan = build_fcvid(v, a)
    assert len(plan.labels) == 170 and plan.labels[0] == "accordionPerformance"
    kept = {i: lid for lid, i in enumerate(plan.label_source_index)}
    e = by_path(plan)
    assert e["accordionPerformance/x1.mp4"].labels == (kept[1],)
    assert e["archery/x2.mp4"].labels == tuple(sorted((kept[3], kept[5])))  # beach (16) dropped
    assert e["archery/x2.mp4"].splits == {"split1": "test"}
    assert e["beach/x3.mp4"].status == "filtered" and "[16]" in e["beach/x3.mp4"].error
    assert e["archery/x4.mp4"].status == "ok" and e["archery/x4.mp4"].labels == (kept[5],)
    assert e["archery/x5.mp4"].status == "unknown_class"
    assert e["archery/x6.mp4"].status == "unknown_class" and "no row 6" in e["archery/x6.mp4"].error
    assert any("5 label rows for 6 videos" in w for w in plan.warnings)


def test_folder_hashed_split_is_deterministic(tmp_path):
    touch(tmp_path, *(f"c{c}/v{i}.mp4" for c in range(2) for i in range(30)), "loose.mp4")
    a, b = build_folder(tmp_path, None), build_folder(tmp_path, None)
    assert [(e.rel_path, e.splits) for e in a.entries] == [(e.rel_path, e.splits) for e in b.entries]
    parts = [e.splits["split1"] for e in a.entries if e.status == "ok"]
    assert len(parts) == 60 and 0 < parts.count("test") < 30
    assert all(e.splits["split1"] == hashed_part(e.rel_path, 0.2) for e in a.entries)
    assert by_path(a)["loose.mp4"].status == "unknown_class"


def test_folder_with_split_files(tmp_path):
    v, a = tmp_path / "v", tmp_path / "a"
    touch(v, "run/a.mp4", "run/b.mp4", "walk/c.mp4")
    crlf(a / "s1_train.txt", ["run/a.mp4", "walk/c.mp4"])
    crlf(a / "s1_test.txt", ["run/b.mp4", "walk/gone.mp4"])
    e = by_path(build_folder(v, a))
    assert e["run/b.mp4"].splits == {"s1": "test"} and e["walk/c.mp4"].labels == (1,)
    assert e["walk/gone.mp4"].status == "missing"


def test_builders_table():
    assert set(BUILDERS) == {"ucf101", "hmdb51", "fcvid", "folder"}
