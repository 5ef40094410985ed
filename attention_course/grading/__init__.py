"""Grading exercise notebooks: sandboxed execution, public + hidden checks, gradebooks.

* :func:`grade_folder` / :class:`Grader` -- grade every notebook of a folder: each runs in a
  bubblewrap sandbox of its own (:mod:`~attention_course.grading.sandbox`: own uid, PID and
  network namespaces, a file system without the instructor's files, the other submissions
  or the output folder; limits on time, memory, file size and processes), its exercises are
  probed there with the checks' inputs, and the outcomes are judged here, outside, with
  partial credit per check; the rules and efficiency tiers also read the submitted source
  (:mod:`~attention_course.grading.rules`), and the efficiency tier's memory is the peak
  resident memory of a forked process, counted by the kernel (:mod:`._child`). Writes ``gradebook.csv``, ``summary.txt`` and a
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
from .sandbox import IsolationUnavailable, Limits, isolation

__all__ = [
    "grade_folder", "Grader", "SubmissionResult", "Limits", "main", "isolation",
    "IsolationUnavailable",
    "build_student_bundle", "scan_for_leaks", "BundleReport", "BundleLeakError",
    "find_instructor_dirs", "load_hidden_checks", "load_solutions", "selftest",
    "solve_notebook", "solution_sources", "strip_outputs",
]
