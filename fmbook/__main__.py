"""The command line: ``python -m fmbook`` (alone, or under ``torchrun`` for several processes).

Chapter 8, section on scaling up: ``torchrun --standalone --nproc_per_node=8 -m fmbook --data digits``
trains the class-conditional U-Net on eight GPUs with the same global batch as one process.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from . import data as datasets
from .models import MLPVelocityField, UNet
from .train import (
    TrainResult,
    cleanup_distributed,
    init_distributed,
    train_conditional_flow_matching,
    train_flow_matching,
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fmbook",
        description="Train a flow-matching model; run under torchrun for several processes / GPUs.",
    )
    parser.add_argument("--data", choices=("moons", "digits"), default="moons")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch, split between processes")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=128, help="MLP width (moons) or U-Net channels (digits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema", type=float, default=None, help="EMA decay, e.g. 0.999")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument(
        "--device", choices=("cuda", "mps", "cpu"), default=None, help="where to train (default: CUDA, MPS, then CPU)"
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint file; an existing one is resumed")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--history", default=None, help="write the loss history and the run's facts to this JSON file")
    parser.add_argument("--progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> TrainResult:
    """Train on moons (an MLP) or on the 8x8 digits (a class-conditional U-Net with label dropout).

    ``torchrun --nproc_per_node=N -m fmbook --data digits --steps 2000 --amp`` trains on N
    GPUs (or N CPU processes with gloo); rank 0 writes ``--history``.
    """
    args = _build_parser().parse_args(argv)

    ctx = init_distributed(device=args.device)
    try:
        torch.manual_seed(args.seed)
        common = dict(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            ema_decay=args.ema,
            amp=args.amp,
            device=ctx.device,
            checkpoint_path=args.checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume=args.checkpoint is not None,
            progress=args.progress,
        )
        if args.data == "moons":
            model = MLPVelocityField(dim=2, width=args.width, depth=3)
            result = train_flow_matching(model, datasets.sample_moons(4096, generator=args.seed), **common)
        else:
            split = datasets.load_digits_split()
            model = UNet(channels=args.width, num_classes=10)
            result = train_conditional_flow_matching(model, split.train_images, split.train_labels, **common)
        if ctx.is_main and args.history:
            parameters = torch.cat([p.detach().float().reshape(-1).cpu() for p in result.model.parameters()])
            facts = {
                "world_size": ctx.world_size,
                "device": str(ctx.device),
                "amp": result.amp,
                "history": result.history,
                "seconds": result.seconds,
                "parameter_norm": float(parameters.norm()),
            }
            Path(args.history).write_text(json.dumps(facts))
        return result
    finally:
        cleanup_distributed()


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun in tests/test_ddp.py
    main()
