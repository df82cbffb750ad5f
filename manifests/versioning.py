"""Content-addressed, immutable dataset versions shared by source manifests and shard datasets.

A version is a directory ``<root>/<version_id>/`` written once: files are produced in a temporary
sibling directory and renamed into place, so a reader never sees a half-written version. The version id
is a short hash of the version's *content* (not of the time it was made), so the same inputs give the
same id. ``<root>/LATEST`` is a one-line pointer to the newest version, updated atomically; it is a
convenience for Makefile stages, and every stage records the concrete version id it pinned.

Layout of a version directory::

    <root>/<version_id>/version.json   # VersionMeta: schema version, kind, source, parent, creation
    <root>/<version_id>/...            # the kind's own tables (Parquet) and files
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

META_FILE = "version.json"
LATEST = "LATEST"
ID_LEN = 16


@dataclasses.dataclass(frozen=True)
class VersionMeta:
    version_id: str
    kind: str  # "source" (issue 4 manifests) or "shards" (extracted dataset)
    schema_version: int
    source: dict[str, Any]  # what it was built from (dataset, paths, parameters)
    parent: str | None  # version id this one derives from (a previous build, or the source manifest)
    created_at: str  # ISO-8601 UTC; recorded, not part of the id
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> VersionMeta:
        data = json.loads(Path(path).read_text())
        return cls(**data)


def content_id(parts: Iterable[bytes | str]) -> str:
    """Hash an ordered sequence of content pieces into a version id (hex, ``ID_LEN`` chars)."""
    h = hashlib.sha256()
    for part in parts:
        b = part.encode() if isinstance(part, str) else part
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:ID_LEN]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def current_umask() -> int:
    """The process umask (read by setting and restoring it: os has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(
    root: Path,
    version_id: str,
    write_files: Callable[[Path], None],
    meta: VersionMeta,
    *,
    update_latest: bool = True,
) -> Path:
    """Write a version atomically. ``write_files(tmpdir)`` fills a temporary directory.

    If ``<root>/<version_id>`` already exists the content is identical by construction and nothing is
    rewritten (versions are immutable); LATEST is still pointed at it. The version directory gets the mode
    a plain ``mkdir`` would (0777 minus the process umask), not ``mkdtemp``'s private 0700, so other users
    of shared storage can read a dataset when the umask allows it.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / version_id
    if not (final / META_FILE).exists():
        tmp = Path(tempfile.mkdtemp(prefix=f".{version_id}.", dir=root))
        try:
            os.chmod(tmp, 0o777 & ~current_umask())
            write_files(tmp)
            (tmp / META_FILE).write_text(meta.to_json())
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / META_FILE).exists():  # lost a race with a concurrent identical build? fine
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if update_latest:
        set_latest(root, version_id)
    return final


def set_latest(root: Path, version_id: str) -> None:
    root = Path(root)
    tmp = root / f".{LATEST}.{os.getpid()}"
    tmp.write_text(version_id + "\n")
    os.replace(tmp, root / LATEST)


def resolve(path: str | os.PathLike) -> Path:
    """Resolve what a user passes as a version to the version directory.

    Accepts a version directory, any file inside one (e.g. its Parquet table), a ``LATEST`` pointer
    file, or a root directory holding a ``LATEST`` pointer. Raises FileNotFoundError naming the path.
    """
    p = Path(path)
    if p.is_file() and p.name == LATEST:
        vid = p.read_text().strip()
        p = p.parent / vid
    elif p.is_file():
        p = p.parent
    elif p.is_dir() and not (p / META_FILE).exists() and (p / LATEST).is_file():
        p = p / (p / LATEST).read_text().strip()
    if not (p / META_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a dataset version (no {META_FILE} in {p})")
    return p


def read_meta(path: str | os.PathLike) -> VersionMeta:
    return VersionMeta.from_file(resolve(path) / META_FILE)


def find_versions(root: str | os.PathLike, max_depth: int = 3) -> list[Path]:
    """Every version directory at or below ``root`` (``root`` itself, ``root/<id>``, ``root/<sub>/<id>`` ...),
    hidden (temporary / work) directories skipped, sorted by path."""
    root = Path(root)
    found, frontier = [], [(root, 0)]
    while frontier:
        d, depth = frontier.pop()
        if (d / META_FILE).is_file():
            found.append(d)
            continue
        if depth < max_depth:
            frontier += [(c, depth + 1) for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")]
    return sorted(found)


def dir_size(path: Path) -> int:
    """Bytes of the files under ``path`` (a hard-linked file counted once)."""
    seen, total = set(), 0
    for p in Path(path).rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def format_bytes(n: float) -> str:
    """Human-readable size: 512 B, 84.0 KiB, 4.1 MiB, 2.3 GiB, 1.2 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
