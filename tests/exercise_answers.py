"""What the tests of the exercise checkers share: the reader's untouched stub, and the reading of
a verdict (a CheckResult whose truth, ``passed`` and failures agree)."""

from __future__ import annotations

from fmbook import exercises as ex


def stub(*args):
    """The "your turn" cell as the reader finds it."""
    raise NotImplementedError(ex.STUB_MESSAGE)


def passes(result: ex.CheckResult) -> bool:
    """Whether a verdict passed, after checking that its parts agree."""
    assert isinstance(result, ex.CheckResult)
    assert bool(result) == result.passed == (result.attempted and not result.failures)
    return result.passed
