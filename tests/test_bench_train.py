"""bench-train's step timing divides by the steps it timed: the loader gives exactly ``--steps`` full
batches, also when one epoch of the synthetic videos holds fewer (48 videos, batch 16, 10 steps on CUDA)."""

from __future__ import annotations

import torch

from jobs.bench import train as bench_train


class Clips(torch.utils.data.Dataset):
    num_classes = 3

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> int:
        return i


class Net(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.classifier = torch.nn.Linear(2, n)


def test_step_time_runs_the_steps_it_divides_by(monkeypatch):
    seen: list[list[list[int]]] = []
    monkeypatch.setattr(bench_train.recipe, "train_one_epoch", lambda m, loader, *a, **k: seen.append(
        [b.tolist() for b in loader]
    ))  # fmt: skip
    monkeypatch.setattr(bench_train.models, "build_model", lambda name, num_classes: Net(num_classes))
    bench_train.train_step_time("any", Clips(), torch.device("cpu"), batch=4, steps=3, workers=0)
    warmup, timed = seen
    assert [len(b) for b in warmup] == [4] and [len(b) for b in timed] == [4, 4, 4]  # 12 clips from 5 videos
    order = [x for b in timed for x in b]
    assert sorted(order[:5]) == [0, 1, 2, 3, 4] and sorted(order[5:10]) == [0, 1, 2, 3, 4]  # whole epochs joined
    assert order[:4] == bench_train.recipe.epoch_indices(5, 1, seed=0)[:4]  # what a single epoch gave before
