"""The checkers' shared machinery: a reader's function that is a stub, raises, returns the wrong
shape or NaN, modifies its inputs or never ends gets a clear verdict, never a hung notebook."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from fmbook import exercises as ex
from fmbook.exercises import _runner


def euler(velocity, x, t, h):
    return x + h * velocity(x, t)


def stub(velocity, x, t, h):
    raise NotImplementedError("your turn")


def test_a_correct_answer_passes_and_says_so(capsys):
    result = ex.check_euler_step(euler)
    assert result and result.status == "passed"
    assert "PASSED" in capsys.readouterr().out


def test_the_untouched_stub_is_not_attempted_in_one_line(capsys):
    result = ex.check_euler_step(stub)
    out = capsys.readouterr().out
    assert not result and not result.attempted and result.status == "not attempted"
    assert result.cases == []
    assert "not attempted yet" in out and "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert max(len(line) for line in out.splitlines()) <= 77  # fits the book's output box
    assert repr(result) == "CheckResult(check_euler_step: not attempted)"


def test_another_not_implemented_error_is_a_failure_not_a_stub():
    def unfinished(velocity, x, t, h):
        raise NotImplementedError("the midpoint variant")

    result = ex.check_euler_step(unfinished, verbose=False)
    assert result.attempted and not result
    assert "NotImplementedError: the midpoint variant" in result.failures[0].detail


def test_a_function_that_raises_fails_with_its_message():
    def broken(velocity, x, t, h):
        return x @ torch.ones(7, 7)

    result = ex.check_euler_step(broken, verbose=False)
    assert not result and len(result.failures) == len(result.cases)
    assert "your function raised RuntimeError" in result.failures[0].detail
    assert "Traceback" not in result.report()


def test_a_wrong_shape_is_named():
    result = ex.check_euler_step(lambda v, x, t, h: (x + h * v(x, t)).sum(1), verbose=False)
    assert not result
    assert "must return shape" in result.failures[0].detail


def test_every_line_of_a_failure_report_fits_the_output_box():
    result = ex.check_cfm_loss(lambda m, x0, x1, t: ((m(x0, t) - x1) ** 2).sum(1).mean(), verbose=False)
    report = result.report()
    assert not result and "First failure" in report
    assert max(len(line) for line in report.splitlines()) <= 77, report
    long = "  hint: " + "a factor is missing " * 8
    folded = _runner._wrap(long)
    assert len(long) > 77 and folded.split() == long.split()  # folded, no word lost
    assert max(len(line) for line in folded.splitlines()) <= 77


def test_nan_is_named():
    result = ex.check_euler_step(lambda v, x, t, h: x * float("nan"), verbose=False)
    assert not result
    assert "NaN or inf" in result.failures[0].detail


def test_an_in_place_update_fails_and_the_report_shows_the_original_inputs():
    seen = []

    def in_place(velocity, x, t, h):
        seen.append(x.clone())
        x += h * velocity(x, t)
        return x

    result = ex.check_euler_step(in_place, verbose=False)
    assert not result
    first = result.failures[0]
    assert "modified its input x in place" in first.detail
    torch.testing.assert_close(first.inputs["x"], seen[0])  # the originals, restored
    # control: the same update written out of place passes the same checker
    assert ex.check_euler_step(lambda v, x, t, h: x + h * v(x, t), verbose=False)


@pytest.mark.parametrize("kind", ["loop", "sleep"])
def test_a_function_that_never_ends_is_stopped(kind):
    def forever(velocity, x, t, h):
        if kind == "sleep":
            time.sleep(60)
        while True:
            pass

    start = time.perf_counter()
    result = ex.check_euler_step(forever, verbose=False, time_limit=0.3)
    assert time.perf_counter() - start < 10
    assert not result and len(result.cases) == 4
    assert all("did not finish within 0.3 s" in c.detail for c in result.failures)


def test_except_exception_in_the_reader_code_cannot_swallow_the_time_limit():
    def stubborn(velocity, x, t, h):
        while True:
            try:
                time.sleep(0.05)
            except Exception:
                pass

    result = ex.check_euler_step(stubborn, verbose=False, time_limit=0.2)
    assert not result and "did not finish" in result.failures[0].detail


def test_outside_the_main_thread_the_time_limit_still_gives_a_verdict():
    box = {}

    def run():
        box["result"] = ex.check_euler_step(lambda v, x, t, h: time.sleep(2), verbose=False, time_limit=0.2)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    result = box["result"]
    assert not result and "still running in the background" in result.failures[0].detail


def test_the_time_limit_leaves_no_alarm_behind():
    ex.check_euler_step(euler, verbose=False, time_limit=0.5)
    import signal

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_bad_arguments_of_the_checker_are_named():
    with pytest.raises(TypeError, match="fn must be a function"):
        ex.check_euler_step("euler")
    with pytest.raises(ValueError, match="time_limit"):
        _runner.run_cases("x", euler, [], verbose=False, time_limit=-1.0)


def test_every_chapter_module_lists_real_checkers():
    for chapter, names in ex.BY_CHAPTER.items():
        for name in names:
            assert callable(getattr(ex, name)), (chapter, name)
