"""The moons flow of chapter 3 beside the two best-known flow-matching libraries, in one run.

Usage (the peers are benchmark-only dependencies, in a separate environment)::

    python -m venv /tmp/peers && /tmp/peers/bin/pip install -r benchmarks/requirements-peers.txt
    /tmp/peers/bin/python benchmarks/peers.py --budget 120

Three recipes learn the same job: the standard Gaussian to the canonical moons
(:func:`fmbook.data.sample_moons`), each drawing its mini-batches from the same training set:

* **fmbook**: ``MLPVelocityField(2, 128, 4)`` with cosine decay and EMA 0.99, by default
  :func:`fmbook.train.train_small_flow` (batch 256, Adam lr 1e-2; runs of 2000, 4000 and 8000
  steps), or with ``--book-recipe chapter`` chapter 3's (batch 1024, lr 3e-3, via
  :func:`fmbook.train.train_flow_matching`; 1000, 2000 and 3000 steps);
* **flow_matching** (Meta, its 2-D example): a Swish MLP of width 512 with t concatenated,
  batch 4096, Adam lr 1e-3, ``AffineProbPath(CondOTScheduler())``, sampled with its ``ODESolver``;
* **torchcfm** (its 2-D tutorial): ``torchcfm.models.MLP(2, w=64, time_varying=True)``, batch 256,
  Adam lr 1e-3, ``ConditionalFlowMatcher`` (sigma = 0: the same CondOT path as the others),
  sampled with torchdyn's ``NeuralODE``.

Every model is scored the same way: 2000 samples from the midpoint rule with 8 velocity
evaluations (NFE 8, 4 steps), each with its own library's solver, against 2000 fresh moons with
:func:`fmbook.metrics.sliced_w2`; the targets are 1.2 (the issue's), 1.5 and 2 times the noise floor of that metric
(:class:`fmbook.metrics.FloorReference`: two independent draws of 2000 moons, averaged over 20 pairs,
and each evaluation averaged over 20 draws against the same data sets). ``--peers`` picks the
peers, ``--peer-adam default fused`` runs each peer with torch's default Adam (as their examples
do) and with the fused one, side by side. The trainings
are interleaved in slices of ``--slice`` seconds so that a change in the load of a shared
machine falls on all of them alike; only training is timed (evaluation is not).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmbook import data, metrics, solvers  # noqa: E402
from fmbook.models import MLPVelocityField  # noqa: E402
from fmbook.train import train_flow_matching, train_small_flow  # noqa: E402

N_EVAL = 2000
NFE = 8

#: The book's recipes (``--book-recipe``): chapter 3's, and :func:`fmbook.train.train_small_flow`.
BOOK_RECIPES = {
    "chapter": {"batch_size": 1024, "lr": 3e-3, "steps": [1000, 2000, 3000]},
    "small": {"batch_size": 256, "lr": 1e-2, "steps": [2000, 4000, 8000]},
}


def make_adam(parameters: object, lr: float, kind: str) -> torch.optim.Adam:
    """The peers' Adam: torch's default implementation (a loop over tensors on a CPU), or ``fused``/``foreach``."""
    if kind == "default":
        return torch.optim.Adam(parameters, lr=lr)
    return torch.optim.Adam(parameters, lr=lr, **{kind: True})


class Clock:
    """Accumulates the wall and CPU time of the segments between start() and stop().

    ``t`` is the measure the comparison uses (``Clock.mode``): the CPU time of the process by
    default, which a busy shared machine inflates far less than the wall time (with one thread).
    """

    mode = "cpu"

    @property
    def t(self) -> float:
        return self.cpu if self.mode == "cpu" else self.wall

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._w = self._c = None

    def start(self) -> None:
        self._w, self._c = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        if self._w is not None:
            self.wall += time.perf_counter() - self._w
            self.cpu += time.process_time() - self._c
            self._w = self._c = None


class Run:
    """Book-keeping common to the three recipes: the clock, the steps and the evaluations."""

    def __init__(self, name: str, recipe: str, sample: Callable[[Tensor], Tensor], budget: float) -> None:
        self.name, self.recipe, self.sample, self.budget = name, recipe, sample, budget
        self.clock = Clock()
        self.steps = 0
        self.evals: list[tuple[float, int, float]] = []  # (training seconds on the clock, steps, sliced W2)
        self.rng_state = None  # the global torch generator state of this run while it is paused
        self.done = False

    #: seconds between evaluations, at least (and at least 10 % of the time so far)
    resolution = 0.5

    def due(self) -> bool:
        last = self.evals[-1][0] if self.evals else 0.0
        return not self.evals or self.clock.t >= max(last + self.resolution, 1.1 * last)

    def evaluate(self, reference: metrics.FloorReference) -> float:
        """The mean sliced W2 of fresh samples against the reference's data sets (those of its floor)."""
        with torch.no_grad():
            value = reference.ratio(lambda n, seed: self.sample(data.sample_gaussian(n, generator=100 + seed))).value
        self.evals.append((self.clock.t, self.steps, value))
        return value

    def time_to(self, target: float) -> float | None:
        return next((s for s, _, v in self.evals if v <= target), None)

    def value_at(self, seconds: float) -> float | None:
        before = [v for s, _, v in self.evals if s <= seconds]
        return before[-1] if before else None


