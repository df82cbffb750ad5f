"""Dataset builders: annotation formats -> Plan (labels, entries, splits). Chosen from ``BUILDERS``.

Formats (docs/manifests.md has examples):
- ucf101: classInd.txt "1 ApplyEyeMakeup"; trainlist0N.txt "Class/v_x.avi 1"; testlist0N.txt "Class/v_x.avi".
  The class comes from the folder (the file name's case may differ: HandstandPushups/v_HandStandPushups_*).
- hmdb51: <class>_test_split{1,2,3}.txt lines "<video>.avi <0|1|2>" (1 train, 2 test, 0 unused); classes are
  the sorted folder names.
- fcvid: FCVID_VideoName_TrainTestSplit.txt "<path> <train|test>" and FCVID_Label.txt (0/1 rows, 239
  columns, same order); categories filtered to manifests/data/fcvid170.tsv (a reconstruction).
- folder: <root>/<class>/<video>; optional <split>_train.txt / <split>_test.txt (rel paths), else a
  deterministic hashed split "split1".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from manifests.source.annotations import BuildError, Collector, DiskIndex, Plan, class_dirs, norm, read_lines

FCVID_NUM_CATEGORIES = 239
FCVID170_FILE = Path(__file__).resolve().parents[1] / "data" / "fcvid170.tsv"


def _require(path: Path) -> Path:
    if not path.is_file():
        raise BuildError(f"{path}: required annotation file is missing")
    return path


def _split_files(ann: Path, pattern: str) -> dict[int, Path]:
    """{N: path} for files matching `pattern` with one (\\d+) group, e.g. r"trainlist(\\d+)\\.txt"."""
    out = {}
    for p in sorted(ann.iterdir()) if ann and ann.is_dir() else []:
        m = re.fullmatch(pattern, p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _lines(path: Path, warnings: list[str]) -> list[str]:
    lines = read_lines(path)
    if not lines:
        warnings.append(f"{path}: empty split file")
    return lines


def _class_of(classes: dict[str, int]) -> Callable[[str], tuple[int, ...] | None]:
    """rel path -> (label id,) from its first folder (case-insensitive), None if not a known class."""

    def classify(rel: str) -> tuple[int, ...] | None:
        parts = PurePosixPath(rel).parts
        lid = classes.get(norm(parts[0])) if len(parts) > 1 else None
        return None if lid is None else (lid,)

    return classify


def build_ucf101(videos: Path, annotations: Path | None, **_) -> Plan:
    ann = Path(annotations or videos)
    warnings: list[str] = []
    names, source_index = [], []
    for ln in read_lines(_require(ann / "classInd.txt")):
        idx, _, name = ln.partition(" ")
        if not idx.isdigit() or not name.strip():
            warnings.append(f"{ann / 'classInd.txt'}: malformed line {ln!r}")
            continue
        source_index.append(int(idx))
        names.append(name.strip())
    order = sorted(range(len(names)), key=lambda i: source_index[i])
    names, source_index = [names[i] for i in order], [source_index[i] for i in order]
    classes = {norm(n): i for i, n in enumerate(names)}
    classify = _class_of(classes)
    train, test = _split_files(ann, r"trainlist(\d+)\.txt"), _split_files(ann, r"testlist(\d+)\.txt")
    splits = sorted(set(train) | set(test))
    split_names = [f"split{n}" for n in splits]
    col = Collector(DiskIndex(videos), split_names)
    for n in splits:
        for part, files in (("train", train), ("test", test)):
            if n not in files:
                warnings.append(f"{ann}: no {part}list{n:02d}.txt for split{n}")
                continue
            for ln in _lines(files[n], warnings):
                path, listed = ln, None
                head, _, tail = ln.rpartition(" ")
                if part == "train" and head and tail.isdigit():  # "path label"; the path may hold spaces
                    path, listed = head, int(tail)
                labels = classify(path.replace("\\", "/"))
                e = col.listed(path, f"split{n}", part, labels, files[n].name)
                if labels is None:
                    e.fail("unknown_class", f"{path}: folder is not a class in classInd.txt")
                elif listed is not None and listed not in (source_index[labels[0]],):
                    e.notes.append(
                        f"{files[n].name} gives label {listed}, folder says "
                        f"{source_index[labels[0]]} ({names[labels[0]]}); folder used"
                    )
    col.add_unlisted(classify)
    return Plan(
        "ucf101",
        names,
        col.result(),
        split_names,
        source_index,
        warnings,
        annotation_files=[ann / "classInd.txt", *train.values(), *test.values()],
    )


HMDB_CODES = {"0": "unused", "1": "train", "2": "test"}


def build_hmdb51(videos: Path, annotations: Path | None, **_) -> Plan:
    ann = Path(annotations or videos)
    warnings: list[str] = []
    names = class_dirs(videos)
    classes = {norm(n): i for i, n in enumerate(names)}
    files = sorted(p for p in ann.iterdir() if re.fullmatch(r".+_test_split\d+\.txt", p.name)) if ann.is_dir() else []
    if not files:
        warnings.append(f"{ann}: no <class>_test_split<N>.txt files")
    split_of = {p: re.fullmatch(r"(.+)_test_split(\d+)\.txt", p.name).groups() for p in files}
    split_names = sorted({f"split{n}" for _, n in split_of.values()})
    col = Collector(DiskIndex(videos), split_names)
    for p in files:
        cls, split = split_of[p]
        lid = classes.get(norm(cls))
        for ln in _lines(p, warnings):
            video, _, code = ln.rpartition(" ")
            if code not in HMDB_CODES or not video:
                warnings.append(f"{p}: malformed line {ln!r} (expected '<video> <0|1|2>')")
                continue
            e = col.listed(f"{cls}/{video}", f"split{split}", HMDB_CODES[code], None if lid is None else (lid,), p.name)
            if lid is None:
                e.fail("unknown_class", f"{cls}/{video}: class {cls!r} of {p.name} has no folder")
    col.add_unlisted(_class_of(classes))
    return Plan("hmdb51", names, col.result(), split_names, None, warnings, annotation_files=files)


def load_fcvid170(path: Path = FCVID170_FILE) -> list[tuple[int, str]]:
    """[(1-based FCVID index, name)] of the kept categories, in label-id order."""
    rows = [ln.split("\t") for ln in read_lines(path) if not ln.startswith("#")]
    return [(int(i), name) for i, name in rows[1:]]


def _label_row(ln: str) -> list[int] | None:
    vals = ln.replace(",", " ").split()
    return [int(v) for v in vals] if all(v in ("0", "1") for v in vals) else None


def build_fcvid(videos: Path, annotations: Path | None, categories: Path = FCVID170_FILE, **_) -> Plan:
    ann = Path(annotations or videos)
    warnings: list[str] = []
    kept = load_fcvid170(categories)
    col_to_label = {idx - 1: lid for lid, (idx, _) in enumerate(kept)}  # FCVID column -> our label id
    split_file = _require(ann / "FCVID_VideoName_TrainTestSplit.txt")
    label_file = _require(ann / "FCVID_Label.txt")
    lines, rows = _lines(split_file, warnings), read_lines(label_file)
    if len(rows) != len(lines):
        warnings.append(f"{label_file}: {len(rows)} label rows for {len(lines)} videos in {split_file.name}")
    col = Collector(DiskIndex(videos), ["split1"])
    for i, ln in enumerate(lines):
        path, _, part = ln.rpartition(" ")
        if part not in ("train", "test") or not path:
            warnings.append(f"{split_file}: malformed line {i + 1} {ln!r} (expected '<path> <train|test>')")
            continue
        row = _label_row(rows[i]) if i < len(rows) else None
        labels = None
        if row is not None and len(row) == FCVID_NUM_CATEGORIES:
            labels = tuple(sorted(col_to_label[j] for j, v in enumerate(row) if v and j in col_to_label))
        e = col.listed(path, "split1", part, labels, split_file.name, by_basename=True)
        if i >= len(rows):
            e.fail("unknown_class", f"{path}: no row {i + 1} in {label_file.name}")
        elif row is None or len(row) != FCVID_NUM_CATEGORIES:
            e.fail(
                "unknown_class", f"{path}: row {i + 1} of {label_file.name} is not {FCVID_NUM_CATEGORIES} values of 0/1"
            )
        elif not labels:
            orig = [j + 1 for j, v in enumerate(row) if v]
            e.fail(
                "filtered",
                f"{path}: FCVID categories {orig or 'none'} are not among the "
                f"{len(kept)} kept (manifests/data/fcvid170.tsv)",
            )
    col.add_unlisted(lambda rel: ())  # on disk, not in the split file: no labels known
    return Plan(
        "fcvid",
        [n for _, n in kept],
        col.result(),
        ["split1"],
        [i for i, _ in kept],
        warnings,
        params={"categories": categories.name, "multilabel_rule": MULTILABEL_RULE},
        annotation_files=[split_file, label_file, Path(categories)],
    )


MULTILABEL_RULE = "keep a video iff >= 1 of its FCVID labels is kept; labels restricted to the kept ones"


def hashed_part(rel_path: str, test_fraction: float) -> str:
    """Deterministic train/test assignment from the path (not the content, so re-encodes keep their split)."""
    h = int(hashlib.sha256(rel_path.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if h < test_fraction else "train"


def build_folder(videos: Path, annotations: Path | None, test_fraction: float = 0.2, **_) -> Plan:
    warnings: list[str] = []
    names = class_dirs(videos)
    classify = _class_of({norm(n): i for i, n in enumerate(names)})
    disk = DiskIndex(videos)
    files = {}
    if annotations is not None and Path(annotations).is_dir():
        for p in sorted(Path(annotations).iterdir()):
            m = re.fullmatch(r"(.+)_(train|test)\.txt", p.name)
            if m:
                files[p] = m.groups()
    if annotations is not None and not files:
        warnings.append(f"{annotations}: no <split>_train.txt / <split>_test.txt files; using a hashed split")
    split_names = sorted({s for s, _ in files.values()}) or ["split1"]
    col = Collector(disk, split_names)
    for p, (split, part) in files.items():
        for ln in _lines(p, warnings):
            labels = classify(ln.replace("\\", "/").strip("/"))
            e = col.listed(ln, split, part, labels, p.name)
            if labels is None:
                e.fail("unknown_class", f"{ln}: not under a class folder of {videos}")
    if not files:
        for f in disk.files:
            labels = classify(f)
            e = col.listed(f, "split1", hashed_part(f, test_fraction), labels, "hashed split")
            if labels is None:
                e.fail("unknown_class", f"{f}: not under a class folder")
    col.add_unlisted(classify)
    params = {} if files else {"hashed_split": {"test_fraction": test_fraction}}
    return Plan("folder", names, col.result(), split_names, None, warnings, params=params, annotation_files=list(files))


BUILDERS: dict[str, Callable[..., Plan]] = {
    "ucf101": build_ucf101,
    "hmdb51": build_hmdb51,
    "fcvid": build_fcvid,
    "folder": build_folder,
}
