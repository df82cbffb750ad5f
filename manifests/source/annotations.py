"""Shared pieces of the dataset builders: the build plan, annotation-file reading, disk lookup.

A builder turns (videos dir, annotations dir) into a ``Plan``: the label list and one ``Entry`` per video
(listed in the annotations and/or found on disk) with its labels, split membership and an annotation-level
status. Builders only read annotation files and list directories; probing and hashing happen later
(manifests.source.probe), so builders are fast and testable on their own.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

VIDEO_EXTS = frozenset(
    {".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ogv"}
)


class BuildError(ValueError):
    """The whole build cannot proceed (e.g. a required annotation file is missing); names the file."""


@dataclasses.dataclass
class Entry:
    """One video as the annotations and the directory listing see it (before probing)."""

    rel_path: str  # actual path on disk relative to the videos root, or the listed path if missing
    labels: tuple[int, ...] = ()
    splits: dict[str, str] = dataclasses.field(default_factory=dict)
    status: str = "ok"  # annotation-level: ok | missing | unknown_class | unlisted | filtered | duplicate
    error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def fail(self, status: str, error: str) -> None:
        """Record the first annotation-level failure (later ones become notes)."""
        if self.status == "ok":
            self.status, self.error = status, error
        else:
            self.notes.append(error)


@dataclasses.dataclass
class Plan:
    dataset: str
    labels: list[str]
    entries: list[Entry]
    split_names: list[str]
    label_source_index: list[int | None] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    annotation_files: list[Path] = dataclasses.field(default_factory=list)


def norm(rel: str) -> str:
    """Matching key for a relative path: posix separators, Unicode NFC, case-folded."""
    return unicodedata.normalize("NFC", rel.replace("\\", "/").strip("/")).casefold()


def read_lines(path: Path) -> list[str]:
    """Non-blank lines of a text file without line endings (CRLF, LF or CR) or a UTF-8 BOM."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # old annotation files; every byte maps to a character
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


class DiskIndex:
    """Video files under a root (by extension), looked up exactly, then by NFC + case-folded path."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise BuildError(f"{self.root}: videos directory does not exist")
        self.files = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix.lower() in VIDEO_EXTS
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )
        self._exact = set(self.files)
        self._norm: dict[str, list[str]] = {}
        self._base: dict[str, list[str]] = {}
        for f in self.files:
            self._norm.setdefault(norm(f), []).append(f)
            self._base.setdefault(norm(PurePosixPath(f).name), []).append(f)

    def find(self, rel: str, *, by_basename: bool = False) -> str | None:
        """The on-disk rel path for a listed path, or None. `by_basename`: also match a unique file name."""
        rel = rel.replace("\\", "/").strip("/")
        if rel in self._exact:
            return rel
        hits = self._norm.get(norm(rel), [])
        if len(hits) == 1:
            return hits[0]
        if by_basename:
            hits = self._base.get(norm(PurePosixPath(rel).name), [])
            if len(hits) == 1:
                return hits[0]
        return None


def class_dirs(root: Path) -> list[str]:
    """Sorted names of the non-hidden sub-directories of `root` (the classes of a folder layout)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


class Collector:
    """Accumulates entries keyed by on-disk path; merges repeated listings and flags conflicting ones."""

    def __init__(self, disk: DiskIndex, split_names: list[str]):
        self.disk, self.split_names = disk, split_names
        self.entries: dict[str, Entry] = {}

    def listed(
        self,
        listed_path: str,
        split: str | None,
        part: str | None,
        labels: tuple[int, ...] | None,
        source: str,
        *,
        by_basename: bool = False,
    ) -> Entry:
        """Record that `source` lists `listed_path` as `part` of `split` (with `labels` if known)."""
        found = self.disk.find(listed_path, by_basename=by_basename)
        key = found if found is not None else listed_path.replace("\\", "/").strip("/")
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = Entry(key, splits=dict.fromkeys(self.split_names, "unused"))
            if labels is not None:
                e.labels = labels
            if found is None:
                e.fail("missing", f"{listed_path}: listed in {source} but not found under {self.disk.root}")
        elif labels is not None and e.labels and labels != e.labels:
            e.fail("duplicate", f"{listed_path}: listed again in {source} with different labels")
        if split is not None and part is not None:
            old = e.splits.get(split, "unused")
            if old not in ("unused", part):
                e.fail("duplicate", f"{listed_path}: listed as {old} and as {part} in {split}")
            elif old == part:
                e.notes.append(f"listed twice as {part} in {split} ({source})")
            else:
                e.splits[split] = part
        return e

    def add_unlisted(self, classify) -> None:
        """Add disk files nobody listed; `classify(rel) -> labels tuple | None` (None: unknown class)."""
        for f in self.disk.files:
            if f in self.entries:
                continue
            e = self.entries[f] = Entry(f, splits=dict.fromkeys(self.split_names, "unused"))
            labels = classify(f)
            if labels is None:
                e.fail("unknown_class", f"{f}: not under a known class folder")
            else:
                e.labels = labels
                e.fail("unlisted", f"{f}: on disk but in no split file")

    def result(self) -> list[Entry]:
        return [self.entries[k] for k in sorted(self.entries)]
