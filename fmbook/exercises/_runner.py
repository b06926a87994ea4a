r"""The machinery every checker shares: run a reader's function on seeded cases, judge it, report.

A checker builds a list of :class:`Case` (inputs, the expected value from an independent
reference, and the values that typical mistakes give) and hands it with the reader's function to
:func:`run_cases`. Each case is run

- on fresh copies of its inputs, so that a function that modifies its arguments in place is
  caught (its case fails, saying which argument changed) and the report still shows the
  original inputs;
- under a time limit (:data:`TIME_LIMIT` seconds by default), so that a loop that never ends or
  a forgotten ``sleep`` gives a verdict instead of a hung notebook;
- with every exception of the reader's code caught and reported as a failed case (its type and
  message, not a traceback), except ``KeyboardInterrupt``.

A function that still raises ``NotImplementedError("your turn")`` (the stub of a "your turn"
cell) is *not attempted*: the verdict says so in one line and the notebook goes on.
"""

from __future__ import annotations

import copy
import signal
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import paths
from .._checks import check_positive_float

#: Default tolerances of the comparisons (float32 inputs): ``|received - expected| <= ATOL + RTOL |expected|``.
RTOL = 1e-4
ATOL = 1e-5
#: Seconds one case may take before the reader's function is stopped and the case fails.
TIME_LIMIT = 20.0
#: The message of the stubs' ``NotImplementedError``: a function raising it is "not attempted".
STUB_MESSAGE = "your turn"


@dataclass
class CaseResult:
    """The outcome of one test case: what was given, expected and received."""

    description: str
    passed: bool
    inputs: dict[str, object]
    expected: object
    received: object
    detail: str = ""
    hint: str = ""


@dataclass
class CheckResult:
    """The verdict of a checker; ``bool(result)`` is True when every case passed.

    ``attempted`` is False when the reader's function is still the stub (it raised
    ``NotImplementedError("your turn")``); then ``cases`` is empty and ``passed`` is False.
    """

    name: str
    cases: list[CaseResult] = field(default_factory=list)
    attempted: bool = True

    @property
    def passed(self) -> bool:
        return self.attempted and bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"not attempted"``."""
        if not self.attempted:
            return "not attempted"
        return "passed" if self.passed else "failed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        if not self.attempted:
            return f"CheckResult({self.name}: not attempted)"
        ok = sum(c.passed for c in self.cases)
        return f"CheckResult({self.name}: {'passed' if self.passed else 'FAILED'}, {ok}/{len(self.cases)} cases)"

    def report(self) -> str:
        """The verdict as text: one line per case, and the values of the first failure."""
        if not self.attempted:  # the stub's comment says what to do; one line here
            return _wrap(f"{self.name}: not attempted yet (fill in the stub above)")
        ok = sum(c.passed for c in self.cases)
        head = "PASSED: well done" if self.passed else "FAILED"
        lines = [f"{self.name}: {head} ({ok} of {len(self.cases)} cases passed)"]
        for c in self.cases:
            lines.append(f"  {'ok  ' if c.passed else 'FAIL'} {c.description}")
        first = self.failures[0] if self.failures else None
        if first is not None:
            lines.append(f"First failure: {first.description}")
            for name, value in first.inputs.items():
                lines.append(_indent(f"{name} = {show(value)}", "  input  "))
            lines.append(_indent(show(first.expected), "  expected "))
            lines.append(_indent(show(first.received), "  received "))
            if first.detail:
                lines.append(f"  {first.detail}")
            if first.hint:
                lines.append(f"  hint: {first.hint}")
        return "\n".join(_wrap(line) for line in lines)


#: The widest line a report prints: the book's code and output boxes show 77 characters.
REPORT_WIDTH = 77


def _wrap(line: str, width: int = REPORT_WIDTH) -> str:
    """A line of a report folded to ``width`` characters, continuation lines indented under it."""
    if len(line) <= width:
        return line
    lead = len(line) - len(line.lstrip(" "))
    pad = " " * (lead + 4)
    return textwrap.fill(line.strip(), width=width, initial_indent=" " * lead, subsequent_indent=pad,
                         break_long_words=True, break_on_hyphens=False)


def _indent(text: str, prefix: str) -> str:
    pad = " " * len(prefix)
    return "\n".join((prefix if i == 0 else pad) + line for i, line in enumerate(text.splitlines()))


def show(value: object, rows: int = 3) -> str:
    """A short printout: the first ``rows`` rows of a tensor, with its shape."""
    if isinstance(value, Tensor):
        v = value.detach().cpu()
        if v.ndim == 0:
            return f"{v.item():.6g}"
        body = np.array2string(v[:rows].double().numpy(), precision=5, suppress_small=True, max_line_width=60)
        more = f" ... ({v.shape[0] - rows} more rows)" if v.ndim >= 1 and v.shape[0] > rows else ""
        return f"{body}{more}  shape {tuple(v.shape)}"
    if callable(value):
        doc = getattr(value, "__doc__", None)
        return (doc.strip().splitlines()[0] if doc else None) or getattr(value, "__name__", repr(value))
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class Mismatch(Exception):
    """The reader's output has the wrong type or shape (the message says what was expected)."""


