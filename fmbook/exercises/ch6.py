"""Checkers of the exercises of chapter 6, Score matching and SDE sampling.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises.CheckResult`.
"""

from __future__ import annotations

from ._checkers import check_score_from_velocity

__all__: list[str] = [
    "check_score_from_velocity",
]
