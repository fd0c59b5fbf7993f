"""Benchmark data loading and batch augmentation.

Measures:

1. CIFAR-10 from the JPEG ImageFolder zip: a cold load (hash, decode 60,000 JPEGs, write the
   cache, split) into a fresh cache folder, then cached loads (hash, read the npz, split);
2. images/s of :class:`engine.data.augment.BatchAugment` against a per-image Python loop drawing
   the same parameters, at batch 512 of 3x32x32 float32.

Usage (the cold decode takes ~10-40 s, run it once)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/bench_data.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/bench_data.py --skip-load  # augment only
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.data import DataConfig, load_data
from engine.data.augment import AugmentConfig, AugmentParams, BatchAugment
from engine.data.cache import file_sha256

DEFAULT_ZIP = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.zip")


def bench_load(zip_path: Path, repeats: int) -> None:
    """Cold then cached load of the zip into a throw-away cache folder."""
    cache = Path(tempfile.mkdtemp(prefix="wavesearch-bench-"))
    try:
        request = DataConfig(dataset="imagefolder", root=str(zip_path), cache_dir=str(cache))
        t0 = time.perf_counter()
        bundle = load_data(request)
        cold = time.perf_counter() - t0
        n = len(bundle.train_x) + len(bundle.val_x) + len(bundle.test_x)
        warm = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            again = load_data(request)
            warm.append(time.perf_counter() - t0)
            assert "cached" in again.source, again.source
        t0 = time.perf_counter()
        file_sha256([zip_path])
        hashing = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in cache.rglob("*.npz")) / 2**20
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"| load, cold (decode {n:,} JPEGs + write cache) | {cold:.2f} s | "
          f"{n / cold:,.0f} img/s |")
    print(f"| load, cached (median of {repeats}) | {statistics.median(warm):.2f} s | "
          f"min {min(warm):.2f} s, of which sha256 of the zip {hashing:.2f} s |")
    print(f"| cache entry size | {size:.0f} MiB | train {bundle.train_x.shape}, val "
          f"{bundle.val_x.shape}, test {bundle.test_x.shape} |")


def loop_augment(x: torch.Tensor, cfg: AugmentConfig, params: AugmentParams) -> torch.Tensor:
    """The per-image baseline: pad, slice, flip, cut out, one image at a time."""
    p, out = cfg.crop_padding, torch.empty_like(x)
    h, w = x.shape[2:]
    padded = F.pad(x, (p, p, p, p), mode="reflect") if p else x
    shift = params.shift.tolist() if params.shift is not None else None
    flip = params.flip.tolist() if params.flip is not None else None
    cut = params.cutout.tolist() if params.cutout is not None else None
    for i in range(x.shape[0]):
        img = padded[i]
        if shift is not None:
            dy, dx = shift[i][0] + p, shift[i][1] + p
            img = img[:, dy:dy + h, dx:dx + w]
        out[i] = img.flip(-1) if flip is not None and flip[i] else img
        if cut is not None:
            out[i, :, cut[i][0]:cut[i][0] + cfg.cutout, cut[i][1]:cut[i][1] + cfg.cutout] = 0
    return out


def _rate(fn, batch: int, seconds: float = 1.0) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return batch * n / (time.perf_counter() - t0)


def bench_augment(batch: int, device: str) -> None:
    """images/s of BatchAugment (draw + apply) vs the loop (same draws) for a few configs."""
    x = torch.rand(batch, 3, 32, 32, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    for cfg in (AugmentConfig(crop_padding=4, flip=True),
                AugmentConfig(crop_padding=4, flip=True, cutout=8),
                AugmentConfig(crop_padding=4, padding_mode="zeros")):
        aug = BatchAugment(cfg)
        draw = functools.partial(aug.draw, batch, 32, 32, device=device, generator=gen)
        fast = _rate(lambda a=aug, d=draw: a.apply(x, d()), batch)
        slow = _rate(lambda c=cfg, d=draw: loop_augment(x, c, d()), batch)
        name = f"crop {cfg.crop_padding} {cfg.padding_mode}" + (", flip" if cfg.flip else "") + \
            (f", cutout {cfg.cutout}" if cfg.cutout else "")
        print(f"| {name} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |")


def main() -> None:
    """Parse arguments and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=Path(DEFAULT_ZIP))
    parser.add_argument("--repeats", type=int, default=3, help="cached loads to time")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-load", action="store_true", help="augmentation only")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} torch threads, device {args.device}\n")
    if not args.skip_load:
        print("| measure | time | detail |\n|---|---|---|")
        bench_load(args.zip, args.repeats)
        print()
    print(f"| augmentation (batch {args.batch}, 3x32x32) | BatchAugment img/s | per-image loop "
          "img/s | speed-up |\n|---|---|---|---|")
    bench_augment(args.batch, args.device)


if __name__ == "__main__":
    main()
