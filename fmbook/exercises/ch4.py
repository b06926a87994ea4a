"""Checkers of the exercises of chapter 4, Optimal transport and kinetic energy.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises.CheckResult`.
"""

from __future__ import annotations

from ._checkers import check_ot_pairing

__all__: list[str] = [
    "check_ot_pairing",
]
