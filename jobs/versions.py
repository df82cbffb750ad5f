"""List the dataset versions under a root, and diff two versions of the same kind.

    python -m jobs.versions ls ROOT [--json]
    python -m jobs.versions diff A B [--json]

``ls`` prints one row per version found at or below ROOT (source manifests and shard datasets, e.g.
``data/``): id, kind, parent, creation time (UTC), counts (videos, failures or non-ok rows, labels /
shards), size on disk, and ``*`` for the version its root's ``LATEST`` points at. ``diff`` takes
anything ``manifests.versioning.resolve`` accepts and lists the videos added (+), removed (-) and changed
(~) from A to B (source manifests by rel_path, shard datasets by video id); exit status 0 when they are
equal, 1 when they differ, 2 on bad input (unknown version, different kinds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jobs.cli import checks
from manifests.diff import diff_versions
from manifests.versioning import LATEST, VersionMeta, dir_size, find_versions, format_bytes


def _counts(meta: VersionMeta) -> str:
    x = meta.extra
    if meta.kind == "shards":
        return (
            f"{x.get('num_videos', '?')} videos, {x.get('num_failures', '?')} failed, {x.get('num_shards', '?')} shards"
        )
    bad = sum(n for s, n in x.get("status_counts", {}).items() if s != "ok")
    return f"{x.get('num_videos', '?')} videos, {bad} not ok, {x.get('num_labels', '?')} labels"


def list_rows(root: Path) -> list[dict]:
    rows = []
    for vdir in find_versions(root):
        meta = VersionMeta.from_file(vdir / "version.json")
        latest = vdir.parent / LATEST
        is_latest = latest.is_file() and latest.read_text().strip() == vdir.name
        rows.append(
            {
                "id": meta.version_id,
                "kind": meta.kind,
                "parent": meta.parent or "-",
                "created": meta.created_at,
                "counts": _counts(meta),
                "bytes": dir_size(vdir),
                "latest": is_latest,
                "path": str(vdir),
            }
        )
    return rows


def ls_main(argv: list[str]) -> int:
    ap = checks.parser(prog="python -m jobs.versions ls")
    ap.add_argument("root", type=Path)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args(argv)
    if not a.root.is_dir():
        print(f"versions: error: ROOT {a.root}: no such directory", file=sys.stderr)
        return 2
    rows = list_rows(a.root)
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"versions: no dataset versions under {a.root}", file=sys.stderr)
        return 0
    head = ["", "id", "kind", "parent", "created (UTC)", "counts", "size", "path"]
    table = [
        [
            "*" if r["latest"] else "",
            r["id"],
            r["kind"],
            r["parent"],
            r["created"],
            r["counts"],
            format_bytes(r["bytes"]),
            str(Path(r["path"]).parent),
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    for line in [head, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    print("(* = the version LATEST of its root points at)")
    return 0


def diff_main(argv: list[str]) -> int:
    ap = checks.parser(prog="python -m jobs.versions diff")
    ap.add_argument("base")
    ap.add_argument("other")
    ap.add_argument("--json", action="store_true", help="print the diff as JSON")
    a = ap.parse_args(argv)
    try:
        d = diff_versions(a.base, a.other)
    except (FileNotFoundError, ValueError) as e:
        print(f"versions: error: {e}", file=sys.stderr)
        return 2
    print(d.render(a.json))
    return 0 if d.empty else 1


@checks.cli("versions")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"ls": ls_main, "diff": diff_main}
    if not argv or argv[0] not in commands:
        got = repr(argv[0]) if argv else "nothing"
        raise checks.UsageError(
            f"expected a command, got {got}; usage: python -m jobs.versions {{ls ROOT | diff A B}} [--json]"
        )
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
