"""One result type for every solver and sampler: fmbook.solvers.Solution."""

import torch

from fmbook import ddpm, solvers
from fmbook.models import MLPVelocityField


def _zero_noise(x, t):
    return torch.zeros_like(x)


def test_every_solver_and_sampler_returns_a_solution_whose_times_match_its_trajectory():
    x0 = torch.randn(4, 2)
    schedule = ddpm.linear_schedule(20)
    results = {
        "solve_ode": solvers.solve_ode(lambda x, t: -x, x0, steps=5, return_trajectory=True),
        "euler_maruyama": solvers.euler_maruyama(lambda x, t: -x, x0, 0.1, steps=5, generator=0,
                                                 return_trajectory=True),
        "ancestral_sample": ddpm.ancestral_sample(_zero_noise, x0, schedule, generator=0, return_trajectory=True),
        "ddim_sample": ddpm.ddim_sample(_zero_noise, x0, schedule, steps=5, return_trajectory=True),
    }
    for name, sol in results.items():
        assert type(sol) is solvers.Solution, name
        assert sol.times.dtype == torch.float64, name
        assert sol.trajectory.shape[1] == sol.times.shape[0], name
        assert torch.equal(sol.trajectory[:, -1], sol.x), name
        assert bool((sol.times[1:] > sol.times[:-1]).all()), name  # the book's time runs from noise to data


def test_ddpm_times_are_the_books_times_of_the_steps():
    schedule = ddpm.linear_schedule(10)
    sol = ddpm.ancestral_sample(_zero_noise, torch.randn(3, 2), schedule, generator=0)
    assert torch.allclose(sol.times, torch.linspace(0, 1, 11, dtype=torch.float64))
    assert sol.nfe == 10
    ks = ddpm.ddim_timesteps(10, 4)
    sol = ddpm.ddim_sample(_zero_noise, torch.randn(3, 2), schedule, steps=4)
    assert torch.allclose(sol.times, 1 - torch.tensor(ks, dtype=torch.float64) / 10)
    assert sol.times.shape == (5,) and sol.nfe == 4


def test_the_adjoint_solution_is_a_solution_with_its_backward_cost():
    field = MLPVelocityField(dim=2, width=8, depth=1)
    sol = solvers.differentiable_solve(field, torch.randn(4, 2, requires_grad=True), steps=4, method="euler")
    assert isinstance(sol, solvers.Solution)
    assert sol.nfe_forward == sol.nfe == 4
    sol.x.sum().backward()
    assert sol.nfe_backward > 0
