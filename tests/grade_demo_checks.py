"""Two tiny exercises (99.1 double, 99.2 triple) for the grader's tests, standing in for
``toyenv.course.checks``: the same ``check(id, fn, quiet=False)`` call, the same printed line, and
the same report to the grader (``toyenv.course.channel``) as ``framework.exercise`` sends. Standard
library only, so a test kernel imports it in milliseconds instead of importing toyenv (seconds).
Kernels find it through PYTHONPATH (the tests put this folder on it)."""
import sys

EXERCISES = {"99.1": {"notebook": "99_demo", "title": "Double"},
             "99.2": {"notebook": "99_demo", "title": "Triple"}}


def _double(fn):
    if fn(3) == 6 and fn(0) == 0:
        return "passed", "double(3) == 6"
    return "failed", "double(0) should be 0: did you add instead of multiply?"


def _triple(fn):
    return ("passed", "triple(2) == 6") if fn(2) == 6 else ("failed", "triple(2) should be 6")


_CHECKS = {"99.1": _double, "99.2": _triple}


def check(id, fn, *, quiet=False):
    try:
        status, message = _CHECKS[id](fn)
    except NotImplementedError:
        status, message = "not attempted", "not implemented yet"
    except Exception as e:  # noqa: BLE001
        status, message = "failed", f"your function raised {type(e).__name__}: {e}"
    channel = sys.modules.get("toyenv_grader_channel")      # as toyenv.course.channel.report_verdict
    send = getattr(channel, "report", None)
    if send is not None:
        send(id, status, message)
    if not quiet:
        print(f"[exercise {id}] {status}: {message}", flush=True)
    return status
