"""Memory predictor accuracy and cost: predicted vs real tracked peak, per registered family.

For each family at two sizes (a tiny configuration and the family's defaults) it predicts the
peak of one training step (fake tensors, in a subprocess) and measures it with real CPU
tensors under the same tracker, then predicts a few large configurations that are never
measured (too big for this machine). Prints a markdown table.

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/bench_memory.py
"""

from __future__ import annotations

import argparse
import platform

import torch

from engine.errors import ConfigError
from engine.memory import measure_training_peak_cpu, predict_training_peak
from engine.models import FAMILIES, make_config

# Small settings for fields families commonly have; a family keeps only those it declares
# and falls back to its defaults when the shrunk configuration breaks one of its rules.
SHRINK = {"final_dim": 16, "depth": 2, "dim": 32, "embed_dim": 32, "width": 16,
          "heads": 2, "num_heads": 2, "head_dim": 16, "mlp_dim": 64}

# Measured: (label, config override or None for the shrunk config, batch, optimizer, amp).
SIZES = [("tiny", None, 8, "adamw", None), ("default", {}, 32, "adamw", None)]
EXTRA = [("wavemix", "tiny, dualopt", None, 8, "dualopt", None),
         ("wavemix", "tiny, bf16", None, 8, "adamw", "bf16"),
         ("wavemix", "lite-64/6", dict(final_dim=64, depth=6, ff_channel=64), 64, "adamw", None)]
EXTRA += [("cxv", f"tiny, {att}", dict(dim=32, depth=2, heads=2, head_dim=16, attention=att), 8,
           "adamw", None) for att in ("performer", "efficient", "linear_elu", "softmax", "wave")]
# Predicted only: (family, label, config, batch, image size).
HUGE = [("wavemix", "2048/32", dict(final_dim=2048, depth=32), 256, 64),
        ("wavemix", "imagenet L3 192/16", dict(final_dim=192, depth=16, level=3,
                                               stem="patchify", patch_size=4), 128, 224)]


def shrunk_config(family: str, image_size: int) -> dict:
    """A tiny valid configuration of ``family``."""
    fields = FAMILIES.get(family).config_cls.model_fields
    config = {k: v for k, v in SHRINK.items() if k in fields}
    try:
        make_config(family, **config, image_size=image_size)
    except ConfigError:
        return {}
    return config


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--families", nargs="*", default=FAMILIES.names())
    args = parser.parse_args()
    s = args.image_size
    data = dict(in_channels=3, image_size=s, num_classes=10)

    rows = []
    cases = [(f, label, cfg, b, opt, amp) for f in args.families for label, cfg, b, opt, amp in SIZES]
    cases += [c for c in EXTRA if c[0] in args.families]
    for family, label, cfg, batch, opt, amp in cases:
        config = shrunk_config(family, s) if cfg is None else cfg
        kw = dict(batch_size=batch, optimizer=opt, amp=amp, **data)
        try:
            pred = predict_training_peak(family, config, timeout_s=300, **kw)
            meas = measure_training_peak_cpu(family, config, **kw)
        except Exception as e:  # a family that breaks must not hide the others' rows
            rows.append(f"| {family} | {label} | {config} | {batch} | {s} | failed: "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:80]} | | | | |")
            continue
        err = 100 * (pred.peak_bytes - meas.peak_bytes) / meas.peak_bytes
        rows.append(f"| {family} | {label} | {config} | {batch} | {s} | {pred.peak_mb:.2f} | "
                    f"{meas.peak_mb:.2f} | {err:+.3f} | {pred.seconds:.1f} | {meas.seconds:.2f} |")
        print(rows[-1], flush=True)
    for family, label, cfg, batch, size in HUGE:
        if family not in args.families:
            continue
        pred = predict_training_peak(family, cfg, batch_size=batch, in_channels=3,
                                     image_size=size, num_classes=1000, timeout_s=600)
        rows.append(f"| {family} | {label} | {cfg} | {batch} | {size} | {pred.peak_mb:,.0f} | "
                    f"not measured | | {pred.seconds:.1f} | |")
        print(rows[-1], flush=True)

    print(f"\ntorch {torch.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, {torch.get_num_threads()} intra-op threads\n")
    print("| family | size | config | batch | image | predicted MiB | measured MiB | error % "
          "| predict s | measure s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
