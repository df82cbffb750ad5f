"""Synthetic action videos whose class is defined by motion alone (the embedded demo dataset).

Every class is a `Motion` (data, one table `CLASSES`); every video is a pure function of
(class, seed, group, clip, frames, size): the same arguments give the same frames, bit for bit.
Appearance is nuisance and drawn at random: object shape, texture and colours, a textured background,
illumination, and camera shake. Like UCF-101, the clips of one group share their scene (background and
illumination), so a split by group tests on unseen scenes. Unlike UCF-101, a scene is shared by *all*
classes (and an object by the same clip index of all classes), so appearance never predicts the class:
a model has to use motion (with scenes tied to classes, a small model memorises scene -> class instead).

    render_video("MoveRight", seed=0, group=1, clip=1) -> (T, H, W, 3) uint8 RGB

Two disjoint class sets: `TARGET_CLASSES` (the demo's evaluation task) and `PRETRAIN_CLASSES` (different
motions used to pretrain before finetuning on the target set). `mirror_class` says which class a
horizontal flip turns a class into: the first 8 target classes and all pretrain classes are flip-invariant,
so flip augmentation keeps their labels right; MoveRight/MoveLeft and RotateCW/RotateCCW swap. Layout
helpers (`video_rel_path`, `split_of_group`, `split_file_lines`) give UCF-101 names and split-file lines;
jobs.make_demo_data writes them to disk.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

SHAPES = ("square", "disc", "triangle", "cross", "star", "bar")
TEXTURES = ("noise", "stripes", "checker", "blobs")


@dataclasses.dataclass(frozen=True)
class Motion:
    """What moves and how; `kind` names a function of `MOTIONS`.

    direction: unit (dx, dy) in image axes (y down) for translate / accelerate / oscillate; sign: +1 or -1
    (clockwise / growing vs counter-clockwise / shrinking for rotate, orbit, zoom; multiplies the
    direction otherwise), 0 = drawn at random per clip.
    """

    kind: str
    direction: tuple[float, float] = (0.0, 0.0)
    sign: int = 1


# Classes a horizontal flip maps onto themselves come first: the trainer flips clips horizontally
# (paper section 4.3), which turns MoveRight into MoveLeft and RotateCW into RotateCCW (see mirror_class).
TARGET_CLASSES: dict[str, Motion] = {
    "MoveUp": Motion("translate", (0.0, -1.0)),
    "MoveDown": Motion("translate", (0.0, 1.0)),
    "ZoomIn": Motion("zoom", sign=1),
    "ZoomOut": Motion("zoom", sign=-1),
    "OscillateHorizontal": Motion("oscillate", (1.0, 0.0), sign=0),
    "OscillateVertical": Motion("oscillate", (0.0, 1.0), sign=0),
    "Pulse": Motion("pulse"),
    "Still": Motion("still"),
    "MoveRight": Motion("translate", (1.0, 0.0)),
    "MoveLeft": Motion("translate", (-1.0, 0.0)),
    "RotateCW": Motion("rotate", sign=1),
    "RotateCCW": Motion("rotate", sign=-1),
}
PRETRAIN_CLASSES: dict[str, Motion] = {
    "Rise": Motion("accelerate", (0.0, -1.0)),
    "Fall": Motion("accelerate", (0.0, 1.0)),
    "Bounce": Motion("bounce"),
    "Jitter": Motion("jitter"),
    "Spin": Motion("rotate", sign=0),
    "Sway": Motion("translate", (1.0, 0.0), sign=0),
    "Orbit": Motion("orbit", sign=0),
    "Wobble": Motion("wobble"),
}
CLASSES: dict[str, Motion] = {**TARGET_CLASSES, **PRETRAIN_CLASSES}
CLASS_SETS: dict[str, dict[str, Motion]] = {"target": TARGET_CLASSES, "pretrain": PRETRAIN_CLASSES}
CHIRAL_KINDS = ("rotate", "orbit")  # kinds whose sign flips under a horizontal mirror


def _mirror(m: Motion) -> Motion:
    if m.kind in CHIRAL_KINDS:
        return dataclasses.replace(m, sign=-m.sign)
    return dataclasses.replace(m, direction=(-m.direction[0], m.direction[1]))


def _same_motion(a: Motion, b: Motion) -> bool:
    if a == b:
        return True
    opposite = (-b.direction[0], -b.direction[1])
    return a.kind == b.kind and a.sign == b.sign == 0 and a.direction == opposite


def mirror_class(name: str) -> str | None:
    """The class a horizontal flip turns clips of `name` into (itself when flip-invariant), if any."""
    mirrored = _mirror(CLASSES[name])
    return next((n for n, m in CLASSES.items() if _same_motion(m, mirrored)), None)


def flip_invariant(name: str) -> bool:
    return mirror_class(name) == name


def class_names(class_set: str = "target", n: int | None = None) -> list[str]:
    """The first `n` class names of a class set (all when n is None)."""
    if class_set not in CLASS_SETS:
        raise ValueError(f"class set {class_set!r}: expected one of {sorted(CLASS_SETS)}")
    names = list(CLASS_SETS[class_set])
    if n is not None and not 1 <= n <= len(names):
        raise ValueError(f"classes={n}: the {class_set!r} set has 1..{len(names)} classes")
    return names[:n] if n is not None else names


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _texture(kind: str, rng: np.random.Generator, h: int, w: int, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 in [0, 255]: a two-colour texture of `kind`."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "noise":
        m = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.0)
        m = (m - m.min()) / max(1e-6, float(m.max() - m.min()))
    elif kind == "stripes":
        a, period = rng.uniform(0, math.pi), rng.uniform(4, 9)
        m = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period)
    elif kind == "checker":
        s = int(rng.integers(3, 7))
        m = ((xx // s + yy // s) % 2).astype(np.float32)
    elif kind == "blobs":
        m = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3.0)
        m = (m > np.median(m)).astype(np.float32)
    else:
        raise ValueError(f"texture {kind!r}: expected one of {TEXTURES}")
    return c0[None, None] * (1 - m[..., None]) + c1[None, None] * m[..., None]


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """(size, size) float32 alpha in [0, 1] of a shape filling the square."""
    m = np.zeros((size, size), np.uint8)
    c, r = size // 2, size // 2 - 1
    if shape == "square":
        m[1:-1, 1:-1] = 1
    elif shape == "disc":
        cv2.circle(m, (c, c), r, 1, -1)
    elif shape == "triangle":
        cv2.fillPoly(m, [np.array([[c, 1], [size - 2, size - 2], [1, size - 2]], np.int32)], 1)
    elif shape == "cross":
        t = size // 6
        m[c - t : c + t + 1, 1:-1] = 1
        m[1:-1, c - t : c + t + 1] = 1
    elif shape == "star":
        ang = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1).round().astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    elif shape == "bar":
        m[c - size // 5 : c + size // 5 + 1, 1:-1] = 1
    else:
        raise ValueError(f"shape {shape!r}: expected one of {SHAPES}")
    return cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _luma(rgb: np.ndarray) -> float:
    return float(np.asarray(rgb, np.float32).reshape(-1, 3).mean(0) @ np.float32([0.299, 0.587, 0.114]))


def scene(seed: int, group: int, clip: int, h: int, w: int) -> dict:
    """The nuisance appearance: background and illumination of the group (its "location"), object shape,
    texture and colours of the (group, clip) pair (its "actor"). Neither depends on the class, so every
    appearance occurs with every motion and appearance carries no information about the class."""
    rng = _rng(seed, 1, group)
    margin = 4
    bg = _texture(str(rng.choice(TEXTURES)), rng, h + 2 * margin, w + 2 * margin, _colour(rng), _colour(rng))
    bg = 0.25 * bg + 0.75 * rng.uniform(30, 150)  # low-contrast backgrounds so the object stands out
    gain = rng.uniform(0.8, 1.2)
    rng = _rng(seed, 3, group, clip)
    size = 2 * int(round(min(h, w) * rng.uniform(0.2, 0.28)))  # sprite side, even
    tex, c0, c1 = str(rng.choice(TEXTURES)), _colour(rng), _colour(rng)
    for _ in range(100):  # the object differs from the background in brightness by at least 50 levels
        if abs(_luma(0.5 * (c0 + c1)) - _luma(bg)) >= 50:
            break
        c0, c1 = _colour(rng), _colour(rng)
    sprite = _texture(tex, rng, size, size, c0, c1)
    # asymmetric marker so that rotation of symmetric shapes is visible
    sprite[: size // 3, : size // 3] = 0.5 * sprite[: size // 3, : size // 3] + 127
    alpha = _shape_mask(str(rng.choice(SHAPES)), size)
    return {"bg": bg, "margin": margin, "sprite": sprite, "alpha": alpha, "gain": gain}


def _translate(m, t, n, h, w, rng, base):
    dx, dy = m.direction
    span = rng.uniform(0.6, 0.75) * (abs(dx) * w + abs(dy) * h) / (abs(dx) + abs(dy))  # total travel
    s = (t / max(1, n - 1) - 0.5) * span
    return {"cx": base["cx"] + dx * s, "cy": base["cy"] + dy * s}


def _accelerate(m, t, n, h, w, rng, base):
    dx, dy = m.direction
    span = rng.uniform(0.6, 0.75) * (abs(dx) * w + abs(dy) * h) / (abs(dx) + abs(dy))
    s = ((t / max(1, n - 1)) ** 2 - 0.5) * span  # from rest, constant acceleration
    return {"cx": base["cx"] + dx * s, "cy": base["cy"] + dy * s}


def _oscillate(m, t, n, h, w, rng, base):
    dx, dy = m.direction
    amp, period, ph = rng.uniform(0.16, 0.22) * min(h, w), rng.uniform(8, 12), rng.uniform(0, 2 * math.pi)
    s = amp * np.sin(2 * math.pi * t / period + ph)
    return {"cx": base["cx"] + dx * s, "cy": base["cy"] + dy * s}


def _rotate(m, t, n, h, w, rng, base):
    return {"angle": base["angle"] + m.sign * rng.uniform(8.0, 12.0) * t}


def _wobble(m, t, n, h, w, rng, base):
    amp, period = rng.uniform(20, 35), rng.uniform(8, 12)
    return {"angle": base["angle"] + amp * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))}


def _zoom(m, t, n, h, w, rng, base):
    rate = rng.uniform(1.7, 2.0) * np.log(2.0) / max(1, n - 1)  # 3.2x to 4x over the clip
    return {"scale": 0.5 * np.exp(rate * t) if m.sign > 0 else 1.9 * np.exp(-rate * t)}


def _pulse(m, t, n, h, w, rng, base):
    return {"scale": 1.0 + 0.4 * np.sin(2 * math.pi * t / rng.uniform(8, 12) + rng.uniform(0, 2 * math.pi))}


def _orbit(m, t, n, h, w, rng, base):
    r, ph = rng.uniform(0.15, 0.22) * min(h, w), rng.uniform(0, 2 * math.pi)
    a = ph + m.sign * t * 2 * math.pi / rng.uniform(14, 20)
    return {"cx": w / 2 + r * np.cos(a), "cy": h / 2 + r * np.sin(a)}


def _bounce(m, t, n, h, w, rng, base):
    amp, period, ph = rng.uniform(0.25, 0.35) * h, rng.uniform(10, 14), rng.uniform(0, math.pi)
    return {"cy": base["cy"] + amp * (0.5 - np.abs(np.sin(math.pi * t / period + ph)))}


def _jitter(m, t, n, h, w, rng, base):
    jumps = rng.normal(0, 0.05 * min(h, w), (len(t), 2))
    return {"cx": base["cx"] + jumps[:, 0], "cy": base["cy"] + jumps[:, 1]}


def _still(m, t, n, h, w, rng, base):
    return {}


# kind -> f(motion, t, n, h, w, rng, base) -> {track column: (n,) values} replacing the static base
MOTIONS = {
    "translate": _translate,
    "accelerate": _accelerate,
    "oscillate": _oscillate,
    "rotate": _rotate,
    "wobble": _wobble,
    "zoom": _zoom,
    "pulse": _pulse,
    "orbit": _orbit,
    "bounce": _bounce,
    "jitter": _jitter,
    "still": _still,
}


def motion_track(motion: Motion, n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) float64 per frame: centre x, centre y (pixels), angle (degrees, clockwise), scale."""
    if motion.kind not in MOTIONS:
        raise ValueError(f"motion kind {motion.kind!r}: expected one of {sorted(MOTIONS)}")
    base = {
        "cx": w / 2 + rng.uniform(-0.08, 0.08) * w,
        "cy": h / 2 + rng.uniform(-0.08, 0.08) * h,
        "angle": rng.uniform(0, 360),
        "scale": rng.uniform(0.9, 1.1),
    }
    if motion.sign == 0:  # random per clip
        motion = dataclasses.replace(motion, sign=int(rng.choice([-1, 1])))
    if motion.kind not in CHIRAL_KINDS + ("zoom",):
        motion = dataclasses.replace(motion, direction=tuple(motion.sign * d for d in motion.direction), sign=1)
    cols = MOTIONS[motion.kind](motion, np.arange(n, dtype=np.float64), n, h, w, rng, base)
    return np.stack(
        [np.broadcast_to(np.asarray(cols.get(k, base[k]), np.float64), (n,)) for k in ("cx", "cy", "angle", "scale")], 1
    )


