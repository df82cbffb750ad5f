"""Extract a source manifest version into a versioned shard dataset (RGB / Flow image / RGBF, HDF5 + Parquet).

    python -m jobs.extract --manifest DIR_OR_FILE --out DIR [--address ADDR] [--force] [--verify] [--codec NAME |
        --codec rgb=jpeg --codec flow=jpeg-planar ...] [--size H W] [--shard-size N] [--workers N]
        [--flow-preset NAME] [--flow-param k=v ...] [--split NAME ...] [--bound PX] [--min-frames N]
        [--static-threshold PX] [--resize {stretch,short-side-crop}] [--max-failure-rate F]
        [--decode-timeout S] [--retry-failed] [--fps F] [--segments K --segment-frames L]
        [--mode {auto,tasks,pipelined}] [--flow-workers N]

The last line on stdout is the output version id. This module is the command line only: the arguments,
their checks (bad input: one line naming the argument, exit 2, before Ray starts), the flow configuration
resolved once (``pipeline.flow.FlowConfig``), one call of ``jobs.extraction.driver.extract`` and its outcome
(exit 1, one line, when the run fails or must not be published). How a run works (shards, reruns, poison
videos, ``--mode pipelined``, the publishing guards): jobs.extraction.driver and docs/extract.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs.cli import checks
from jobs.extraction.driver import MAX_FAILURE_RATE, MODES, extract
from manifests.extraction import ExtractConfig
from manifests.source.loader import load_source
from manifests.source.schema import KIND as SOURCE_KIND
from pipeline import sampling
from pipeline.decode import PARTIAL_POLICIES, RESIZE_MODES
from pipeline.flow import DEFAULT_PRESET, PRESETS, FlowConfig
from pipeline.storage import CODECS, DEFAULT_CODEC, STREAMS, codec_spec


def config_from_args(a: argparse.Namespace) -> ExtractConfig:
    """The ExtractConfig of parsed arguments; UsageError (naming the argument) for any bad value."""
    codec = dict(DEFAULT_CODEC)
    for c in a.codec or []:
        spec = {s: c for s in STREAMS} if "=" not in c else checks.key_values([c], "--codec")
        for stream, name in spec.items():
            checks.choice(f"--codec {c}: stream", stream, STREAMS)
            checks.choice("--codec", name, CODECS)
        codec.update(spec)
    codec = codec_spec(codec)
    overrides = checks.key_values(a.flow_param or [], "--flow-param")
    try:  # fail early (exit 2, before Ray) on a bad preset or parameter: resolved here, once
        if "preset" in overrides:
            raise ValueError("use --flow-preset to choose a preset")
        flow = FlowConfig.resolve(a.flow_preset, **overrides)
    except (TypeError, ValueError) as e:
        raise checks.UsageError(f"{'--flow-preset' if 'preset must' in str(e) else '--flow-param'}: {e}") from None
    checks.number_in("--level", a.level, 0, 9, allow_none=True)
    checks.number_in("--quality", a.quality, 1, 100, allow_none=True)
    checks.positive_int("--chunk-frames", a.chunk_frames, allow_none=True)
    checks.positive_int("--shard-size", a.shard_size)
    checks.positive_int("--min-frames", a.min_frames)
    if not a.bound > 0:
        raise checks.UsageError(f"--bound {a.bound}: must be > 0 px")
    if not a.static_threshold >= 0:
        raise checks.UsageError(f"--static-threshold {a.static_threshold}: must be >= 0 px")
    codec_opts = {
        k: v
        for k, v in {"level": a.level, "quality": a.quality, "chunk_frames": a.chunk_frames}.items()
        if v is not None
    }
    try:
        sampling.check_sampling(a.fps, a.segments, a.segment_frames)
    except ValueError as e:  # one line, exit status 2, before anything is read or Ray starts
        raise checks.UsageError(str(e)) from None
    return ExtractConfig(
        size=checks.size("--size", a.size),
        resize=a.resize,
        codec=codec,
        codec_opts=codec_opts,
        shard_size=a.shard_size,
        flow=flow,
        bound=a.bound,
        min_frames=a.min_frames,
        static_threshold=a.static_threshold,
        splits=tuple(sorted(set(a.split or []))),
        fps=a.fps,
        segments=a.segments,
        segment_frames=a.segment_frames,
        partial=a.partial,
    )


def check_args(a: argparse.Namespace, cfg: ExtractConfig) -> None:
    """Everything checkable before Ray starts: the manifest, --out, --workers, --split, --address."""
    checks.positive_int("--workers", a.workers, allow_none=True)
    checks.positive_int("--flow-workers", a.flow_workers, allow_none=True)
    if a.flow_workers is not None and a.mode == "tasks":
        raise checks.UsageError(
            f"--flow-workers {a.flow_workers}: only with --mode pipelined or auto "
            f"(--mode tasks solves flow inside the shard tasks)"
        )
    checks.number_in("--max-failure-rate", a.max_failure_rate, 0.0, 1.0)
    checks.version("--manifest", a.manifest, SOURCE_KIND)
    checks.out_dir("--out", a.out)
    if cfg.splits:
        source = load_source(a.manifest)
        known = sorted(set(source.meta.source.get("splits") or []) | {k for r in source.videos for k in r.splits})
        for s in cfg.splits:
            checks.split_in("--split", s, known, source.dir)
    if a.address:
        checks.ray_address("--address", a.address)
    else:
        checks.ray_address("RAY_ADDRESS", os.environ.get("RAY_ADDRESS") or None)


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    p = checks.parser(prog="python -m jobs.extract", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="source manifest (anything versioning.resolve accepts)")
    p.add_argument("--out", required=True, help="root directory of shard dataset versions")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    p.add_argument("--force", action="store_true", help="redo every shard even if done or published")
    p.add_argument("--verify", action="store_true", help="re-check all checksums of shards done earlier")
    p.add_argument(
        "--codec",
        action="append",
        metavar="NAME|STREAM=NAME",
        help=f"codec for all streams or one stream; codecs {sorted(CODECS)}; default {DEFAULT_CODEC}",
    )
    p.add_argument("--level", type=int, default=None, help="gzip level")
    p.add_argument("--quality", type=int, default=None, help="JPEG quality")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per HDF5 chunk (array codecs)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=list(d.size))
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default=d.resize,
        help="stretch: each axis to --size (the paper's 128x171); short-side-crop: keep the aspect "
        "ratio, scale to cover --size, crop the centre",
    )
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="videos per shard")
    p.add_argument("--workers", type=int, default=None, help="shard tasks at a time (and CPUs of a local Ray)")
    p.add_argument(
        "--flow-preset",
        default=DEFAULT_PRESET,
        metavar="NAME",
        help=f"Brox preset {tuple(PRESETS)} (pipeline.flow.PRESETS); default {DEFAULT_PRESET}",
    )
    p.add_argument(
        "--flow-param",
        action="append",
        metavar="K=V",
        help="Brox parameter overriding the preset (pipeline.flow.BroxParams)",
    )
    p.add_argument("--bound", type=float, default=d.bound, help="flow image bound in px")
    p.add_argument("--split", action="append", metavar="NAME", help="only videos in train/test of this split")
    p.add_argument("--min-frames", type=int, default=d.min_frames)
    p.add_argument(
        "--static-threshold",
        type=float,
        default=d.static_threshold,
        help="max |flow| in px below which a video counts as static (failure)",
    )
    p.add_argument(
        "--max-failure-rate",
        type=float,
        default=MAX_FAILURE_RATE,
        help="do not publish when more than this share of the attempted videos failed "
        f"(default {MAX_FAILURE_RATE}); the work dir is kept for a rerun",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="F",
        help="resample every video to F frames/s before anything else (default: native rate)",
    )
    p.add_argument(
        "--segments",
        type=int,
        default=None,
        metavar="K",
        help="keep K evenly spaced windows per video (TSN-style; with --segment-frames)",
    )
    p.add_argument(
        "--segment-frames",
        type=int,
        default=None,
        metavar="L",
        help="frames per window (L-1 flows each; flow never crosses windows)",
    )
    p.add_argument(
        "--decode-timeout",
        type=checks.positive_seconds,
        default=None,
        metavar="S",
        help="seconds a video's decode may take before it is killed and recorded as a failure "
        "(default: per video, max(30, frames x pixels / 1e7) from the source manifest)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="decode again videos that crashed or timed out in an earlier run under --out",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="tasks: each shard task solves its own flow; pipelined: shard tasks decode and write on "
        "CPU while a pool of flow actors (one per GPU, else per core) solves pairs of several "
        "videos per batch; auto (default): pipelined when the cluster has GPUs. Same shards",
    )
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="compute every video, even those a published version under --out holds extracted the same way "
        "(by default their HDF5 groups are copied from there, after a sha256 check)",
    )
    p.add_argument(
        "--partial",
        choices=PARTIAL_POLICIES,
        default=d.partial,
        help="a file that decodes only part-way (a cut download, corrupt data): keep (default) its decodable "
        "prefix, marked partial in the manifests and the card, or fail it",
    )
    p.add_argument(
        "--flow-workers",
        type=int,
        default=None,
        metavar="N",
        help="flow actors of the pipelined mode (default: one per GPU, else one per CPU)",
    )
    return p


@checks.cli("extract")
def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cfg = config_from_args(a)
    check_args(a, cfg)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731  stdout carries only the id
    try:
        vid = extract(
            a.manifest,
            a.out,
            cfg,
            address=a.address,
            force=a.force,
            workers=a.workers,
            verify=a.verify,
            log=log,
            max_failure_rate=a.max_failure_rate,
            decode_timeout=a.decode_timeout,
            retry_failed=a.retry_failed,
            mode=a.mode,
            flow_workers=a.flow_workers,
            reuse=not a.no_reuse,
        ).version_id
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        if isinstance(e, checks.UsageError):
            raise
        log(f"extract: error: {checks.one_line(e)}")
        return 1
    print(vid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
