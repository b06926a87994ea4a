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

The checkers live in one module per chapter (:mod:`fmbook.exercises.ch3` for chapter 3, ...),
whose docstrings give each reader function's signature, shapes and reference; all are
importable from here, and :data:`BY_CHAPTER` lists them by chapter. The first seven, on paths,
solver steps, the CFM loss and OT pairings, are written in :mod:`fmbook.exercises._checkers`
and listed under the chapters that use them. Inputs are batch-first tensors ``(B, d)``, times
``(B,)``; every path is the CondOT path :math:`x_t = t x_1 + (1 - t) x_0` unless a
``scheduler`` is given.
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
