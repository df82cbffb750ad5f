"""Generate the embedded demo dataset laid out like UCF-101.

    python -m jobs.make_demo_data --out data/demo [--seed 0] [--classes 12] [--videos-per-class 16]
                                  [--clips-per-group 4] [--frames 20] [--size 48 64] [--class-set target|pretrain]

Writes
    <out>/videos/<ClassName>/v_<ClassName>_gXX_cYY.mp4     (mp4v via OpenCV's FFmpeg backend; --ext .avi: MJPG)
    <out>/annotations/classInd.txt                          "1 ClassName"
    <out>/annotations/trainlist0{1,2,3}.txt                 "ClassName/v_..._g01_c01.mp4 1"
    <out>/annotations/testlist0{1,2,3}.txt                  "ClassName/v_..._g01_c01.mp4"
    <out>/synth.json                                        the generator arguments
Split files use CRLF line endings like the official UCF-101 files. Same arguments give identical frames
and (with OpenCV's encoder, which writes no timestamps) identical file bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.cli import checks
from jobs.demokit import synth
from jobs.demokit.encode import FOURCC, write_video

NUM_SPLITS = 3


def _write_crlf(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def make_dataset(
    out: Path,
    *,
    seed: int = 0,
    classes: int | None = None,
    videos_per_class: int = 16,
    clips_per_group: int = 4,
    frames: int = 20,
    size: tuple[int, int] = (48, 64),
    class_set: str = "target",
    ext: str = ".mp4",
    fps: float = 25.0,
) -> dict:
    """Render, encode and lay out the dataset under `out`; returns the summary written to synth.json."""
    if ext not in FOURCC:
        raise ValueError(f"ext={ext!r}: expected one of {sorted(FOURCC)}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"size={size}: height and width must be even (MPEG-4 and MJPEG drop an odd last column)")
    names = synth.class_names(class_set, classes)
    pairs = synth.group_clips(videos_per_class, clips_per_group)
    num_groups = pairs[-1][0] if pairs else 0
    if num_groups < 2:
        raise ValueError(
            f"videos_per_class={videos_per_class}, clips_per_group={clips_per_group}: "
            "need at least 2 groups so that train and test splits are both non-empty"
        )
    out = Path(out)
    entries = []
    for label, name in enumerate(names, start=1):
        for group, clip in pairs:
            rel = synth.video_rel_path(name, group, clip, ext)
            video = synth.render_video(name, seed=seed, group=group, clip=clip, frames=frames, size=size)
            write_video(out / "videos" / rel, video, fps)
            entries.append((name, rel, label, group))
    ann = out / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    _write_crlf(ann / "classInd.txt", [f"{i} {n}" for i, n in enumerate(names, start=1)])
    for split in range(1, NUM_SPLITS + 1):
        train, test = synth.split_file_lines(entries, num_groups, split)
        _write_crlf(ann / f"trainlist{split:02d}.txt", train)
        _write_crlf(ann / f"testlist{split:02d}.txt", test)
    summary = {
        "seed": seed,
        "class_set": class_set,
        "classes": names,
        "videos_per_class": videos_per_class,
        "clips_per_group": clips_per_group,
        "groups": num_groups,
        "frames": frames,
        "size": list(size),
        "ext": ext,
        "fps": fps,
        "videos": len(entries),
    }
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def check_args(a: argparse.Namespace) -> None:
    """Every argument, before a single video is rendered (UsageError naming it)."""
    checks.out_dir("--out", a.out)
    n = len(synth.class_names(a.class_set, None))
    if a.classes is not None and not 1 <= a.classes <= n:
        raise checks.UsageError(f"--classes {a.classes}: the {a.class_set!r} class set has 1..{n} classes")
    checks.positive_int("--videos-per-class", a.videos_per_class)
    checks.positive_int("--clips-per-group", a.clips_per_group)
    if -(-a.videos_per_class // a.clips_per_group) < 2:
        raise checks.UsageError(
            f"--videos-per-class {a.videos_per_class}: with --clips-per-group "
            f"{a.clips_per_group} that is < 2 groups (train and test need one each)"
        )
    checks.positive_int("--frames", a.frames, minimum=2)
    checks.size("--size", a.size, minimum=16, even=True)


@checks.cli("make_demo_data")
def main(argv: list[str] | None = None) -> int:
    p = checks.parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="dataset root (videos/ and annotations/ go here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=None, help="first N classes of the class set (default all)")
    p.add_argument("--class-set", choices=sorted(synth.CLASS_SETS), default="target")
    p.add_argument("--videos-per-class", type=int, default=16)
    p.add_argument(
        "--clips-per-group",
        type=int,
        default=4,
        help="clips per group (scene); split k tests the k-th third of the groups",
    )
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", type=int, nargs=2, default=(48, 64), metavar=("H", "W"), help="even sizes")
    p.add_argument("--ext", choices=sorted(FOURCC), default=".mp4")
    a = p.parse_args(argv)
    check_args(a)
    s = make_dataset(
        a.out,
        seed=a.seed,
        classes=a.classes,
        videos_per_class=a.videos_per_class,
        clips_per_group=a.clips_per_group,
        frames=a.frames,
        size=tuple(a.size),
        class_set=a.class_set,
        ext=a.ext,
    )
    print(
        f"{a.out}: {s['videos']} videos, {len(s['classes'])} classes ({s['class_set']}), "
        f"{s['groups']} groups, {s['frames']} frames of {s['size'][0]}x{s['size'][1]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
