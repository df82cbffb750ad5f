"""Train on an extracted shard version with your own PyTorch loop (no jobs.train, no Ray).

    python docs/examples/own_training_loop.py --shards data/shards/LATEST [--split split1] [--stream rgbf]
        [--steps 20] [--batch-size 8] [--clip-len 16] [--crop 112] [--width 0.125] [--model b5-asyConv5]

Uses only the public API (docs/architecture.md): ``manifests.shards.load_shards`` (what is in a version),
``manifests.readers.clips.ClipDataset`` (a torch Dataset of clips: random clip, corner crop and flip per item
for ``subset="train"``), a plain ``torch.utils.data.DataLoader`` and ``models.build_model``. Prints the
loss per step and the clip accuracy of the last batches; nothing is written.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from manifests.readers.clips import ClipDataset
from manifests.shards import load_shards
from models import build_model


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, help="shard version: dir, LATEST file or root with LATEST")
    p.add_argument("--split", default="split1")
    p.add_argument("--subset", default="train")
    p.add_argument("--stream", default="rgb", choices=["rgb", "flow", "rgbf"])
    p.add_argument("--model", default="b5-asyConv5")
    p.add_argument("--width", type=float, default=0.125, help="channel multiplier (1 = the paper's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    a = p.parse_args(argv)

    version = load_shards(a.shards)  # parses the Parquet tables only
    print(
        f"version {version.meta.version_id}: {len(version)} videos, {len(version.labels)} classes, "
        f"{len(version.failures)} failed extraction"
    )
    data = ClipDataset(a.shards, a.split, a.subset, a.stream, clip_len=a.clip_len, crop=a.crop, mode="train")
    loader = DataLoader(
        data,
        batch_size=a.batch_size,
        shuffle=True,
        num_workers=a.workers,
        drop_last=False,
        persistent_workers=a.workers > 0,
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(a.model, num_classes=data.num_classes, width=a.width, frames=a.clip_len, size=a.crop).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss() if data.multilabel else torch.nn.CrossEntropyLoss()

    step, epoch, correct, seen, loss = 0, 0, 0, 0, torch.tensor(float("nan"))
    model.train()
    while step < a.steps:
        data.set_epoch(epoch)  # new random clips / crops each epoch, reproducible per (seed, epoch, item)
        for x, target, _ in loader:  # x (B, C, T, S, S) float32, target (B, num_classes) multi-hot
            x, target = x.to(device), target.to(device)
            logits = model(x)  # (B, num_classes)
            loss = loss_fn(logits, target)  # cross-entropy takes the one-hot target as class probabilities
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == target.argmax(1)).sum())
            seen += len(x)
            step += 1
            print(f"epoch {epoch} step {step}: loss {loss.item():.4f}")
            if step == a.steps:
                break
        epoch += 1
    print(f"clip top-1 over the {seen} training clips seen: {correct / max(seen, 1):.3f}")
    return float(loss)


if __name__ == "__main__":
    main()
