"""The videos format of jobs.export: one video file per extracted RGB stream, for mmaction2's ``VideoDataset``.

``manifests.readers.rawframes`` plans the export (layouts, names, lists, configs) for both formats; this
module writes the files of one video. In mmaction2's ``tools/data/<dataset>/`` video layout, with
``<out>`` in the role of ``data/<dataset>/``::

    <out>/videos/<Class>/<video>.mp4          ucf101, hmdb51, folder (level 2); fcvid, ids: <out>/videos/<video_id>.mp4
    <out>/videos/<Class>/<video>/w00.mp4 ...  a video extracted as temporal windows: one file per window
    <out>/<ds>_<subset>_split_<k>_videos.txt  "<Class>/<video>.mp4 <label> [<label> ...]" (VideoDataset's list)

A file holds the version's stored RGB frames of the video (or window) in order, as many as the version
stores, encoded by ``pipeline.videofile`` (``--video-codec``; the default ``h264-rgb`` decodes with decord
to the stored frames bit for bit). Flow is not written: mmaction2 reads flow only as rawframes
(``DecordDecode`` returns 3-channel frames, its flow pipelines want the x / y planes as images).

Each file (or the folder of a windowed video) is written under a temporary ``.tmp-*`` name in the video
root and renamed into place when complete, so an existing one is complete and a rerun skips it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from manifests.shards import ShardRecord
from pipeline.storage import ShardReader
from pipeline.videofile import VIDEO_CODECS, encode_video

VIDEOS_DIR = "videos"  # video root of the mmaction2 layouts (data/<dataset>/videos in mmaction2)
WINDOW = "w{:02d}"  # subfolder / file stem of window k (the rawframes export names its folders alike)


def windows(rec: ShardRecord) -> list[tuple[str, int, int]]:
    """(file stem, first stored RGB frame, frames) per window; one entry with stem "" for one run."""
    runs = rec.stored_runs("rgb")
    if len(runs) <= 1:
        return [("", *runs[0])]
    return [(WINDOW.format(k), a, n) for k, (a, n) in enumerate(runs)]


def entry(rec: ShardRecord, name: str, codec: str) -> str:
    """What the video occupies under the video root: ``<name>.mp4``, or the folder ``<name>`` of its windows."""
    return name if len(rec.stored_runs("rgb")) > 1 else name + VIDEO_CODECS[codec].suffix


def files(rec: ShardRecord, name: str, codec: str) -> list[tuple[str, int]]:
    """(path under the video root, frames) of each file the video gets: its list lines, in order."""
    suffix = VIDEO_CODECS[codec].suffix
    return [(f"{name}/{stem}{suffix}" if stem else name + suffix, n) for stem, _, n in windows(rec)]


def export_video(reader: ShardReader, rec: ShardRecord, root: Path, codec: str, name: str) -> int:
    """Write the video's file(s) under ``root`` atomically; returns how many were written (0 if present)."""
    suffix = VIDEO_CODECS[codec].suffix
    final = root / entry(rec, name, codec)
    if final.exists():
        return 0
    rgb = reader.read(rec.group, "rgb")  # (n_rgb, H, W, 3) RGB
    fps = rec.fps or 25.0
    parts = windows(rec)
    tmp = root / f".tmp-{name.replace('/', '__')}-{uuid.uuid4().hex[:8]}"
    try:
        if len(parts) == 1:
            tmp = tmp.with_name(tmp.name + suffix)
            encode_video(tmp, rgb[: parts[0][2]], codec, fps)
        else:
            tmp.mkdir()
            for stem, a, n in parts:
                encode_video(tmp / f"{stem}{suffix}", rgb[a : a + n], codec, fps)
        final.parent.mkdir(parents=True, exist_ok=True)  # the class folder (level-2 layouts)
        os.rename(tmp, final)
        return len(parts)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
