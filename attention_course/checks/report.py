"""Running an exercise's checks in-process, and the report a student sees.

``check(name, fn)`` is what the exercise notebooks call. It runs the public checks of one
exercise on ``fn`` in the current process (so it works in Colab), prints a short report and
returns a :class:`CheckReport`. It never raises because of the submission: an exception in
``fn`` is a failed check that names the exception.
"""
from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional

from .core import Check, Exercise, Verdict, get_exercise
from .probe import run_probe

__all__ = ["CheckResult", "CheckReport", "judge_check", "run_checks", "check"]

PASS, FAIL = "\u2713", "\u2717"  # check mark, ballot x
_MISSING = object()


#: Prefixes that later tiers put before the message of the output's own problem.
_PREFIXES = ("the output is already wrong, so its gradient is too: ",
             "the output must be right too: ")
#: Messages that mean the function never produced an output (one line is enough).
_ONE_CAUSE_MARKERS = ("not implemented yet", "the notebook defines no", "is not a function",
                      "not answered yet", "not done yet")


def _root(message: str) -> str:
    for p in _PREFIXES:
        if message.startswith(p):
            return message[len(p):]
    return message


@dataclass
class CheckResult:
    """The result of one check: what the grader turns into one Gradescope test."""

    exercise: str
    check_id: str
    name: str
    tier: str
    passed: bool
    points: float
    message: str = ""
    hint: Optional[str] = None
    details: List[str] = field(default_factory=list)
    hidden: bool = False
    internal_error: bool = False

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0

    @property
    def title(self) -> str:
        return f"{self.exercise}: [{self.tier}] {self.name}" + (" (hidden)" if self.hidden else "")

    def explanation(self) -> str:
        """Message, details and hint, one per line (the Gradescope ``output``)."""
        lines = [self.message] if self.message else []
        lines += list(self.details)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class CheckReport:
    """All check results of one exercise. ``passed`` is True when every check passed."""

    exercise: str
    results: List[CheckResult]
    note: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def n_passed(self) -> int:
        return sum(r.passed for r in self.results)

    def summary(self) -> str:
        if self.note and not self.results:
            return f"{self.exercise}: {self.note}"
        n = len(self.results)
        if self.passed:
            return f"{self.exercise}: {'the check' if n == 1 else f'all {n} checks'} passed {PASS}"
        return f"{self.exercise}: {self.n_passed}/{n} checks passed"

    def format(self) -> str:
        """The report: one line per check, details for failures (repeats collapsed)."""
        lines = [self.summary()]
        if not self.results:
            return lines[0]
        if self.passed:  # short: which tiers were covered
            tiers = {}
            for r in self.results:
                tiers[r.tier] = tiers.get(r.tier, 0) + 1
            return lines[0] + " (" + ", ".join(
                t if n == 1 else f"{t} x{n}" for t, n in tiers.items()) + ")"
        failures = [r for r in self.results if not r.passed]
        roots = {_root(r.message) for r in failures}
        if len(failures) == len(self.results) and len(roots) == 1 and any(
                m in failures[0].message for m in _ONE_CAUSE_MARKERS):
            # nothing ran at all (not implemented, missing, ...): one line says it
            lines[0] += f": {_root(failures[0].message)}"
            return "\n".join(lines)
        width = max(len(r.tier) for r in self.results)
        last, hints = None, set()
        for r in self.results:
            lines.append(f"  {PASS if r.passed else FAIL} {r.tier:<{width}}  {r.name}")
            if r.passed:
                continue
            if r.hint and r.hint in hints:
                lines.append("      (the same mistake as above)")
                continue
            if _root(r.message) == last and not r.hint:
                lines.append("      (same problem as above)")
                continue
            last = _root(r.message)
            if r.hint:
                hints.add(r.hint)
            detail = [d for d in r.details if d.startswith("case")]
            rest = [d for d in r.details if not d.startswith("case")]
            for d in detail + [r.message] + rest:
                lines.append(f"      {d}")
            if r.hint:
                lines.append(f"      hint: {r.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"<CheckReport {self.summary()}>"

    def _ipython_display_(self):
        # check() has just printed the report; when the report is the value of the same
        # cell, showing it again would duplicate it.
        try:
            from IPython import get_ipython
            ip = get_ipython()
            same_cell = ip is not None and getattr(self, "_printed_in", None) == ip.execution_count
        except Exception:
            same_cell = False
        if not same_cell:
            print(self.format())


def judge_check(ex: Exercise, chk: Check, outcomes: Any) -> CheckResult:
    """Judge one check's outcomes. Never raises: a judge that fails on garbage output
    reports the output as wrong."""
    try:
        v = chk.judge(ex, chk.get_cases(), outcomes)
        if not isinstance(v, Verdict):
            raise TypeError(f"judge returned {type(v).__name__}")
        internal = False
    except Exception as e:  # the output was too strange to compare
        v = Verdict(False, f"the output could not be compared with the reference "
                           f"({type(e).__name__}: {str(e)[:200]})")
        internal = True
    return CheckResult(ex.name, chk.id, chk.name, chk.tier, bool(v.passed), chk.points,
                       v.message, v.hint, list(v.details), chk.hidden, internal)


def _wire(cases) -> List[dict]:
    # Copies: a submission that modifies its inputs in place must not change the cases.
    return [copy.deepcopy(c.to_wire()) for c in cases]


def run_checks(ex: Exercise, obj: Any, checks: Optional[Iterable[Check]] = None, *,
               missing: bool = False) -> CheckReport:
    """Probe and judge ``checks`` (default: the exercise's public checks) in this process."""
    results = []
    for chk in (ex.checks if checks is None else checks):
        outcomes = run_probe(obj, chk.probe, _wire(chk.get_cases()), options=chk.options,
                             missing=missing)
        results.append(judge_check(ex, chk, outcomes))
    return CheckReport(ex.name, results)


def check(name: str, obj: Any = _MISSING, *, verbose: bool = True) -> CheckReport:
    """Run the public checks of exercise ``name`` on ``obj`` and print a short report.

    ``obj`` is the function you wrote (or, for a prediction, its value). Left out, it is
    looked up by ``name`` in the calling notebook's globals. Returns a :class:`CheckReport`
    (``.passed``, ``.score``, ``.results``). While a notebook is being graded
    (``ATTENTION_GRADING=1``) this does nothing: the grader runs the checks itself.
    """
    if os.environ.get("ATTENTION_GRADING") == "1":
        return CheckReport(str(name), [], note="checks skipped while grading")
    try:
        ex = get_exercise(str(name))
    except KeyError as e:
        report = CheckReport(str(name), [], note=str(e.args[0] if e.args else e))
        if verbose:
            print(report.format())
        return report
    missing = False
    if obj is _MISSING:
        frame = sys._getframe(1)
        for scope in (frame.f_locals, frame.f_globals):
            if ex.name in scope:
                obj = scope[ex.name]
                break
        else:
            missing, obj = True, None
    report = run_checks(ex, obj, missing=missing)
    if verbose:
        print(report.format())
        try:
            from IPython import get_ipython
            ip = get_ipython()
            report._printed_in = ip.execution_count if ip is not None else None
        except Exception:
            pass
    return report