class _OutOfTime(BaseException):
    """Raised in the reader's code when its time is up (a BaseException: ``except Exception`` in
    the reader's code cannot swallow it)."""


def as_tensor_like(out: object, expected: Tensor, what: str) -> Tensor:
    """``out`` as a tensor of the shape of ``expected``, or :class:`Mismatch` saying what is wrong."""
    if not isinstance(out, Tensor):
        raise Mismatch(f"{what} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != expected.shape:
        raise Mismatch(f"{what} must return shape {tuple(expected.shape)}, got {tuple(out.shape)}")
    return out.detach().to(expected)


def close(received: Tensor, expected: Tensor, rtol: float, atol: float) -> tuple[bool, str]:
    """Whether ``|received - expected| <= atol + rtol |expected|`` everywhere, and a sentence on the gap."""
    if not bool(torch.isfinite(received).all()):
        return False, "the received value contains NaN or inf"
    err = (received - expected).abs()
    bound = atol + rtol * expected.abs()
    ok = bool((err <= bound).all())
    worst = float(err.max()) if err.numel() else 0.0
    where = ""
    if err.ndim >= 2 and err.numel():
        where = f" (row {int(err.reshape(err.shape[0], -1).max(1).values.argmax())})"
    return ok, f"largest difference {worst:.3g}{where}; tolerance {atol:g} + {rtol:g} * |expected|"


Compare = Callable[[Any], tuple[bool, str]]


@dataclass
class Case:
    """One test case of a checker.

    ``call(fn)`` runs the reader's ``fn`` on the case's inputs (the tensors of ``inputs``; the
    runner restores them after the call) and returns the value to judge. By default it is
    compared with ``expected`` by :func:`close`; ``compare(received) -> (ok, detail)`` replaces
    that comparison (for answers that are not a tensor of known values). ``mistakes`` maps a hint
    to the value a typical mistake gives: a failing answer close to one of them gets its hint.
    """

    description: str
    inputs: dict[str, object]
    call: Callable[[Callable], object]
    expected: object
    mistakes: dict[str, Tensor] = field(default_factory=dict)
    compare: Compare | None = None


def _snapshot(inputs: dict[str, object]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in inputs.items() if isinstance(v, Tensor)}


def _restore(inputs: dict[str, object], saved: dict[str, Tensor]) -> list[str]:
    """Put back the saved values of the input tensors; return the names of those that had changed."""
    changed = []
    for name, before in saved.items():
        now = inputs[name]
        assert isinstance(now, Tensor)
        same = now.shape == before.shape and bool(torch.equal(now.detach(), before))
        if not same:
            changed.append(name)
            with torch.no_grad():
                if now.shape == before.shape:
                    now.copy_(before)
                else:
                    now.set_(before.clone())
    return changed


def call_with_time_limit(call: Callable[[], object], seconds: float | None) -> object:
    """``call()``, stopped with ``TimeoutError`` after ``seconds`` (None: no limit).

    In the main thread of a process with ``SIGALRM`` (Linux, macOS: a Jupyter kernel runs cells
    there) the reader's code is interrupted where it stands. Elsewhere the call runs in a
    daemon thread that is abandoned, still running, when its time is up.
    """
    if seconds is None:
        return call()
    use_alarm = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if use_alarm:
        def stop(signum: int, frame: object) -> None:
            raise _OutOfTime

        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return call()
        except _OutOfTime:
            raise TimeoutError(f"your function did not finish within {seconds:g} s (an endless loop?)") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(
            f"your function did not finish within {seconds:g} s (an endless loop?); it is still running "
            "in the background: restart the kernel if the notebook slows down"
        )
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def _is_stub(err: BaseException) -> bool:
    return isinstance(err, NotImplementedError) and str(err).strip() == STUB_MESSAGE


def run_cases(
    name: str,
    fn: Callable,
    cases: list[Case],
    verbose: bool,
    rtol: float = RTOL,
    atol: float = ATOL,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """Run ``fn`` on every case (copies of the inputs, a time limit each) and judge it.

    Returns the :class:`CheckResult`; with ``verbose`` its report is printed.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function (callable), got {type(fn).__name__}")
    check_positive_float(rtol, "rtol", allow_zero=True)
    check_positive_float(atol, "atol", allow_zero=True)
    if time_limit is not None:
        check_positive_float(time_limit, "time_limit")
    result = CheckResult(name)
    for case in cases:
        hint, received, detail = "", None, ""
        saved = _snapshot(case.inputs)
        try:
            received = call_with_time_limit(lambda: case.call(fn), time_limit)
            if case.compare is not None:
                ok, detail = case.compare(received)
            else:
                ok, detail = close(received, case.expected, rtol, atol)  # type: ignore[arg-type]
        except Mismatch as err:
            ok, detail = False, str(err)
        except Exception as err:  # the reader's code raised: report it as a failed case
            if _is_stub(err):
                _restore(case.inputs, saved)
                result = CheckResult(name, attempted=False)
                break
            ok, detail = False, f"your function raised {type(err).__name__}: {err}"
        changed = _restore(case.inputs, saved)
        if changed:
            ok = False
            names = ", ".join(changed)
            detail = (
                f"your function modified its input {names} in place (the inputs shown are the originals); "
                "compute a new tensor (x = x + ...) instead of writing into the argument (x += ..., x[...] = ...)"
            )
        if not ok and isinstance(received, Tensor):
            for text, value in case.mistakes.items():
                if value.shape == received.shape and close(received, value.to(received), 1e-3, 1e-5)[0]:
                    hint = text
                    break
        result.cases.append(
            CaseResult(case.description, ok, case.inputs, case.expected, received, "" if ok else detail, hint)
        )
    if verbose:
        print(result.report())
    return result


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (an int >= 0)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def check_scheduler(scheduler: paths.Scheduler | None) -> paths.Scheduler:
    """The scheduler to test with: CondOT when None."""
    if scheduler is None:
        return paths.CondOTScheduler()
    if not isinstance(scheduler, paths.Scheduler):
        raise TypeError(f"scheduler must be an fmbook.paths.Scheduler, got {type(scheduler).__name__}")
    return scheduler


#: (batch, dim) of the random cases: a single point, small batches, a higher dimension.
SHAPES = ((1, 2), (5, 2), (8, 3), (4, 5))


def times(b: int, g: torch.Generator, low: float = 0.0, high: float = 1.0) -> Tensor:
    """``b`` times uniform in ``[low, high]``, shape ``(b,)``."""
    return low + (high - low) * torch.rand(b, generator=g)


def tensor_call(*args: object, what: str, expected: Tensor) -> Callable[[Callable], Tensor]:
    """A case's ``call``: ``fn(*args)`` read as a tensor of the shape of ``expected``."""
    return lambda fn: as_tensor_like(fn(*args), expected, what)


def deep_copy_module(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a module for one case, so that the reader's code cannot change the original."""
    return copy.deepcopy(module)
