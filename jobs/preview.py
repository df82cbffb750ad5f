"""Render one extracted video of a shard dataset to a PNG panel (rows RGB / Flow / RGBF / flow colours).

    python -m jobs.preview --manifest data/shards/LATEST --video v_MoveRight_g01_c01 --out runs/preview
    make preview VIDEO=v_MoveRight_g01_c01

Writes <out>/<video_id>.png (the panel of jobs.plots.stream_panel) and prints its path. Without --video,
or with an unknown id, it lists some video ids of the dataset and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.cli import checks
from jobs.report import plots
from manifests.shards import load_shards
from pipeline.storage import ShardReader


def preview(manifest: str | Path, video_id: str, out: str | Path, frames: int = 6) -> Path:
    """Write the panel of `video_id` from shard dataset `manifest` to <out>/<video_id>.png."""
    ds = load_shards(manifest)
    by_id = {r.video_id: r for r in ds.records}
    video_id = checks.nfc(video_id)  # ids are NFC (manifests.source.build.video_ids); accept an NFD query too
    if video_id not in by_id:
        failed = {f.video_id: f for f in ds.failures}
        if video_id in failed:  # e.g. its decoder crashed or timed out: say why, in one line
            f = failed[video_id]
            raise KeyError(f"{ds.root}: video {video_id!r} was not extracted (stage {f.stage}): {f.error}")
        some = ", ".join(sorted(by_id)[:8])
        raise KeyError(f"{ds.root}: no video {video_id!r} among {len(by_id)} videos (e.g. {some})")
    rec = by_id[video_id]
    with ShardReader(rec.shard_path) as reader:
        title = f"{video_id} — {', '.join(rec.label_names)}"
        return plots.stream_panel(reader, rec.group, Path(out) / f"{video_id}.png", n=frames, title=title)


@checks.cli("preview")
def main(argv: list[str] | None = None) -> int:
    p = checks.parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="shard dataset version (dir, LATEST file or root)")
    p.add_argument("--video", default="", help="video id, e.g. v_MoveRight_g01_c01")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", type=int, default=6, help="frames (columns) in the panel")
    a = p.parse_args(argv)
    checks.positive_int("--frames", a.frames)
    checks.version("--manifest", a.manifest, "shards")
    checks.out_dir("--out", a.out)
    if not a.video:
        ds = load_shards(a.manifest)
        print(f"--video is required (make preview VIDEO=...); some ids in {ds.root}:", file=sys.stderr)
        for r in ds.records[:10]:
            print(f"  {r.video_id}  ({', '.join(r.label_names)})", file=sys.stderr)
        return 2
    try:
        path = preview(a.manifest, a.video, a.out, a.frames)
    except KeyError as e:
        raise checks.UsageError(f"--video {a.video}: {e.args[0]}") from None
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