def compose_frame(sc: dict, track_row: np.ndarray, shake: np.ndarray, h: int, w: int) -> np.ndarray:
    """One (h, w, 3) uint8 frame: the sprite placed by `track_row` over the background, all shifted by shake."""
    cx, cy, angle, scale = track_row
    m, size = sc["margin"], sc["sprite"].shape[0]
    # camera shake moves the whole view: crop the background at a sub-pixel offset, offset the object too
    view = np.float32([[1, 0, -(m + shake[0])], [0, 1, -(m + shake[1])]])
    frame = cv2.warpAffine(sc["bg"], view, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), -angle, scale)  # cv2 angles are counter-clockwise
    rot[:, 2] += (cx - shake[0] - size / 2, cy - shake[1] - size / 2)
    obj = cv2.warpAffine(sc["sprite"], rot, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(sc["alpha"], rot, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    frame = (frame * (1 - a) + obj * a) * sc["gain"]
    return np.clip(frame, 0, 255).round().astype(np.uint8)


def render_video(
    class_name: str,
    *,
    seed: int = 0,
    group: int = 1,
    clip: int = 1,
    frames: int = 20,
    size: tuple[int, int] = (48, 64),
    shake_px: float = 0.6,
) -> np.ndarray:
    """(frames, H, W, 3) uint8 RGB clip of `class_name`; a pure function of its arguments."""
    if class_name not in CLASSES:
        raise ValueError(f"class {class_name!r} is not known; classes: {sorted(CLASSES)}")
    h, w = size
    if frames < 2 or h < 16 or w < 16:
        raise ValueError(f"frames={frames}, size={size}: need at least 2 frames of 16x16")
    ci = list(CLASSES).index(class_name)
    sc = scene(seed, group, clip, h, w)
    rng = _rng(seed, 2, ci, group, clip)
    track = motion_track(CLASSES[class_name], frames, h, w, rng)
    # smooth camera shake: a random walk pulled back to the origin, `shake_px` pixels typical size
    steps = rng.normal(0, shake_px * 0.5, (frames, 2))
    shake = np.zeros((frames, 2))
    for i in range(1, frames):
        shake[i] = 0.8 * shake[i - 1] + steps[i]
    return np.stack([compose_frame(sc, track[i], shake[i], h, w) for i in range(frames)])


def video_rel_path(class_name: str, group: int, clip: int, ext: str = ".mp4") -> str:
    """UCF-101 relative path: ClassName/v_ClassName_gXX_cYY.ext."""
    return f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}{ext}"


def group_clips(videos_per_class: int, clips_per_group: int) -> list[tuple[int, int]]:
    """(group, clip) pairs, 1-based, filling groups of `clips_per_group` in order."""
    return [(i // clips_per_group + 1, i % clips_per_group + 1) for i in range(videos_per_class)]


def split_of_group(group: int, num_groups: int, split: int, num_splits: int = 3) -> str:
    """'test' when `group` is in the split's test chunk (contiguous thirds of the groups, like UCF-101's
    g01-07 / g08-14 / g15-21), else 'train'."""
    k = split - 1
    lo, hi = (k * num_groups) // num_splits, ((k + 1) * num_groups) // num_splits
    return "test" if lo < group <= max(hi, lo + 1) else "train"


def split_file_lines(
    entries: list[tuple[str, str, int, int]], num_groups: int, split: int
) -> tuple[list[str], list[str]]:
    """UCF-101 trainlistNN / testlistNN lines for `entries` (class_name, rel_path, label_1based, group)."""
    train, test = [], []
    for _, rel, label, group in entries:
        if split_of_group(group, num_groups, split) == "test":
            test.append(rel)
        else:
            train.append(f"{rel} {label}")
    return train, test
