"""Benchmark of the moons flow of chapter 3.

Trains the chapter's recipe (MLP width 128, depth 4, batch 1024, Adam 3e-3 with cosine decay,
EMA 0.99) and prints a table: training seconds, then sliced W2, exact W2 and MMD of 2000
samples against 2000 fresh data points at NFE 1, 2, 4, 8, 16, 32 with Euler and midpoint and
with the adaptive dopri5 solver, in units of each metric's noise floor (the same metric between
two independent sets of 2000 data points), averaged over independent draws with their
standard errors (:class:`fmbook.metrics.FloorReference`), and the RMS distance of the samples to
the nearer noiseless moon curve (:func:`fmbook.metrics.moon_curve_rms`; the data's own is about
0.100), the mean over the same draws as the sliced W2, with its standard error.

    python benchmarks/moons.py [--steps 1500] [--threads 2] [--device cpu] [--repeats 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from fmbook import data, metrics, models, solvers, train

N = 2000


def _mean_and_stderr(values: list[float]) -> str:
    """A table cell: the mean of ``values`` and its standard error."""
    v = np.asarray(values)
    return f"{v.mean():11.4f} +-{v.std(ddof=1) / np.sqrt(v.size):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=50, help="draws averaged for the sliced W2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else train.default_device()

    torch.manual_seed(0)
    training_set = data.sample_moons(50_000, generator=11)
    result = train.train_flow_matching(
        models.MLPVelocityField(2, 128, 4), training_set, steps=args.steps, batch_size=1024, lr=3e-3,
        ema_decay=0.99, device=device, progress=False,
    )
    model = result.sampling_model.cpu()

    # Every metric is averaged over independent draws of noise and data (one draw of 2000 points
    # is noisy: the sliced W2's standard deviation is about a third of its mean); the costly
    # exact W2 and MMD get fewer draws.
    named = {"sliced W2": metrics.sliced_w2, "exact W2": metrics.exact_w2, "MMD": metrics.mmd_rbf}
    draws = {"sliced W2": args.repeats, "exact W2": 4, "MMD": 4}
    references = {name: metrics.FloorReference(data.sample_moons, N, fn, draws[name]) for name, fn in named.items()}

    print(f"device {device}, {torch.get_num_threads()} threads, {args.steps} steps, "
          f"training {result.seconds:.1f} s ({1000 * result.seconds / args.steps:.2f} ms/step)")
    print("each cell: mean metric, then / floor +- its standard error; draws: "
          + ", ".join(f"{name} {k}" for name, k in draws.items()))
    header = f"{'sampler':<10}{'NFE':>5}" + "".join(f"{name:>11}{'/floor':>13}" for name in named)
    header += f"{'curve RMS':>19}"
    print(header)
    print("-" * len(header))
    data_rms = [metrics.moon_curve_rms(t) for t in references["sliced W2"].targets]
    print(
        f"{'floor':<10}{'':>5}" + "".join(f"{references[name].floor:11.4f}{'1':>13}" for name in named)
        + _mean_and_stderr(data_rms)
    )

    def row(label: str, sample: Callable[[torch.Tensor], tuple[torch.Tensor, int]]) -> None:
        nfe = sample(data.sample_gaussian(N, generator=16))[1]
        cells = ""
        for name in named:
            q = references[name].ratio(lambda n, seed: sample(data.sample_gaussian(n, generator=500 + seed))[0])
            cells += f"{q.value:11.4f}{q.ratio:8.2f} +-{q.stderr:4.2f}"
        rms = [
            metrics.moon_curve_rms(sample(data.sample_gaussian(N, 500 + seed))[0]) for seed in range(args.repeats)
        ]
        cells += _mean_and_stderr(rms)
        print(f"{label:<10}{nfe:>5}" + cells, flush=True)

    start = time.perf_counter()
    with torch.no_grad():
        for method, per_step in (("euler", 1), ("midpoint", 2)):
            for nfe in (1, 2, 4, 8, 16, 32):
                if nfe % per_step:
                    continue

                def fixed(x0: torch.Tensor, method: str = method, steps: int = nfe // per_step):
                    solution = solvers.solve_ode(model, x0, steps=steps, method=method)
                    return solution.x, solution.nfe

                row(method, fixed)

        def adaptive(x0: torch.Tensor):
            solution = solvers.solve_adaptive(model, x0, rtol=1e-5, atol=1e-5)
            return solution.x, solution.nfe

        row("dopri5", adaptive)
    print(f"(evaluation {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
