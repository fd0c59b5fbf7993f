"""Training throughput: engine.train_model against a plain PyTorch DataLoader loop.

Both train the same model on the same CIFAR-sized tensors with the same augmentation (random
crop with 4 px padding, horizontal flip), one epoch each, in one run:

* ours: uint8 images resident on the device, normalised per batch, BatchAugment batch-wise;
* plain: float32 TensorDataset, a Dataset that pads/crops/flips each image in __getitem__ (the
  usual torchvision-style pipeline, written on tensors), DataLoader(shuffle=True) collating.

Also reported: each pipeline's data-only time for the epoch (no model), i.e. its share of an
epoch. Prints a markdown table.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_train.py --images 2048
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from engine.data.augment import AugmentConfig, BatchAugment
from engine.data.base import DataBundle
from engine.models import create_model, create_preset
from engine.train import DeviceData, TrainConfig, train_model

MODELS = {
    "WaveMix-Lite-32/7": lambda: create_preset("wavemix-lite-32-7"),
    "CXV-32/2 (nystrom)": lambda: create_model("cxv", dim=32, depth=2, heads=1, head_dim=32,
                                               attention="nystrom"),
}


class _PerImageAugment(Dataset):
    """The plain pipeline: per-image pad, random crop and flip, as transforms do it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int = 4):
        self.x, self.y, self.pad = x, y, pad

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = F.pad(self.x[i], (self.pad,) * 4, mode="reflect")  # (C, H+2p, W+2p)
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        h, w = self.x.shape[-2:]
        img = img[:, dy:dy + h, dx:dx + w]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img, self.y[i]


def _bundle(n: int) -> DataBundle:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return DataBundle(train_x=x, train_y=y, val_x=x[:256], val_y=y[:256],
                      classes=tuple(str(i) for i in range(10)), mean=(0.5,) * 3, std=(0.25,) * 3)


def _plain_loader(data: DataBundle, batch: int) -> DataLoader:
    x = (torch.from_numpy(data.train_x).float() / 255.0 - 0.5) / 0.25
    return DataLoader(_PerImageAugment(x, torch.from_numpy(data.train_y)), batch_size=batch,
                      shuffle=True, num_workers=0)


def _plain_epoch(model, loader) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    t0 = time.perf_counter()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def _our_data_only(data: DataBundle, batch: int) -> float:
    dev = DeviceData(data.train_x, data.train_y, data.mean, data.std, torch.device("cpu"))
    aug, gen = BatchAugment(AugmentConfig(crop_padding=4, flip=True)), torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    order = torch.randperm(len(dev))
    for s in range(0, len(dev), batch):
        aug(dev.batch(order[s:s + batch])[0], gen)
    return time.perf_counter() - t0


def _plain_data_only(loader) -> float:
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2, help="best of N epochs per pipeline")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = _bundle(args.images)
    cfg = TrainConfig(epochs=1, batch_size=args.batch, optimizer="adamw",
                      augment={"crop_padding": 4, "flip": True})
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}; {args.images} images 3x32x32, batch {args.batch}\n")
    print("| model | ours img/s | plain DataLoader img/s | ratio | ours data share | plain data share |")
    print("|---|---|---|---|---|---|")
    data_ours = _our_data_only(data, args.batch)
    data_plain = _plain_data_only(_plain_loader(data, args.batch))
    for name, build in MODELS.items():
        ours_s, plain_s = [], []
        for _ in range(args.reps + 1):  # the first round warms both pipelines up, not counted
            torch.manual_seed(0)
            reports = []
            train_model(build(), data, cfg, augment=BatchAugment(AugmentConfig(crop_padding=4,
                                                                               flip=True)),
                        on_epoch=reports.append)
            # images_per_s covers the training steps only, not the validation pass.
            ours_s.append(args.images / reports[0].images_per_s)
            torch.manual_seed(0)
            plain_s.append(_plain_epoch(build(), _plain_loader(data, args.batch)))
        ours, plain = min(ours_s[1:]), min(plain_s[1:])
        print(f"| {name} | {args.images / ours:,.0f} | {args.images / plain:,.0f} | "
              f"{plain / ours:.2f}x | {data_ours / ours:.1%} | {data_plain / plain:.1%} |")
    print(f"\ndata-only epoch: ours {data_ours:.3f} s, plain {data_plain:.3f} s "
          f"({data_plain / data_ours:.1f}x)")


if __name__ == "__main__":
    main()
