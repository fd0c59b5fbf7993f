"""Training-step time and saved activations of every model family, and WaveMix against the
reference package (wavemix 0.2.4), on CPU. Prints markdown tables.

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python bench/bench_models.py --threads 2

Step time: forward + backward of ``logits.square().mean()`` in train mode, the best of
``--reps`` timed steps after one warm-up step (the minimum is the figure least disturbed by
other processes on a shared machine). Saved activations: bytes of the distinct
storages autograd keeps for backward during one forward (parameters excluded), counted with
``torch.autograd.graph.saved_tensors_hooks``. Ours and the reference are timed alternately,
step by step, so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import types
import warnings

import torch
import torch.nn as nn

from engine.models import create_model, create_preset
from engine.models.wavemix_reference import convert_reference_state_dict

MIB = 2**20

# (label, builder[, batch]) for the family table; CXV rows are one layer of the 5/4 models
# (d 128). ConvMixer-256/16 at patch 1 saves ~106 MiB of activations per image: its batch is
# capped so the benchmark fits beside other work in a shared machine's memory.
_CXV_LAYER = dict(dim=128, depth=1, heads=4, head_dim=32, mlp_ratio=2)
FAMILY_ROWS: list[tuple] = [
    ("wavemix-lite-64-6 (L1, convT)", lambda: create_preset("wavemix-lite-64-6")),
    ("wavemix-lite-32-7 (L1, upsample)", lambda: create_preset("wavemix-lite-32-7")),
    ("wavemix 64/6 L3 cascade", lambda: create_model("wavemix", final_dim=64, depth=6, level=3)),
    ("wavemix 64/6 L3 parallel",
     lambda: create_model("wavemix", final_dim=64, depth=6, level=3, block="parallel")),
    ("wavemix 64/6 L3 db2", lambda: create_model("wavemix", final_dim=64, depth=6, level=3,
                                                 wavelet="db2")),
    *[(f"cxv {a}, 1 layer d128", (lambda a=a: create_model("cxv", attention=a, **_CXV_LAYER)))
      for a in ("nystrom", "performer", "efficient", "linear_elu", "softmax", "wave")],
    ("resnet18-w64", lambda: create_preset("resnet18-w64")),
    ("convmixer-256-16-k8-p1", lambda: create_preset("convmixer-256-16-k8-p1"), 16),
    ("vit-10-4-p4", lambda: create_preset("vit-10-4-p4")),
]

# (label, reference constructor kwargs) for ours-versus-reference.
REFERENCE_ROWS = [
    ("Lite-64/6, L1", dict(final_dim=64, depth=6, ff_channel=64, level=1)),
    ("64/6, L2", dict(final_dim=64, depth=6, ff_channel=64, level=2)),
    ("64/6, L3", dict(final_dim=64, depth=6, ff_channel=64, level=3)),
    ("32/6, L2", dict(final_dim=32, depth=6, ff_channel=32, level=2)),
    ("32/6, L3", dict(final_dim=32, depth=6, ff_channel=32, level=3)),
    ("32/6, L4", dict(final_dim=32, depth=6, ff_channel=32, level=4)),
]


def dwt_table(args: argparse.Namespace) -> list[str]:
    """Markdown rows: one Haar level, forward + backward, for each implementation."""
    import torch.nn.functional as F

    from engine.models.wavelets import DWT, wavelet_filters

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pytorch_wavelets import DWTForward

    pw = DWTForward(J=1, wave="db1", mode="zero")
    weight = wavelet_filters("haar")

    def reference(x: torch.Tensor) -> torch.Tensor:  # same packed layout as ours
        ll, (highs,) = pw(x)
        return torch.cat((ll.unsqueeze(2), highs), dim=2)

    def sliced_autograd(x: torch.Tensor) -> torch.Tensor:  # the same slices, plain autograd
        a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
        c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
        return torch.stack((a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d), 2) / 2

    def grouped_conv(x: torch.Tensor) -> torch.Tensor:  # plain autograd: keeps x for backward
        c = x.shape[1]
        return F.conv2d(x, weight.repeat(c, 1, 1, 1), stride=2, groups=c)

    impls = {
        "pytorch_wavelets": reference,
        "strided slices (autograd)": sliced_autograd,
        "grouped conv (autograd)": grouped_conv,
        "ours (slices, custom backward)": DWT(wavelet="haar"),
    }
    shapes = [(args.batch, 16, 32, 32), (args.batch, 64, 32, 32), (args.batch, 16, 16, 16),
              (args.batch, 16, 8, 8)]
    lines = ["| implementation | " + " | ".join("x".join(map(str, s[1:])) for s in shapes)
             + " |", "|---|" + "---:|" * len(shapes)]
    for name, fn in impls.items():
        cells = []
        for shape in shapes:
            x = torch.randn(shape, requires_grad=True)
            layer = _Wrap(fn)
            step_seconds(layer, x)
            best = min(step_seconds(layer, x) for _ in range(5 * args.reps))
            saved = saved_activation_bytes(layer, x)
            cells.append(f"{best * 1e3:.2f} ms, {saved / MIB:.1f} MiB")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


class _Wrap(nn.Module):
    """A function as a module, for the timing helpers."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def step_seconds(model: nn.Module, x: torch.Tensor) -> float:
    """Time of one forward + backward in train mode (wall, or process CPU with --clock cpu)."""
    start = _clock()
    model(x).square().mean().backward()
    return _clock() - start


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter storages saved for backward by one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def n_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def family_table(args: argparse.Namespace) -> list[str]:
    """Markdown rows: params, step time, saved activations for each family row."""
    lines = ["| model | params | batch | step ms | saved act. MiB |", "|---|---:|---:|---:|---:|"]
    for label, build, *batch in FAMILY_ROWS:
        batch = min(batch[0], args.batch) if batch else args.batch
        torch.manual_seed(0)
        model = build().train()
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        x = torch.randn(batch, first_conv.in_channels, args.size, args.size)
        step_seconds(model, x)  # warm-up (allocator, oneDNN primitive caches)
        times = [step_seconds(model, x) for _ in range(args.reps)]
        mem = saved_activation_bytes(model, x)
        lines.append(f"| {label} | {n_params(model):,} | {batch} "
                     f"| {min(times) * 1e3:.0f} "
                     f"| {mem / MIB:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def import_reference():
    """The reference classifier class, or None when the package is not installed."""
    if "numpy.lib.function_base" not in sys.modules:  # numpy 2 removed it; never used
        stand_in = types.ModuleType("numpy.lib.function_base")
        stand_in.hamming = None
        sys.modules["numpy.lib.function_base"] = stand_in
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from wavemix.classification import WaveMix
    except ImportError:
        return None
    return WaveMix


def reference_table(args: argparse.Namespace) -> list[str]:
    """Markdown rows: reference and our step time and saved activations, as ratios."""
    reference_cls = import_reference()
    if reference_cls is None:
        return ["(reference not installed: pip install --no-deps wavemix==0.2.4 einops)"]
    lines = ["| configuration | ref ms | ours ms | speed-up | ref MiB | ours MiB | max abs diff |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, kw in REFERENCE_ROWS:
        torch.manual_seed(0)
        common = dict(num_classes=10, mult=2, dropout=0.0, stride=1, **kw)
        ref = reference_cls(initial_conv="strided", **common).train()
        ours = create_model("wavemix", stem="strided", **common).train()
        ours.load_state_dict(convert_reference_state_dict(ref.state_dict(),
                                                          final_dim=kw["final_dim"]))
        x = torch.randn(args.batch, 3, args.size, args.size)
        with torch.no_grad():
            diff = (ref.eval()(x) - ours.eval()(x)).abs().max().item()
        ref.train(), ours.train()
        step_seconds(ref, x), step_seconds(ours, x)  # warm-up
        t_ref, t_ours = [], []
        for _ in range(args.reps):
            t_ref.append(step_seconds(ref, x))
            t_ours.append(step_seconds(ours, x))
        m_ref, m_ours = saved_activation_bytes(ref, x), saved_activation_bytes(ours, x)
        r, o = min(t_ref), min(t_ours)
        lines.append(f"| {label} | {r * 1e3:.0f} | {o * 1e3:.0f} | {r / o:.2f}x "
                     f"| {m_ref / MIB:.1f} | {m_ours / MIB:.1f} | {diff:.1e} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run both tables and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--reps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or process CPU time (robust to other processes' load "
                             "with --threads 1)")
    parser.add_argument("--skip-families", action="store_true", help="only ours vs reference")
    parser.add_argument("--skip-reference", action="store_true", help="no ours-vs-reference")
    parser.add_argument("--skip-dwt", action="store_true", help="no Haar DWT table")
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.threads} threads, batch {args.batch}, "
          f"{args.size}x{args.size}, best of {args.reps} steps, {args.clock} clock\n")
    if not args.skip_dwt:
        print("\n".join(dwt_table(args)) + "\n")
    if not args.skip_families:
        print("\n".join(family_table(args)) + "\n")
    if not args.skip_reference:
        print("\n".join(reference_table(args)))


if __name__ == "__main__":
    main()
