"""Differences between two dataset versions: videos added, removed and changed (source manifests by
rel_path, shard datasets by video id). ``diff_versions`` is what ``python -m jobs.versions diff`` (and its
alias ``python -m jobs.build_manifest diff``) runs."""

from __future__ import annotations

import dataclasses
import json
import os

from manifests.shards import load_shards
from manifests.source.loader import SourceManifest, load_source
from manifests.source.schema import VideoRecord
from manifests.versioning import read_meta


@dataclasses.dataclass(frozen=True)
class ManifestDiff:
    base: str  # version ids
    other: str
    added: list[str]  # rel paths only in `other`
    removed: list[str]  # rel paths only in `base`
    changed: dict[str, list[str]]  # rel path -> names of the fields that differ
    labels_added: list[str]
    labels_removed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.labels_added or self.labels_removed)

    def lines(self) -> list[str]:
        """Human-readable report: one line per change, then a summary line."""
        out = [f"+ {p}" for p in self.added] + [f"- {p}" for p in self.removed]
        out += [f"~ {p}: {', '.join(fields)}" for p, fields in self.changed.items()]
        out += [f"+ label {n}" for n in self.labels_added] + [f"- label {n}" for n in self.labels_removed]
        out.append(
            f"{self.base} -> {self.other}: {len(self.added)} added, {len(self.removed)} removed, "
            f"{len(self.changed)} changed"
        )
        return out

    def render(self, as_json: bool = False) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) if as_json else "\n".join(self.lines())


def diff_versions(base: str | os.PathLike, other: str | os.PathLike) -> ManifestDiff:
    """The diff of two versions of the same kind (anything ``versioning.resolve`` accepts). FileNotFoundError
    / ValueError (one line) for a missing version or two of different kinds."""
    kinds = [read_meta(base).kind, read_meta(other).kind]
    if kinds[0] != kinds[1]:
        raise ValueError(f"{base} is a {kinds[0]!r} version, {other} a {kinds[1]!r} one")
    if kinds[0] == "shards":
        return diff_shards(load_shards(base), load_shards(other))
    return diff_sources(load_source(base), load_source(other))


def changed_fields(a: VideoRecord, b: VideoRecord) -> list[str]:
    return [f.name for f in dataclasses.fields(VideoRecord) if getattr(a, f.name) != getattr(b, f.name)]


def diff_sources(base: SourceManifest, other: SourceManifest) -> ManifestDiff:
    a = {r.rel_path: r for r in base.videos}
    b = {r.rel_path: r for r in other.videos}
    changed = {p: fields for p in sorted(a.keys() & b.keys()) if (fields := changed_fields(a[p], b[p]))}
    return _between(base, other, a, b, changed)


def _between(base, other, a: dict, b: dict, changed: dict[str, list[str]]) -> ManifestDiff:
    """The diff of two versions whose rows are keyed ``a`` -> ``b``: added and removed keys, labels."""
    return ManifestDiff(
        base.meta.version_id,
        other.meta.version_id,
        sorted(b.keys() - a.keys()),
        sorted(a.keys() - b.keys()),
        changed,
        [n for n in other.labels if n not in base.labels],
        [n for n in base.labels if n not in other.labels],
    )


SHARD_FIELDS = (
    "labels",
    "label_names",
    "splits",
    "n_rgb",
    "n_flow",
    "height",
    "width",
    "checksums",
    "source_rel_path",
    "source_sha256",
)


def diff_shards(base, other) -> ManifestDiff:
    """Differences between two shard dataset versions (``manifests.shards.ShardDataset``), by video id.

    ``changed`` names the record fields that differ (``checksums``: some stream's stored payload changed);
    a video that failed in one version and was extracted in the other shows as added or removed, and its
    failure appears as a ``failed`` change when both versions list it with different stages."""
    a = {r.video_id: r for r in base.records}
    b = {r.video_id: r for r in other.records}
    changed = {
        v: fields
        for v in sorted(a.keys() & b.keys())
        if (fields := [f for f in SHARD_FIELDS if getattr(a[v], f) != getattr(b[v], f)])
    }
    fa = {f.video_id: f.stage for f in base.failures}
    fb = {f.video_id: f.stage for f in other.failures}
    for v in sorted(fa.keys() & fb.keys()):
        if fa[v] != fb[v]:
            changed[v] = [f"failed ({fa[v]} -> {fb[v]})"]
    return _between(base, other, a, b, changed)
