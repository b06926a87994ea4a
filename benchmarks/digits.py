"""Training throughput of the digits U-Net (images per second), on the CPU and on CUDA when present.

Runs the book's training loop (fmbook.train.train_conditional_flow_matching: class-conditional
flow matching with label dropout, Adam, EMA) for a fixed number of steps after a warm-up run,
and prints images/s = steps * batch / seconds. On the CPU it also prints the CPU time per
step (user + sys of this process), which is what to compare on a shared machine. On CUDA it
measures float32 and bfloat16 autocast (``amp=True``).

    python benchmarks/digits.py [--steps 100] [--batch-size 128] [--channels 32]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from fmbook import data, models, train


def throughput(device: torch.device, steps: int, batch_size: int, channels: int, amp: bool) -> tuple[float, float]:
    """(images per second, CPU seconds per step) of ``steps`` training steps on ``device``."""
    split = data.load_digits_split()
    kwargs = dict(batch_size=batch_size, lr=2e-3, ema_decay=0.999, device=device, progress=False, amp=amp)
    torch.manual_seed(0)
    warm = models.UNet(channels=channels, num_classes=10)
    train.train_conditional_flow_matching(warm, split.train_images, split.train_labels, steps=5, **kwargs)
    torch.manual_seed(0)
    model = models.UNet(channels=channels, num_classes=10)
    cpu0 = time.process_time()
    result = train.train_conditional_flow_matching(model, split.train_images, split.train_labels, steps=steps, **kwargs)
    cpu = time.process_time() - cpu0
    return steps * batch_size / result.seconds, cpu / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=32)
    args = parser.parse_args()
    policy = os.environ.get("OMP_WAIT_POLICY")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, OMP_WAIT_POLICY={policy}")
    print(f"U-Net channels={args.channels}, batch {args.batch_size}, {args.steps} timed steps")
    rate, cpu = throughput(torch.device("cpu"), args.steps, args.batch_size, args.channels, amp=False)
    print(f"cpu            : {rate:9.0f} images/s (wall clock)   {cpu * 1000:7.1f} ms CPU time per step")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for amp in (False, True):
            rate, _ = throughput(torch.device("cuda"), 10 * args.steps, args.batch_size, args.channels, amp=amp)
            label = "cuda bf16 amp" if amp else "cuda float32"
            print(f"{label:15s}: {rate:9.0f} images/s ({name})")
    else:
        print("cuda           : not available on this machine")


if __name__ == "__main__":
    main()
