"""Temporal sampling (--fps, --segments/--segment-frames) and bounded-memory streaming extraction (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from manifests.extraction import ExtractConfig, Rejected, VideoTask, flow_stage, stream_video, streams_of
from manifests.extraction import shard as extraction
from pipeline import sampling
from pipeline.decode import FrameStream, decode_video
from pipeline.flow import FlowConfig
from pipeline.storage import ShardReader, ShardWriter

from videoutil import moving_square, write_video

CFG = ExtractConfig(size=(32, 40), flow=FlowConfig.resolve(inner=2, outer=2, solver=2))


# ------------------------------------------------------------------------------------------ pure index rules
def test_resampling_rule():
    assert sampling.source_index(np.arange(5), 25.0, 12.5).tolist() == [0, 2, 4, 6, 8]  # every other frame
    assert sampling.source_index(np.arange(6), 10.0, 25.0).tolist() == [0, 0, 1, 1, 2, 2]  # repeats
    assert sampling.source_index(np.arange(4), 30.0, None).tolist() == [0, 1, 2, 3]
    for n, r, f in [(10, 25.0, 12.5), (11, 25.0, 12.5), (7, 10.0, 25.0), (100, 29.97, 10.0), (1, 30.0, 5.0)]:
        k = sampling.output_count(n, r, f)
        assert sampling.source_index(k - 1, r, f) <= n - 1 < sampling.source_index(k, r, f)


def test_windows_rule():
    assert sampling.windows(100, None, None) == [(0, 100)]
    w = sampling.windows(100, 3, 10)  # segments [0,33) [33,66) [66,100): centred windows
    assert w == [(11, 10), (44, 10), (78, 10)]
    for t, k, n in [(30, 3, 10), (31, 4, 7), (1000, 25, 16), (17, 1, 16)]:
        w = sampling.windows(t, k, n)
        assert len(w) == k and all(b[0] >= a[0] + a[1] for a, b in zip(w, w[1:])) and w[-1][0] + n <= t
    assert sampling.windows(12, 3, 5) == [(0, 12)]  # would overlap: merged into one run, no frame twice
    assert sampling.windows(4, 3, 5) == []  # shorter than one window


@pytest.mark.parametrize("fps", [None, 10.0, 40.0])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_frame_selector_matches_direct_indexing(fps, chunk):
    n, native = 50, 25.0
    src = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    t = sampling.output_count(n, native, fps)
    for wins in (None, sampling.windows(t, 3, 4)):
        sel = sampling.FrameSelector(wins, native, fps)
        got: dict[int, list] = {}
        ranges = sel.source_ranges() or [(0, n)]
        for a, b in ranges:  # only the source frames the windows need, as a seeking decoder gives them
            for s in range(a, b, chunk):
                for w, frames in sel.push(src[s : min(b, s + chunk)], s):
                    got.setdefault(w, []).extend(frames[:, 0, 0, 0].tolist())
        runs = wins or [(0, t)]
        want = {i: sampling.source_index(np.arange(a, a + m), native, fps).tolist() for i, (a, m) in enumerate(runs)}
        assert got == want


@pytest.mark.parametrize(
    "bad",
    [
        {"fps": 0},
        {"fps": -1.0},
        {"fps": float("nan")},
        {"segments": 0, "segment_frames": 4},
        {"segments": 2, "segment_frames": 1},
        {"segments": 2, "segment_frames": None},
    ],
)
def test_check_sampling_rejects(bad):
    args = {"fps": None, "segments": None, "segment_frames": None, **bad}
    with pytest.raises(ValueError, match="--"):
        sampling.check_sampling(**args)


@pytest.mark.parametrize(
    "argv,name",
    [
        (["--fps", "0"], "--fps"),
        (["--fps", "-2"], "--fps"),
        (["--segments", "0", "--segment-frames", "8"], "--segments"),
        (["--segments", "4", "--segment-frames", "1"], "--segment-frames"),
    ],
)
def test_cli_bad_sampling_exit_2_one_line(argv, name, tmp_path, capsys):
    from jobs.extract import main

    try:
        code = main(["--manifest", str(tmp_path / "m"), "--out", str(tmp_path / "out"), *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"error: {name} " in err, err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- streaming decode
def test_frame_stream_chunks_equal_whole_decode(tmp_path):
    p = write_video(tmp_path / "v.avi", moving_square(23, 48, 64))
    whole = decode_video(p, (32, 40))
    for backend in ("decord", "ffmpeg"):
        fs = FrameStream(p, (32, 40), chunk=5, backend=backend)
        chunks = list(fs)
        assert [(b, len(c)) for b, c in chunks] == [(0, 5), (5, 5), (10, 5), (15, 5), (20, 3)]
        assert fs.count == 23 and fs.backend == backend
        assert np.array_equal(np.concatenate([c for _, c in chunks]), whole)  # same frames from both backends
        # only some ranges: decord seeks over the gaps (stopping its decoder after each), ffmpeg decodes
        # through them; same frames
        got = list(FrameStream(p, (32, 40), chunk=4, backend=backend, ranges=[(2, 4), (9, 15), (20, 30)]))
        idx = [b + i for b, c in got for i in range(len(c))]
        assert idx == [2, 3, *range(9, 15), 20, 21, 22] and max(len(c) for _, c in got) <= 4
        assert all(np.array_equal(c, whole[b : b + len(c)]) for b, c in got)
    assert sum(len(c) for _, c in FrameStream(p, (32, 40), chunk=4, limit=9)) == 9


def test_frame_stream_of_a_long_video_goes_through_ffmpeg(tmp_path, monkeypatch):
    """Past DECORD_AHEAD_MAX_BYTES (decord would read and decode ahead of the caller), the default order
    streams with ffmpeg and keeps decord as the fallback; same frames, no failure note."""
    from pipeline import decode

    p = write_video(tmp_path / "v.avi", moving_square(23, 48, 64))
    whole = decode_video(p, (32, 40))
    size = p.stat().st_size + 23 * 32 * 40 * 3  # what decord could hold ahead of the caller here
    for limit, backend in ((size, "decord"), (size - 1, "ffmpeg")):
        monkeypatch.setattr(decode, "DECORD_AHEAD_MAX_BYTES", limit)
        fs = FrameStream(p, (32, 40), chunk=5)
        assert np.array_equal(np.concatenate([c for _, c in fs]), whole)
        assert fs.backend == backend and fs.note is None and fs.count == 23
    # declined decord is still the fallback when ffmpeg fails
    monkeypatch.setitem(decode.STREAM_BACKENDS, "ffmpeg", _failing)
    fs = FrameStream(p, (32, 40), chunk=5)
    assert np.array_equal(np.concatenate([c for _, c in fs]), whole)
    assert fs.backend == "decord" and "ffmpeg broke" in fs.note


def _failing(path, size, chunk, ranges):
    from pipeline.decode import BackendFailure

    raise BackendFailure("ffmpeg broke")
    yield  # a generator, like the real backends


# ------------------------------------------------------------------------------------- streaming extraction
def _task(path, n, fps=25.0) -> VideoTask:
    return VideoTask(path.stem, str(path), path.name, None, None, num_frames=n, fps=fps, duration_s=n / fps)


def _stream(tmp_path, task, cfg, name="s.h5", contained=False):
    flow = flow_stage(cfg, "cpu")
    with ShardWriter(tmp_path / name, codec="lzf") as w:
        row = stream_video(task, cfg, flow, w, "g", contained=contained)
    r = ShardReader(tmp_path / name)
    return row, {s: r.read("g", s) for s in ("rgb", "flow", "rgbf")}, r.attrs("g")


@pytest.mark.parametrize("chunk", [5, 64])
def test_streamed_video_equals_unwindowed(tmp_path, monkeypatch, chunk):
    """Several decode chunks and flow groups (pairs straddling chunks) give exactly the whole-video result."""
    monkeypatch.setattr(extraction, "STREAM_FRAMES", chunk)
    n = 150 if chunk == 64 else 37
    p = write_video(tmp_path / "long.avi", moving_square(n, 48, 64))
    row, got, attrs = _stream(tmp_path, _task(p, n), CFG, contained=chunk == 64)
    want = streams_of(decode_video(p, CFG.size), flow_stage(CFG, "cpu"), CFG)
    assert row["n_rgb"] == n and row["n_flow"] == n - 1 and row["windows"] == [[0, n]]
    for s in want:
        assert np.array_equal(got[s], want[s]), s
    assert attrs["windows"] == f"[[0, {n}]]"


def test_prefetch_thread_gives_the_same_shard(tmp_path, monkeypatch):
    """The GPU path decodes ahead in a thread (bounded queue); same content, and a decode failure in the
    thread reaches the caller."""
    monkeypatch.setattr(extraction, "STREAM_FRAMES", 4)
    p = write_video(tmp_path / "v.avi", moving_square(19, 48, 64))
    flow = flow_stage(CFG, "cpu")
    got = []
    for k, prefetch in enumerate((0, 2)):
        with ShardWriter(tmp_path / f"{k}.h5", codec="lzf") as w:
            got.append(stream_video(_task(p, 19), CFG, flow, w, "g", contained=False, prefetch=prefetch))
    assert got[0]["checksums"] == got[1]["checksums"] and got[0]["n_rgb"] == 19
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\0" * 2048)
    with ShardWriter(tmp_path / "x.h5") as w, pytest.raises(Rejected, match="bad.avi"):
        stream_video(_task(bad, 19), CFG, flow, w, "g", contained=False, prefetch=2)


def test_segments_and_fps_extract_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(extraction, "STREAM_FRAMES", 6)
    n = 60
    p = write_video(tmp_path / "seg.avi", moving_square(n, 48, 64))
    cfg = ExtractConfig(**{**CFG.__dict__, "fps": 12.5, "segments": 3, "segment_frames": 4})
    row, got, attrs = _stream(tmp_path, _task(p, n), cfg)
    t = sampling.output_count(n, 25.0, 12.5)
    wins = sampling.windows(t, 3, 4)
    assert t == 30 and row["windows"] == [list(w) for w in wins] and row["n_rgb"] == 12 and row["n_flow"] == 9
    assert row["fps"] == 12.5
    whole = decode_video(p, cfg.size)
    flow = flow_stage(cfg, "cpu")
    for i, (a, m) in enumerate(wins):  # each window: its frames, and flow only inside it
        frames = whole[sampling.source_index(np.arange(a, a + m), 25.0, 12.5)]
        ref = streams_of(frames, flow, cfg)
        assert np.array_equal(got["rgb"][4 * i : 4 * i + 4], ref["rgb"])
        assert np.array_equal(got["flow"][3 * i : 3 * i + 3], ref["flow"])
        assert np.array_equal(got["rgbf"][3 * i : 3 * i + 3], ref["rgbf"])


def test_video_shorter_than_one_window_is_a_failure(tmp_path):
    p = write_video(tmp_path / "short.avi", moving_square(9, 48, 64))
    cfg = ExtractConfig(**{**CFG.__dict__, "segments": 2, "segment_frames": 16})
    with ShardWriter(tmp_path / "s.h5") as w:
        with pytest.raises(Rejected) as e:
            stream_video(_task(p, 9), cfg, flow_stage(cfg, "cpu"), w, "g", contained=False)
        assert e.value.stage == "length" and "short.avi: 9 frames < one window of 16 frames" in e.value.reason
        assert "g" not in w._f  # nothing of it stays in the shard's index


def test_failure_part_way_discards_the_group(tmp_path, monkeypatch):
    """A video that fails after some chunks were written leaves nothing in the shard's index."""
    monkeypatch.setattr(extraction, "STREAM_FRAMES", 4)
    p = write_video(tmp_path / "v.avi", moving_square(20, 48, 64))
    calls = {"n": 0}
    real = flow_stage(CFG, "cpu")

    def flaky(frames):
        calls["n"] += 1
        if calls["n"] == 2:
            return np.full((len(frames) - 1, *frames.shape[1:3], 2), np.nan, np.float32)
        return real(frames)

    with ShardWriter(tmp_path / "s.h5", codec="lzf") as w:
        with pytest.raises(Rejected, match="NaN"):
            stream_video(_task(p, 20), CFG, flaky, w, "g", contained=False)
        w.add(
            "other",
            {
                "rgb": np.zeros((2, 32, 40, 3), np.uint8),
                "flow": np.zeros((1, 32, 40, 3), np.uint8),
                "rgbf": np.zeros((1, 32, 40, 3), np.uint8),
            },
        )
    with ShardReader(tmp_path / "s.h5") as r:
        assert r.verify(full=True) == ["other"]


