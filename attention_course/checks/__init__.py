"""Exercise checks: ``check("name", fn)`` in the notebooks, and the specs the grader reuses.

* :func:`check` -- run the public checks of one exercise in-process and print a report
  (shape first, then values with the largest errors and the tolerance, then a hint when the
  output matches a known mistake);
* :func:`get_exercise`, :func:`get_assignment`, :func:`assignments` -- the registry: exercise
  name -> :class:`Exercise` (signature, kind, reference, known mistakes, tiered checks);
* :mod:`~attention_course.checks.kinds` -- the check building blocks chapter modules use;
* :mod:`~attention_course.checks.chapters` -- one module per exercise notebook.

Checks are public (they ship with the library); the instructor's hidden checks and
reference solutions live outside the package (see :mod:`attention_course.grading`).
"""
from .core import (
                   TIERS,
                   Assignment,
                   Case,
                   Check,
                   Exercise,
                   Mistake,
                   Verdict,
                   all_exercises,
                   assignments,
                   get_assignment,
                   get_exercise,
                   register,
)
from .kinds import answer_check, grad_check, output_check, trace_check
from .report import CheckReport, CheckResult, check, judge_check, run_checks

__all__ = [
    "check", "CheckReport", "CheckResult", "run_checks", "judge_check",
    "TIERS", "Case", "Check", "Exercise", "Assignment", "Mistake", "Verdict", "register",
    "get_exercise", "get_assignment", "assignments", "all_exercises",
    "output_check", "grad_check", "trace_check", "answer_check",
]
