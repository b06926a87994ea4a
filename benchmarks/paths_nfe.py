"""Benchmark of chapter 5: sample error against NFE for the CondOT, VP and VE paths.

Trains the chapter's recipe (MLP width 128, depth 4, batch 1024, Adam 3e-3 with cosine decay,
EMA 0.99, 1000 steps) once per path on each data set, then prints the sliced W2 of 2000
midpoint samples against 2000 fresh data points, divided by its noise floor, at NFE 2 to 256;
the NFE needed to reach 1.5 times the floor; and the CPU time and peak memory of the run.

    python benchmarks/paths_nfe.py [--steps 1000] [--threads 1] [--datasets moons checkerboard]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from fmbook import data, metrics, models, paths, scaling, solvers, train

N = 2000
STEP_GRID = [1, 2, 4, 8, 16, 32, 64, 128]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--datasets", nargs="+", default=["moons", "checkerboard"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = train.default_device()
    schedulers = {"CondOT": paths.CondOTScheduler(), "VP": paths.VPScheduler(), "VE": paths.VEScheduler()}
    scale = {"CondOT": 1.0, "VP": 1.0, "VE": schedulers["VE"].sigma_max}
    cpu0 = time.process_time()
    print(f"device {device}, {torch.get_num_threads()} threads, {args.steps} training steps per path")
    print(f"{'data set':<14}{'path':<8}" + "".join(f"{2 * k:>8}" for k in STEP_GRID) + f"{'NFE@1.5x':>10}")
    for name in args.datasets:
        sampler = data.DATASETS[name]
        train_set = sampler(50_000, generator=1)
        floor = metrics.noise_floor(metrics.sliced_w2, sampler, N, seed=0, repeats=3)
        reference = sampler(N, generator=123)
        for pname, sch in schedulers.items():
            result = train.train_flow_matching(
                models.MLPVelocityField(2, 128, 4), train_set, steps=args.steps, batch_size=1024, lr=3e-3,
                ema_decay=0.99, seed=0, progress=False, device=device, path=paths.AffinePath(sch),
            )
            net = scaling.copy_to_cpu(result.sampling_model)
            start = scale[pname] * data.sample_gaussian(N, generator=7)
            with torch.no_grad():
                ratios = [
                    metrics.sliced_w2(solvers.solve_ode(net, start, steps=k, method="midpoint").x, reference) / floor
                    for k in STEP_GRID
                ]
            reached = next((2 * k for k, r in zip(STEP_GRID, ratios) if r <= 1.5), None)
            print(f"{name:<14}{pname:<8}" + "".join(f"{r:8.2f}" for r in ratios) + f"{str(reached or '-'):>10}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"CPU time {time.process_time() - cpu0:.1f} s, peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