def _damaged_in_the_middle(path, n: int):
    """An MP4 of ``n`` frames (moov first) with random bytes over 2 KB of its data at half the file."""
    import subprocess

    import imageio_ffmpeg

    src = write_video(path.with_name("src.mp4"), moving_square(n, 48, 64, seed=3))
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(src),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(path),
        ],
        check=True,
    )
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


# decord first (it raises; in the contained child, as in production) / ffmpeg first (-xerror; in-process, so
# that the monkeypatched limit applies)
@pytest.mark.parametrize("decord_ahead,contained", [(None, True), (0, False)])
def test_corrupt_frame_mid_video_keeps_the_prefix_or_fails_by_policy(tmp_path, monkeypatch, decord_ahead, contained):
    """A corrupt region in the middle of a long video, through build_shard: by default the frames before the
    damage are the video, marked partial with the reason (the source manifest counts the same prefix,
    tests/test_partial.py); with ``partial="fail"`` the video fails with it (stage decode). Either way the
    other video of the shard is extracted as usual and nothing is spliced."""
    import dataclasses

    from manifests.extraction import ShardPlan, build_shard
    from pipeline import decode

    if decord_ahead is not None:  # the decoder child inherits the environment, not a monkeypatch
        monkeypatch.setattr(decode, "DECORD_AHEAD_MAX_BYTES", decord_ahead)
    bad = _damaged_in_the_middle(tmp_path / "bad.mp4", 200)
    good = write_video(tmp_path / "good.avi", moving_square(9, 48, 64))
    vids = (VideoTask("bad", str(bad), "bad.mp4", None, None), VideoTask("good", str(good), "good.avi", None, None))
    plan = ShardPlan(0, "00000.h5", vids)
    s = build_shard(plan, CFG, str(tmp_path / "keep"), contained=contained)
    assert not s["failures"], s["failures"]
    rows = {v["video_id"]: v for v in s["videos"]}
    assert 2 <= rows["bad"]["n_rgb"] < 200 and rows["bad"]["partial"].startswith(("ffmpeg", "decord")), rows
    assert rows["good"]["n_rgb"] == 9 and "partial" not in rows["good"]
    assert len(decode.decode_video(bad, CFG.size)) == rows["bad"]["n_rgb"]  # a whole-file decode: the same prefix
    with ShardReader(s["path"]) as r:
        assert r.verify(full=True) == ["bad", "good"]
    s = build_shard(plan, dataclasses.replace(CFG, partial="fail"), str(tmp_path / "fail"), contained=contained)
    (f,) = s["failures"]
    assert f["video_id"] == "bad" and f["stage"] == "decode" and "bad.mp4" in f["error"], f
    assert "--partial fail" in f["error"] and "decodes only part-way" in f["error"], f
    assert [(v["video_id"], v["n_rgb"]) for v in s["videos"]] == [("good", 9)]


