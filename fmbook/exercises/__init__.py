r"""Checkers for the exercises: run a reader's function against an independent reference.

Every coding exercise of the book has, right after its statement, a "your turn" cell with a
stub that raises ``NotImplementedError("your turn")`` and a check cell that calls a checker of
this package::

    from fmbook import exercises

    def my_euler_step(velocity, x, t, h):
        raise NotImplementedError("your turn")

    verdict = exercises.check_euler_step(my_euler_step)

A checker calls the reader's function on a few seeded random inputs, compares what it returns
with an independent reference, prints a verdict and returns a :class:`CheckResult` (truthy when
every case passed). Untouched, the stub is reported as *not attempted* in one line. A failing
case shows the input, the expected and the received value, and, when the answer matches a
typical mistake (a flipped sign, the reversed time convention, a missing factor, a wrong shape),
a hint. Each call runs on copies of its inputs (a function that modifies them in place fails,
and the report shows the originals) and under a time limit (``time_limit`` seconds, 20 by
default), so an endless loop gives a verdict instead of a hung notebook.

The checkers live in one module per chapter (:mod:`fmbook.exercises.ch3` for chapter 3, ...)
and are all importable from here. The oldest ones, on paths, solver steps, the CFM loss and
OT pairings, are in :mod:`fmbook.exercises._checkers`:

====================================  ==========================================================
checker                               the reader's function
====================================  ==========================================================
:func:`check_conditional_velocity`    ``fn(x0, x1, t) -> u`` with ``u = d/dt (alpha_t x1 + sigma_t x0)``,
                                      or ``fn(x, x1, t)`` (the velocity at a point ``x``) with
                                      ``form="point"``
:func:`check_euler_step`              ``fn(velocity, x, t, h) -> x_next`` (as :func:`fmbook.solvers.euler_step`)
:func:`check_midpoint_step`           ``fn(velocity, x, t, h) -> x_next`` (as :func:`fmbook.solvers.midpoint_step`)
:func:`check_cfm_loss`                ``fn(model, x0, x1, t) -> scalar loss`` (as :func:`fmbook.losses.cfm_loss`)
:func:`check_ot_pairing`              ``fn(x0, x1) -> perm`` (``x1[perm]`` paired with ``x0``), or
                                      ``fn(x0, x1) -> (x0_paired, x1_paired)``
:func:`check_score_from_velocity`     ``fn(v, x, t) -> score`` for a Gaussian source
:func:`check_marginal_velocity`       ``fn(x, t, data) -> u`` the exact marginal velocity of a finite data set
====================================  ==========================================================

Inputs ``x0, x1, x, v, data`` are float32 tensors ``(B, d)``; ``t`` is a tensor ``(B,)`` (a 0-dim
tensor for the solver steps, whose ``h`` is a 0-dim tensor too). Every path is the
CondOT path :math:`x_t = t x_1 + (1 - t) x_0` unless a ``scheduler`` is given.
"""

from __future__ import annotations

from . import ch1, ch2, ch3, ch4, ch5, ch6, ch7, ch8
from ._checkers import (
    check_cfm_loss,
    check_conditional_velocity,
    check_euler_step,
    check_marginal_velocity,
    check_midpoint_step,
    check_ot_pairing,
    check_score_from_velocity,
)
from ._runner import ATOL, RTOL, STUB_MESSAGE, TIME_LIMIT, CaseResult, CheckResult
from .ch1 import *  # noqa: F403
from .ch2 import *  # noqa: F403
from .ch3 import *  # noqa: F403
from .ch4 import *  # noqa: F403
from .ch5 import *  # noqa: F403
from .ch6 import *  # noqa: F403
from .ch7 import *  # noqa: F403
from .ch8 import *  # noqa: F403

#: The checkers of each chapter's exercises, by chapter number.
BY_CHAPTER: dict[int, list[str]] = {
    n: list(module.__all__) for n, module in enumerate((ch1, ch2, ch3, ch4, ch5, ch6, ch7, ch8), start=1)
}

__all__ = [
    "ATOL",
    "BY_CHAPTER",
    "RTOL",
    "STUB_MESSAGE",
    "TIME_LIMIT",
    "CaseResult",
    "CheckResult",
    "check_cfm_loss",
    "check_conditional_velocity",
    "check_euler_step",
    "check_marginal_velocity",
    "check_midpoint_step",
    "check_ot_pairing",
    "check_score_from_velocity",
    *sorted({name for names in BY_CHAPTER.values() for name in names} - {
        "check_cfm_loss", "check_conditional_velocity", "check_euler_step", "check_marginal_velocity",
        "check_midpoint_step", "check_ot_pairing", "check_score_from_velocity"}),
]
