"""Benchmark of the moons flow of chapter 3.

Trains the chapter's recipe (MLP width 128, depth 4, batch 1024, Adam 3e-3 with cosine decay,
EMA 0.99) and prints a table: training seconds, then sliced W2, exact W2 and MMD of 2000
samples against 2000 fresh data points at NFE 1, 2, 4, 8, 16, 32 with Euler and midpoint and
with the adaptive dopri5 solver, beside each metric's noise floor (the same metric between two
independent sets of 2000 data points).

    python benchmarks/moons.py [--steps 1500] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from fmbook import data, metrics, models, solvers, train

N = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else train.default_device()

    torch.manual_seed(0)
    training_set = data.sample_moons(50_000, seed=11)
    result = train.train_flow_matching(
        models.MLPVelocityField(2, 128, 4), training_set, steps=args.steps, batch_size=1024, lr=3e-3,
        ema_decay=0.99, device=device, progress=False,
    )
    model = result.sampling_model.cpu()

    reference = data.sample_moons(N, seed=15)
    noise = data.sample_gaussian(N, seed=16)
    named = {"sliced W2": metrics.sliced_w2, "exact W2": metrics.exact_w2, "MMD": metrics.mmd_rbf}
    floors = {name: metrics.noise_floor(fn, data.sample_moons, N) for name, fn in named.items()}

    print(f"device {device}, {torch.get_num_threads()} threads, {args.steps} steps, "
          f"training {result.seconds:.1f} s ({1000 * result.seconds / args.steps:.2f} ms/step)")
    header = f"{'sampler':<10}{'NFE':>5}" + "".join(f"{name:>12}{'/floor':>8}" for name in named)
    print(header)
    print("-" * len(header))
    print(f"{'floor':<10}{'':>5}" + "".join(f"{floors[name]:12.4f}{1.0:8.2f}" for name in named))

    def row(label: str, nfe: int, x: torch.Tensor) -> None:
        cells = ""
        for name, fn in named.items():
            value = fn(x, reference)
            cells += f"{value:12.4f}{value / floors[name]:8.2f}"
        print(f"{label:<10}{nfe:>5}" + cells)

    start = time.perf_counter()
    with torch.no_grad():
        for method, per_step in (("euler", 1), ("midpoint", 2)):
            for nfe in (1, 2, 4, 8, 16, 32):
                if nfe % per_step:
                    continue
                row(method, nfe, solvers.solve_ode(model, noise, steps=nfe // per_step, method=method).x)
        adaptive = solvers.solve_adaptive(model, noise, rtol=1e-5, atol=1e-5)
        row("dopri5", adaptive.nfe, adaptive.x)
    print(f"(evaluation {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