# ------------------------------------------------------------------------------------- clips inside windows
def test_window_clip_starts_stay_inside_windows():
    from pipeline import clips

    lengths = [10, 3, 20]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        w, s = clips.window_random_start(lengths, 8, rng)
        assert (s + 8 <= lengths[w]) or (lengths[w] < 8 and s == 0)
        seen.add(w)
    assert seen == {0, 1, 2}
    starts = clips.window_test_starts(lengths, 8, 25)
    assert len(starts) == 25 and starts[0] == (0, 0) and starts[-1] == (2, 12)
    assert all((s + 8 <= lengths[w]) or s == 0 for w, s in starts)
    # one window: exactly the unwindowed rules, with the same random draws
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert clips.window_random_start([40], 16, a) == (0, clips.random_start(40, 16, b))
    assert [s for _, s in clips.window_test_starts([40], 16, 25)] == clips.evenly_spaced_starts(40, 16, 25).tolist()


def test_clip_dataset_never_crosses_a_window_gap(tmp_path):
    from manifests.readers.clips import ClipDataset
    from manifests.shards import VideoStreams, load_shards, write_shard_dataset

    from fixtures import coord_frames

    wins = ((0, 10), (30, 4), (50, 12))  # 26 stored rgb frames; storage ranges [0,10) [10,14) [14,26)
    rgb = coord_frames(26, 20, 26)
    cut = np.cumsum([0] + [n for _, n in wins])
    flow = np.concatenate([rgb[a + 1 : b] for a, b in zip(cut, cut[1:])])  # 23 = 26 - 3 frames
    videos = [
        VideoStreams(f"v{i}", {"rgb": rgb, "flow": flow, "rgbf": flow}, (0,), {"split1": split}, windows=wins)
        for i, split in enumerate(["train", "test"])
    ]
    root = write_shard_dataset(tmp_path / "shards", videos, ["a"], codec="lzf")
    rec = load_shards(root).records[0]
    assert rec.windows == wins and rec.n_rgb == 26 and rec.n_flow == 23
    kw = dict(clip_len=6, crop=16, mean=(0, 0, 0), std=(1, 1, 1))
    for stream in ("rgb", "flow"):
        # every stored frame holds its rgb index; flow frames of window w hold cut[w]+1 .. cut[w+1]-1
        ranges = [(a + (stream == "flow"), b) for a, b in zip(cut, cut[1:])]
        train = ClipDataset(root, "split1", "train", stream, **kw)
        test = ClipDataset(root, "split1", "test", stream, num_clips=25, num_crops=1, **kw)
        seen = []
        for epoch in range(40):
            train.set_epoch(epoch)
            seen.append(train[0][0])
        seen += [test[c][0][0] for c in range(25)]
        used = set()
        for x in seen:
            t = np.rint(x[2, :, 0, 0].numpy() * 255).astype(int)  # rgb index of each clip frame
            inside = [a <= t.min() and t.max() < b for a, b in ranges]
            assert any(inside), (stream, t)
            used.add(inside.index(True))
        assert used == {0, 1, 2}


def test_short_side_crop_streams_like_decode_video(tmp_path):
    """--resize short-side-crop (jobs.extract) gives the same frames streamed as decode_video whole."""
    p = write_video(tmp_path / "wide.avi", moving_square(9, 48, 96))
    whole = decode_video(p, (32, 40), resize="short-side-crop")
    got = np.concatenate([c for _, c in FrameStream(p, (32, 40), chunk=4, resize="short-side-crop")])
    assert np.array_equal(got, whole)
