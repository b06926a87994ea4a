"""Draw the landing page's figure: Gaussian noise carried to the two moons by the exact flow.

No training: for a finite data set (600 points of the moons) the marginal velocity of the
linear path is known in closed form (``fmbook.paths.marginal_velocity``, chapter 3), and the
midpoint method carries 1500 Gaussian samples along it. Five panels show the particles at
t = 0, 0.25, 0.5, 0.75 and 1 over the data. Deterministic: the same file on every run.

    python scripts/landing_figure.py [--out images/landing-flow.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fmbook import data, paths, solvers, viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)


def flow_snapshots(n_particles: int = 1500, n_data: int = 600, steps: int = 60) -> tuple[torch.Tensor, list]:
    """The data and the particles at each of ``TIMES``, in float64."""
    torch.manual_seed(0)
    moons = data.sample_moons(n_data, generator=1).double()
    x0 = data.sample_gaussian(n_particles, generator=2).double()
    velocity = lambda x, t: paths.marginal_velocity(x, t, moons)  # noqa: E731
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    solution = solvers.solve_ode(velocity, x0, t_grid=grid, method="midpoint", return_trajectory=True)
    indices = [round(t * steps) for t in TIMES]
    return moons, [solution.trajectory[:, i] for i in indices]


def draw(out: Path) -> Path:
    moons, snapshots = flow_snapshots()
    fig, axes = plt.subplots(1, len(TIMES), figsize=(viz.FULL_WIDTH, 1.75))  # the content column's width
    for ax, t, x in zip(axes, TIMES, snapshots):
        viz.plot_samples(moons, ax=ax, color=viz.DATA_COLOR, alpha=0.25, size=2.0)
        viz.plot_samples(x, ax=ax, color=viz.SOURCE_COLOR if t < 1 else viz.MODEL_COLOR, alpha=0.6, size=1.5,
                         title=f"t = {t:g}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "images" / "landing-flow.png")
    args = parser.parse_args(argv)
    print(f"wrote {draw(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
