"""A validation subset carved from a split's *training* videos (UCF-101 and HMDB-51 ship no validation split).

``carve(records, fraction, rule, seed)`` -> ``Carve`` (train records, val records, what was done). It is a pure
function of the records' ids and labels, ``fraction``, ``rule`` and ``seed``: the trainer's training and
validation datasets call it independently and always agree, and a resumed run gets the same subset.

Rules (``data.val_group_rule``):

* ``ucf101``: every video id must read ``v_<Class>_gXX_cYY``; whole *group numbers* XX are held out (all
  classes' clips of that group), as the official UCF-101 splits do (split1 tests g01-g07), so clips of one
  group (same actor / scene) are never on both sides. Groups are drawn in a seeded order until the subset
  holds at least ``round(fraction * N)`` videos; at least one group stays on each side. Class balance
  follows from the groups (in UCF-101 every class has clips in every group).
* ``none``: per video, stratified by the (primary) label: ``round(fraction * N)`` videos in all, spread over
  the classes in proportion to their size (largest remainders, ties broken by the seeded draw), drawn at
  random within each class. HMDB-51 and FCVID have no groups.
* ``auto``: ``ucf101`` when every training video id has the UCF-101 form, else ``none``.

``Carve.summary()`` is what jobs.train records (rule as resolved, counts, sha256 of the sorted val ids, ids).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence

import numpy as np

RULES = ("auto", "none", "ucf101")
UCF101_ID = re.compile(r"^v_(?P<cls>[A-Za-z0-9]+)_g(?P<group>\d+)_c(?P<clip>\d+)$")


@dataclasses.dataclass(frozen=True)
class Carve:
    train: list  # records kept for training, in input order
    val: list  # held-out records, in input order
    fraction: float
    rule: str  # resolved: none | ucf101
    seed: int
    groups: tuple[str, ...] = ()  # held-out group keys (ucf101 rule)

    def summary(self) -> dict:
        ids = sorted(r.video_id for r in self.val)
        return {
            "fraction": self.fraction,
            "rule": self.rule,
            "seed": self.seed,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "groups": list(self.groups),
            "video_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            "video_ids": ids,
        }


def group_of(video_id: str) -> str | None:
    """UCF-101 group key ``gXX`` (number without leading zeros kept as written), or None."""
    m = UCF101_ID.match(video_id)
    return f"g{int(m['group']):02d}" if m else None


def resolve_rule(rule: str, records: Sequence) -> str:
    if rule not in RULES:
        raise ValueError(f"data.val_group_rule must be one of {RULES}, got {rule!r}")
    if rule == "auto":
        return "ucf101" if records and all(group_of(r.video_id) for r in records) else "none"
    if rule == "ucf101":
        bad = [r.video_id for r in records if not group_of(r.video_id)]
        if bad:
            raise ValueError(
                f"data.val_group_rule=ucf101: {len(bad)} video ids are not v_<Class>_gXX_cYY, e.g. {bad[0]!r}"
            )
    return rule


def carve(records: Sequence, fraction: float, rule: str = "auto", seed: int = 0) -> Carve:
    """Split ``records`` (objects with ``video_id`` and ``labels``) into train / val (module docstring)."""
    records = list(records)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {fraction}")
    rule = resolve_rule(rule, records)
    if fraction == 0.0:
        return Carve(records, [], fraction, rule, seed)
    want = max(1, int(round(fraction * len(records))))
    rng = np.random.default_rng([seed, 52361])
    groups: tuple[str, ...] = ()
    if rule == "ucf101":
        keys = sorted({group_of(r.video_id) for r in records})
        if len(keys) < 2:
            raise ValueError(
                f"data.val_fraction={fraction}: the training videos hold only {len(keys)} group(s); "
                f"the ucf101 rule needs 2 (use data.val_group_rule=none)"
            )
        size = {k: 0 for k in keys}
        for r in records:
            size[group_of(r.video_id)] += 1
        chosen, n = [], 0
        for i in rng.permutation(len(keys)):
            if n >= want or len(chosen) == len(keys) - 1:
                break
            chosen.append(keys[i])
            n += size[keys[i]]
        groups = tuple(sorted(chosen))
        held = {r.video_id for r in records if group_of(r.video_id) in groups}
    else:
        held = _stratified(records, want, rng)
    if len(held) >= len(records):
        raise ValueError(f"data.val_fraction={fraction} leaves no training videos ({len(records)} in all)")
    return Carve(
        [r for r in records if r.video_id not in held],
        [r for r in records if r.video_id in held],
        fraction,
        rule,
        seed,
        groups,
    )


def _stratified(records: list, want: int, rng: np.random.Generator) -> set[str]:
    """``want`` video ids spread over primary labels in proportion (largest remainder), random within each."""
    by_class: dict[int, list[str]] = {}
    for r in sorted(records, key=lambda r: r.video_id):
        by_class.setdefault(r.labels[0], []).append(r.video_id)
    classes = sorted(by_class)
    quota = np.array([want * len(by_class[c]) / len(records) for c in classes])
    take = np.floor(quota).astype(int)
    tiebreak = rng.random(len(classes))
    order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - take[i]), tiebreak[i]))
    for i in order[: want - int(take.sum())]:
        take[i] += 1
    held = set()
    for c, k in zip(classes, take):
        ids = by_class[c]
        held.update(ids[j] for j in rng.permutation(len(ids))[:k])
    return held