class Swap:
    """Gives a run its own global torch RNG stream while it trains (the book's stays untouched)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __enter__(self) -> None:
        self.saved = torch.get_rng_state()
        if self.run.rng_state is not None:
            torch.set_rng_state(self.run.rng_state)

    def __exit__(self, *exc: object) -> None:
        self.run.rng_state = torch.get_rng_state()
        torch.set_rng_state(self.saved)


def meta_flow_matching(train_set: Tensor, budget: float, seed: int, adam: str) -> tuple[Run, Callable[[], None]]:
    """Meta's flow_matching, its 2-D example recipe."""
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper

    class Swish(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.sigmoid(x) * x

    class MLP(nn.Module):
        def __init__(self, width: int = 512) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Linear(3, width), Swish()]
            for _ in range(3):
                layers += [nn.Linear(width, width), Swish()]
            self.main = nn.Sequential(*layers, nn.Linear(width, 2))

        def forward(self, x: Tensor, t: Tensor) -> Tensor:
            t = t.reshape(-1, 1).float().expand(x.shape[0], 1)
            return self.main(torch.cat([x, t], dim=1))

    class Wrapped(ModelWrapper):
        def forward(self, x: Tensor, t: Tensor, **extras: object) -> Tensor:
            return self.model(x, t)

    torch.manual_seed(seed)
    vf = MLP()
    path = AffineProbPath(scheduler=CondOTScheduler())
    optim = make_adam(vf.parameters(), 1e-3, adam)
    solver = ODESolver(velocity_model=Wrapped(vf))
    grid = torch.linspace(0, 1, NFE // 2 + 1)

    def sample(x0: Tensor) -> Tensor:
        return solver.sample(x_init=x0, step_size=None, method="midpoint", time_grid=grid)

    run = Run("flow_matching", f"Swish MLP 512 x 4, batch 4096, Adam 1e-3 ({adam})", sample, budget)
    run.rng_state = torch.get_rng_state()

    def step() -> None:
        x1 = train_set[torch.randint(0, train_set.shape[0], (4096,))]
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0])
        sample_ = path.sample(t=t, x_0=x0, x_1=x1)
        loss = torch.pow(vf(sample_.x_t, sample_.t) - sample_.dx_t, 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()

    return run, step


def torchcfm_recipe(train_set: Tensor, budget: float, seed: int, adam: str) -> tuple[Run, Callable[[], None]]:
    """torchcfm, its 2-D tutorial recipe (with sigma = 0, the CondOT path of the other two)."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
    from torchcfm.models.models import MLP
    from torchcfm.utils import torch_wrapper
    from torchdyn.core import NeuralODE

    torch.manual_seed(seed)
    model = MLP(dim=2, w=64, time_varying=True)
    optimizer = make_adam(model.parameters(), 1e-3, adam)
    matcher = ConditionalFlowMatcher(sigma=0.0)
    node = NeuralODE(torch_wrapper(model), solver="midpoint", sensitivity="adjoint")
    span = torch.linspace(0, 1, NFE // 2 + 1)

    def sample(x0: Tensor) -> Tensor:
        return node.trajectory(x0, t_span=span)[-1]

    run = Run("torchcfm", f"SELU MLP 64 x 3, batch 256, Adam 1e-3 ({adam})", sample, budget)
    run.rng_state = torch.get_rng_state()

    def step() -> None:
        x1 = train_set[torch.randint(0, train_set.shape[0], (256,))]
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        vt = model(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return run, step


def book_run(
    steps: int,
    train_set: Tensor,
    reference: metrics.FloorReference,
    run_peers_for: Callable[[float], None],
    args: argparse.Namespace,
) -> Run:
    """The book's recipe for ``steps`` steps, evaluated on the way, with the peers interleaved."""
    recipe = BOOK_RECIPES[args.book_recipe]
    batch_size, lr = recipe["batch_size"], recipe["lr"]
    torch.manual_seed(args.seed)
    model = MLPVelocityField(2, 128, 4)  # for "small", the network train_small_flow builds from the same seed
    # fit's callback hands over the network after every step; this mirror of fit's EMA (same
    # decay, updated after every optimizer step) is what is evaluated on the way. At the end it
    # is checked against fit's own EMA, bit for bit.
    mirror = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.99))
    book = Run(
        f"fmbook {steps}",
        f"SiLU MLP 128 x 4, batch {batch_size}, Adam {lr:g} cosine/{steps}, EMA .99",
        lambda x0: solvers.solve_ode(mirror.module, x0, steps=NFE // 2, method="midpoint").x,
        math.inf,
    )
    slice_start = [0.0]

    def after_step(step: int, loss: float, net: nn.Module) -> None:
        book.clock.stop()  # evaluation and the peers' turns are not the book's training time
        mirror.update_parameters(net)
        book.steps = step + 1
        if book.due():
            mirror.module.eval()
            book.evaluate(reference)
        if book.clock.t - slice_start[0] >= args.slice:
            run_peers_for(args.slice)
            slice_start[0] = book.clock.t
        book.clock.start()

    mirror.module.eval()
    book.evaluate(reference)  # the untrained network, at 0 s
    book.clock.start()
    if args.book_recipe == "small":
        result = train_small_flow(
            train_set, steps=steps, seed=args.seed, threads=None, device="cpu", callback=after_step
        )
    else:
        result = train_flow_matching(
            model,
            train_set,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            ema_decay=0.99,
            seed=args.seed,
            device="cpu",
            progress=False,
            callback=after_step,
        )
    book.clock.stop()
    assert all(
        torch.equal(p, q) for p, q in zip(result.ema_model.parameters(), mirror.module.parameters())
    ), "EMA mirror drifted"
    if book.evals[-1][1] != steps:
        book.evaluate(reference)
    book.budget = book.clock.t
    book.done = True
    return book


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds for each peer")
    parser.add_argument(
        "--book-recipe", choices=sorted(BOOK_RECIPES), default="small",
        help="the book's recipe: train_small_flow (small) or chapter 3's (chapter)",
    )
    parser.add_argument("--book-steps", type=int, nargs="+", default=None, help="lengths of the book's runs (steps)")
    parser.add_argument(
        "--peers", nargs="+", choices=["flow_matching", "torchcfm"], default=["flow_matching", "torchcfm"]
    )
    parser.add_argument(
        "--peer-adam", nargs="+", choices=["default", "fused", "foreach"], default=["default"],
        help="the peers' Adam: torch's default (as their examples), fused or foreach; several: one run of each",
    )
    parser.add_argument("--resolution", type=float, default=0.5, help="seconds between evaluations, at least")
    parser.add_argument("--exact-draws", type=int, default=10, help="draws of the final exact W2 (and of its floor)")
    parser.add_argument("--slice", type=float, default=0.5, help="seconds of training per turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="the time that is compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--factors", type=float, nargs="+", default=[1.2, 1.5, 2.0], help="targets, in multiples of the noise floor"
    )
    parser.add_argument("--draws", type=int, default=20, help="draws averaged in the floor and in each evaluation")
    args = parser.parse_args(argv)
    if args.book_steps is None:
        args.book_steps = BOOK_RECIPES[args.book_recipe]["steps"]
    torch.set_num_threads(args.threads)
    Clock.mode = args.clock
    Run.resolution = args.resolution

    train_set = data.sample_moons(50_000, generator=args.seed)
    # One pair of draws of 2000 moons gives a sliced W2 with a relative spread of about a third,
    # so the floor and every evaluation average many draws, against the same data sets.
    reference = metrics.FloorReference(data.sample_moons, N_EVAL, repeats=args.draws, seed=args.seed)
    floor = reference.floor
    target = args.factors[0] * floor
    print(
        f"sliced W2 noise floor ({N_EVAL} vs {N_EVAL} moons, mean of {args.draws} pairs): {floor:.4f}; "
        f"first target {args.factors[0]:g} x floor = {target:.4f}"
    )
    print(f"sampling: midpoint, NFE {NFE}; torch threads: {torch.get_num_threads()}; compared: {args.clock} seconds")
    print(
        f"evaluated (not timed, mean of {args.draws} draws against the floor's data sets) every 0.5 s or 10 % "
        f"of a run's {args.clock} training time\n",
        flush=True,
    )

    recipes = {"flow_matching": meta_flow_matching, "torchcfm": torchcfm_recipe}
    peers = []
    for name in args.peers:
        for adam in args.peer_adam:
            run, step = recipes[name](train_set, args.budget, args.seed, adam)
            if adam != "default":
                run.name = f"{name} {adam}"[:14] if name == "torchcfm" else f"fm {adam}"
            peers.append((run, step))

    def run_peers_for(seconds: float) -> None:
        for run, step in peers:
            if run.done:
                continue
            with Swap(run):
                spent = run.clock.t
                while not run.done and run.clock.t - spent < seconds:
                    if run.due():
                        run.evaluate(reference)
                    run.clock.start()
                    step()
                    run.clock.stop()
                    run.steps += 1
                    run.done = run.clock.t >= run.budget
                if run.done:
                    run.evaluate(reference)

    # The book's recipe, through train_flow_matching itself, once for each length of run (the
    # cosine decay depends on it); fit's step callback evaluates it and hands turns to the peers.
    books = [book_run(steps, train_set, reference, run_peers_for, args) for steps in args.book_steps]
    while not all(run.done for run, _ in peers):
        run_peers_for(args.slice)

    report(books, [run for run, _ in peers], floor, args.factors)
    report_exact_w2(books + [run for run, _ in peers], args.exact_draws, args.seed)
    return 0


def report_exact_w2(runs: list[Run], draws: int, seed: int) -> None:
    """The exact W2 of each run's final model (its sampler, NFE 8) against the floor's distribution."""
    reference = metrics.FloorReference(data.sample_moons, N_EVAL, metrics.exact_w2, repeats=draws, seed=seed)
    q95 = float(np.quantile(reference.floor_values, 0.95))
    print(
        f"\nexact W2 of the final models ({draws} draws of {N_EVAL}; floor {reference.floor:.4f}, "
        f"its 95th percentile {q95:.4f}):"
    )
    for r in runs:
        with torch.no_grad():
            q = reference.ratio(lambda n, s, r=r: r.sample(data.sample_gaussian(n, generator=900 + s)))
        print(f"  {r.name:<14} {q.value:.4f} ({q}){'' if q.value <= q95 else '; above the 95th percentile'}")


def report(books: list[Run], peers: list[Run], floor: float, factors: list[float]) -> None:
    """Print the table of runs, the quality at fixed budgets and the ratios of time to each target."""
    runs = books + peers
    unit = Clock.mode
    print(f"{'run':<14} {'recipe':<58} {'steps':>6} {'wall s':>7} {'CPU s':>6} {'ms/step':>8} {'final W2/floor':>15}")
    for r in runs:
        print(
            f"{r.name:<14} {r.recipe:<58} {r.steps:>6} {r.clock.wall:>7.1f} {r.clock.cpu:>6.1f} "
            f"{1000 * r.clock.t / max(r.steps, 1):>8.1f} {r.evals[-1][2] / floor:>15.2f}"
        )
    print(f"\n{unit} seconds of training until the sliced W2 first falls to k x the noise floor")
    print(f"{'k':>5} " + " ".join(f"{r.name:>14}" for r in runs))
    for k in factors:
        cells = []
        for r in runs:
            t = r.time_to(k * floor)
            cells.append(f"{t:>14.1f}" if t is not None else f"{'> ' + format(r.clock.t, '.0f'):>14}")
        print(f"{k:>5g} " + " ".join(cells))
    budgets = [b for b in (2.5, 5, 10, 20, 40, 80, 160, 320, 640) if b <= max(r.clock.t for r in runs) * 1.5]
    print(f"\nquality at fixed training budgets ({unit} seconds): sliced W2 / noise floor, last evaluation within it")
    print(f"{'budget':>7} " + " ".join(f"{r.name:>14}" for r in runs))
    for b in budgets:
        cells = []
        for r in runs:
            v = r.value_at(b)
            mark = "*" if b > r.clock.t else " "  # the run had ended before this budget: its final value
            cells.append(f"{v / floor:>13.2f}{mark}" if v is not None else f"{'-':>14}")
        print(f"{b:>7g} " + " ".join(cells))
    print("(* the run had ended before this budget: its final value)")
    for k in factors:
        print(f"\nratios of {unit} seconds of training to reach {k:g} x the noise floor (peer / fmbook run):")
        for book in books:
            t_book = book.time_to(k * floor)
            if t_book is None:
                print(f"  {book.name}: did not reach it in {book.clock.t:.1f} s")
                continue
            parts, best, bound = [], math.inf, False
            for r in peers:
                t = r.time_to(k * floor)
                ratio = (r.clock.t if t is None else t) / t_book
                parts.append(f"{r.name} {'> ' if t is None else ''}{ratio:.1f}")
                if ratio < best:
                    best, bound = ratio, t is None
            final = book.evals[-1][2] / floor
            held = "" if final <= k else f"; it ended at {final:.2f} x floor"
            print(
                f"  {book.name} (reached at {t_book:.1f} s{held}): {', '.join(parts)}; "
                f"better peer {'> ' if bound else ''}{best:.1f}"
            )


if __name__ == "__main__":
    sys.exit(main())
