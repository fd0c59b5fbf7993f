"""``engine export`` and ``engine retrain``: the chosen model as a file you can ship.

``export`` writes a trial's own weights (a safetensors checkpoint, or a verified ONNX model),
or converts a checkpoint file to ONNX; ``retrain`` trains the trial's architecture from scratch
on train + validation and writes its checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from engine.errors import ConfigError
from storage.schema import DEFAULT_STORAGE_URL

__all__ = ["EpochPrinter", "add_commands"]

FORMATS = ("safetensors", "onnx")


def _check_format(args: argparse.Namespace) -> None:
    # A name that promises ONNX must not hold a safetensors file (or the other way round).
    if Path(args.out).suffix.lower() == ".onnx" and args.format != "onnx":
        raise ConfigError(f"--out {args.out} ends in .onnx but --format is {args.format}; add "
                          "--format onnx, or name the file .safetensors")
    if args.format == "onnx" and Path(args.out).suffix.lower() == ".safetensors":
        raise ConfigError(f"--out {args.out} ends in .safetensors but --format is onnx; name "
                          "the file .onnx")


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.export import export_checkpoint
    from storage.backend import check_existing_storage

    _check_format(args)
    if args.checkpoint:
        return _convert(args)
    if not args.study:
        raise ConfigError("engine export needs --study NAME (a trial of a study) or "
                          "--checkpoint PATH (a checkpoint file to convert)")
    check_existing_storage(args.storage)  # a mistyped storage is refused, not created
    info = export_checkpoint(args.storage, args.study, trial_number=args.trial, out=args.out,
                             test_accuracy=not args.no_test, format=args.format)
    m = info["metrics"]
    scores = " ".join(f"{k}={m[k]:.4f}" for k in ("val_accuracy", "test_accuracy")
                      if isinstance(m.get(k), float))
    print(f"wrote {args.out} ({args.format}, {info['bytes'] / 1024:.0f} KiB): trial "
          f"{info['trial_number']} {info['family']} {scores}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from engine.export.checkpoint import read_checkpoint
    from engine.export.files import check_output_path, write_atomic
    from engine.export.onnx_export import onnx_bytes

    if args.study or args.trial is not None:
        raise ConfigError("--checkpoint converts a file; drop --study/--trial, or drop "
                          "--checkpoint to export a trial")
    if args.format != "onnx":
        raise ConfigError("--checkpoint converts a checkpoint to ONNX; add --format onnx")
    check_output_path(args.out)
    ckpt = read_checkpoint(args.checkpoint)
    data = onnx_bytes(ckpt, where=args.checkpoint)
    write_atomic(args.out, data)
    print(f"wrote {args.out} (onnx, {len(data) / 1024:.0f} KiB) from {args.checkpoint}")
    return 0


class EpochPrinter:
    """Prints a retrain's progress: one line per epoch, plus an in-place bar on a terminal.

    Args:
        stream: Where to print (a terminal gets the bar; a file or pipe only the lines).
        width: Characters of the bar.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stdout
        self.width = width
        self.tty = self.stream.isatty()

    def __call__(self, step) -> None:  # step: engine.export.RetrainProgress
        clear = "\r\033[K" if self.tty else ""
        self.stream.write(f"{clear}{step.message}\n")
        if self.tty and step.epoch < step.epochs:
            done = round(self.width * step.epoch / step.epochs)
            eta = ""
            if step.epoch:  # the mean epoch so far, times the epochs left
                eta = f", ~{step.elapsed_s / step.epoch * (step.epochs - step.epoch):.0f} s left"
            self.stream.write(f"[{'#' * done}{'.' * (self.width - done)}] {step.epoch}/"
                              f"{step.epochs} epochs{eta}")
        self.stream.flush()


def _cmd_retrain(args: argparse.Namespace) -> int:
    from engine.export import retrain
    from engine.export.retrain import count
    from storage.backend import check_existing_storage

    check_existing_storage(args.storage)  # a mistyped storage is refused, not created
    r = retrain(args.storage, args.study, trial_number=args.trial, epochs=args.epochs,
                minutes=args.minutes, train_size=args.train_size, out=args.out,
                progress=EpochPrinter())
    test = f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "n/a (no test split)"
    print(f"wrote {args.out}: trial {r.trial_number} {r.family} retrained for "
          f"{count(r.epochs, 'epoch')} on {count(r.train_images, 'image')} in {r.seconds:.1f} s; "
          f"test_accuracy={test}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of this module on the ``engine`` parser."""
    e = sub.add_parser("export", help="write a trial's model as a checkpoint or ONNX file")
    e.add_argument("--study", help="the study whose trial to export")
    e.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    e.add_argument("--trial", type=int, help="trial number (default: best-accuracy Pareto point)")
    e.add_argument("--checkpoint", metavar="PATH",
                   help="convert this checkpoint file instead of a trial (with --format onnx)")
    e.add_argument("--format", choices=FORMATS, default="safetensors",
                   help="safetensors: a checkpoint engine.load_model rebuilds (default); onnx: "
                        "a graph with a dynamic batch axis, checked under onnxruntime")
    e.add_argument("--out", required=True)
    e.add_argument("--no-test", action="store_true", help="skip measuring test accuracy")
    e.set_defaults(func=_cmd_export)

    r = sub.add_parser("retrain", help="train a trial's architecture from scratch on train + "
                                       "validation and write its checkpoint")
    r.add_argument("--study", required=True)
    r.add_argument("--storage", default=DEFAULT_STORAGE_URL)
    r.add_argument("--trial", type=int, help="trial number (default: best-accuracy Pareto point)")
    r.add_argument("--epochs", type=int, help="epochs (default: the trial's); DualOpT's switch "
                                              "epoch is scaled with it")
    r.add_argument("--minutes", type=float, metavar="M",
                   help="instead of --epochs: as many epochs as fit in M minutes at the pace "
                        "measured on this machine before training starts")
    r.add_argument("--train-size", type=int, metavar="N",
                   help="train on N images only (quick runs; default: every training image)")
    r.add_argument("--out", required=True)
    r.set_defaults(func=_cmd_retrain)
