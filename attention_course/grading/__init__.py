"""Grading exercise notebooks: sandboxed execution, public + hidden checks, gradebooks.

* :func:`grade_folder` / :class:`Grader` -- grade every notebook of a folder: each runs in
  its own subprocess (wall-time and memory limits, scrubbed environment, no access to the
  solutions), its exercises are probed with the checks' inputs, and the outcomes are judged
  here with partial credit per check. Writes ``gradebook.csv``, ``summary.txt`` and a
  Gradescope ``results.json`` per submission.
* :func:`build_student_bundle` -- the exercise notebooks for students, with a proof that
  neither they nor the package contain solutions or hidden checks.
* :func:`main` -- the ``attention-grade`` command line (``python -m attention_course.grading``).

The instructor's solutions and hidden checks live outside this package (``instructor/``);
see :mod:`attention_course.grading.instructor`.
"""
from .bundle import BundleLeakError, BundleReport, build_student_bundle, scan_for_leaks
from .cli import main
from .grader import Grader, SubmissionResult, grade_folder
from .instructor import find_instructor_dirs, load_hidden_checks, load_solutions, selftest
from .notebook import solution_sources, solve_notebook, strip_outputs
from .sandbox import Limits

__all__ = [
    "grade_folder", "Grader", "SubmissionResult", "Limits", "main",
    "build_student_bundle", "scan_for_leaks", "BundleReport", "BundleLeakError",
    "find_instructor_dirs", "load_hidden_checks", "load_solutions", "selftest",
    "solve_notebook", "solution_sources", "strip_outputs",
]
