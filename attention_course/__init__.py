"""attention_course: the exercises' checks and the instructors' grader.

This package is the course's tooling, kept apart from the library it grades:
``attention_lib`` never imports it, the chapters never import it, and the exercise
notebooks import only :func:`check` from it.

* :mod:`~attention_course.checks` -- ``check(name, fn)``: the public checks of every exercise,
  run in the student's notebook (also in Colab), with hints for known mistakes;
* :mod:`~attention_course.checks.chapters` -- one module per exercise notebook,
  ``chNN_<name>.py`` beside ``exercises/NN_<name>.ipynb``;
* :mod:`~attention_course.grading` -- the ``attention-grade`` command: a folder of submitted
  notebooks graded with the public and hidden checks (imported on demand).

The instructor's reference solutions and hidden checks are not in this package either; they
live in ``instructor/`` (see its README, and the exercise index in ``attention_course/README.md``).
"""
from .checks import check

__all__ = ["check"]
