"""Build a versioned source manifest; probing and hashing run as Ray tasks.

    python -m jobs.build_manifest --dataset {ucf101,hmdb51,fcvid,folder} --videos DIR [--annotations DIR]
                                  --out DIR [--workers N] [--address ADDR] [--chunk K] [--max-failure-rate F]
                                  [--decode-timeout S] [--retry-failed]
    python -m jobs.build_manifest diff A B [--json]

The build prints the new version id as the last line of stdout (progress goes to stderr). Ray is the
default: a local cluster with --workers CPUs, or an existing one via --address / RAY_ADDRESS.
``--workers 0`` runs in-process without Ray (for small builds; Ray startup takes seconds).
Each video's frame count decodes in a contained child process (pipeline.contain): a decoder crash or a
hang past the time limit costs that video (status decode_crash / decode_timeout), never the task or the job;
<out>/poison.jsonl remembers them so a rerun skips them unless --retry-failed (manifests.poison).
``diff`` lists the videos added, removed and changed between two versions (dirs, LATEST files or roots).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jobs.cli import checks, cluster
from jobs.report.dataset_card import write_card_safely
from manifests.diff import diff_versions
from manifests.source.annotations import BuildError
from manifests.source.build import build
from manifests.source.builders import BUILDERS
from manifests.source.probe import inspect_many
from manifests.versioning import read_meta
from pipeline.decode import PARTIAL_POLICIES

MAX_FAILURE_RATE = 0.5  # as jobs.extract: above it the cause is systemic (wrong mount, missing codec)
TASK_OPTIONS = {"num_cpus": 1, "max_retries": 2}  # Ray resources live here (jobs/), not in the stages
LOCAL_CHUNK = 8  # videos per batch with --workers 0


def ray_inspect(paths: list[Path], workers: int, address: str | None, chunk: int, **opts: Any) -> list[dict[str, Any]]:
    """Start (or join) Ray, run inspect_on_ray (opts: inspect_video's keyword arguments), shut Ray down."""
    with cluster.session(address, workers):
        return inspect_on_ray(paths, chunk, **opts)


def inspect_on_ray(paths: list[Path], chunk: int, progress: bool = True, **opts: Any) -> list[dict[str, Any]]:
    """inspect_many over `paths` as Ray tasks of `chunk` videos, at most 2 tasks per CPU in flight
    (opts: inspect_video's keyword arguments, e.g. timeout, known, contained)."""
    import ray

    task = ray.remote(**TASK_OPTIONS)(inspect_many)
    limit = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    results: dict[int, list[dict[str, Any]]] = {}
    with tqdm(total=len(paths), unit="video", desc="probe+hash", file=sys.stderr, disable=not progress) as bar:
        for i, out in cluster.bounded(
            ray, lambda i: task.remote([str(p) for p in chunks[i]], **opts), range(len(chunks)), limit
        ):
            if isinstance(out, ray.exceptions.RayError):  # retries spent: the job fails, as before
                raise out
            results[i] = out
            bar.update(len(out))
    return [f for i in range(len(chunks)) for f in results[i]]


def local_inspect(paths: list[Path], **opts: Any) -> list[dict[str, Any]]:
    """Inspection in this process (--workers 0; decoding still contained): no Ray startup cost, one core."""
    out: list[dict[str, Any]] = []
    with tqdm(total=len(paths), unit="video", desc="probe+hash", file=sys.stderr) as bar:
        for i in range(0, len(paths), LOCAL_CHUNK):  # chunks: one hand-over to the contained decoder each
            out += inspect_many(paths[i : i + LOCAL_CHUNK], **opts)
            bar.update(len(paths[i : i + LOCAL_CHUNK]))
    return out


def check_args(args: argparse.Namespace) -> None:
    """Values, paths and the cluster address, before any listing, probing or Ray (UsageError)."""
    checks.positive_int("--workers", args.workers, minimum=0)
    checks.positive_int("--chunk", args.chunk)
    checks.number_in("--test-fraction", args.test_fraction, 0.0, 1.0)
    checks.number_in("--max-failure-rate", args.max_failure_rate, 0.0, 1.0)
    checks.existing_dir("--videos", args.videos)
    if args.annotations is not None:
        checks.existing_dir("--annotations", args.annotations)
    checks.out_dir("--out", args.out)
    checks.ray_address("--address", args.address)


def check_plan(plan, videos: Path) -> None:
    """UsageError when the builder matched no video (empty dir, or annotations of another dataset)."""
    if not plan.entries:
        raise checks.UsageError(f"--videos {videos}: no video files found (extensions: .avi, .mp4, ...)")
    if not any(e.status == "ok" for e in plan.entries):
        counts = dict(sorted(Counter(e.status for e in plan.entries).items()))
        first = f"; {len(plan.warnings)} warnings, first: {plan.warnings[0]}" if plan.warnings else ""
        raise checks.UsageError(
            f"--dataset {plan.dataset}: none of the {len(plan.entries)} videos matches the "
            f"annotations (statuses {counts}); wrong --dataset or --annotations?{first}"
        )


def build_main(argv: list[str]) -> str:
    ap = checks.parser(
        prog="python -m jobs.build_manifest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", required=True, choices=sorted(BUILDERS))
    ap.add_argument("--videos", required=True, type=Path)
    ap.add_argument("--annotations", type=Path, default=None)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="local Ray CPUs (default: all); 0 = in-process, no Ray"
    )
    ap.add_argument("--no-ray", action="store_true", help="same as --workers 0")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="existing Ray cluster")
    ap.add_argument("--chunk", type=int, default=8, help="videos per Ray task")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="folder: hashed test share")
    ap.add_argument(
        "--max-failure-rate",
        type=float,
        default=MAX_FAILURE_RATE,
        help="publish nothing when more than this share of the files is missing, empty or "
        f"unreadable, or their decoder crashed or timed out (default {MAX_FAILURE_RATE}; same "
        "rule as jobs.extract)",
    )
    ap.add_argument(
        "--decode-timeout",
        type=checks.positive_seconds,
        default=None,
        metavar="S",
        help="seconds a video's probe or decode may take before it is killed and recorded as "
        "decode_timeout (default: per video, max(30, frames x pixels / 1e7) from its header)",
    )
    ap.add_argument(
        "--retry-failed",
        action="store_true",
        help="decode again videos that crashed or timed out in an earlier build under --out",
    )
    ap.add_argument(
        "--partial",
        choices=PARTIAL_POLICIES,
        default="keep",
        help="a file that decodes only part-way (a cut download, corrupt data): keep (default) its decodable "
        "prefix, marked partial in the manifests and the card, or fail it",
    )
    args = ap.parse_args(argv)
    check_args(args)
    plan = BUILDERS[args.dataset](args.videos, args.annotations, test_fraction=args.test_fraction)
    check_plan(plan, args.videos)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.no_ray or (args.workers == 0 and not args.address):
        inspect = local_inspect
    else:

        def inspect(paths, **opts):
            return ray_inspect(paths, args.workers, args.address, args.chunk, **opts)

    vid, path = build(
        plan,
        args.videos,
        args.annotations,
        args.out,
        inspect,
        require_ok=True,
        max_failure_rate=args.max_failure_rate,
        timeout=args.decode_timeout,
        retry_failed=args.retry_failed,
        partial=args.partial,
        log=lambda m: print(m, file=sys.stderr),
    )
    write_card_safely(path)  # card.md + figures next to the version; a failure only warns
    meta = read_meta(path)
    print(
        f"{path}: {meta.extra['num_videos']} videos, status {meta.extra['status_counts']}, parent {meta.parent}",
        file=sys.stderr,
    )
    print(vid)
    return vid


def diff_main(argv: list[str]) -> int:
    """``python -m jobs.versions diff`` for two source manifests (kept as an alias)."""
    ap = checks.parser(prog="python -m jobs.build_manifest diff")
    ap.add_argument("base")
    ap.add_argument("other")
    ap.add_argument("--json", action="store_true", help="print the diff as JSON")
    args = ap.parse_args(argv)
    checks.version("base", args.base, "source")
    checks.version("other", args.other, "source")
    d = diff_versions(args.base, args.other)
    print(d.render(args.json))
    return 0 if d.empty else 1


@checks.cli("build_manifest")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["diff"]:
        return diff_main(argv[1:])
    try:
        build_main(argv)
    except BuildError as e:  # the dataset as a whole is unusable (e.g. no classInd.txt): no traceback
        raise checks.UsageError(str(e)) from None
    except ValueError as e:  # manifests.source.build.write_version: no video probed ok, nothing published
        if isinstance(e, checks.UsageError):
            raise
        print(f"build_manifest: error: {checks.one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
