"""Finding and loading the instructor's material: reference solutions and hidden checks.

Both live outside the ``attention_lib`` package (a student who pip-installs the library
gets neither), by default in ``instructor/solutions/chNN_<name>.py`` and
``instructor/hidden_checks/chNN_<name>.py`` of the course repository. The grader finds them
through its ``--solutions`` / ``--hidden-checks`` arguments, else the environment variables
``ATTENTION_SOLUTIONS_DIR`` / ``ATTENTION_HIDDEN_CHECKS_DIR``, else ``./instructor/...``.

A hidden-checks module defines ``HIDDEN_CHECKS = {exercise name: [Check, ...]}``, built with
the same blocks as the public checks (:mod:`attention_course.checks.kinds`). A solutions module
defines, at top level, every exercise name of its notebook.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..checks.core import Check, all_exercises, assignments
from ..checks.report import CheckReport, run_checks

__all__ = ["find_instructor_dirs", "load_hidden_checks", "load_solutions", "selftest",
           "SOLUTIONS_ENV", "HIDDEN_ENV"]

SOLUTIONS_ENV = "ATTENTION_SOLUTIONS_DIR"
HIDDEN_ENV = "ATTENTION_HIDDEN_CHECKS_DIR"


def find_instructor_dirs(solutions: Optional[os.PathLike] = None,
                         hidden: Optional[os.PathLike] = None
                         ) -> Tuple[Optional[Path], Optional[Path]]:
    """(solutions dir, hidden checks dir); each None when not found."""
    sol = Path(solutions) if solutions else (
        Path(os.environ[SOLUTIONS_ENV]) if os.environ.get(SOLUTIONS_ENV) else None)
    if sol is None and Path("instructor/solutions").is_dir():
        sol = Path("instructor/solutions")
    hid = Path(hidden) if hidden else (
        Path(os.environ[HIDDEN_ENV]) if os.environ.get(HIDDEN_ENV) else None)
    if hid is None and sol is not None and (sol.parent / "hidden_checks").is_dir():
        hid = sol.parent / "hidden_checks"
    if hid is None and Path("instructor/hidden_checks").is_dir():
        hid = Path("instructor/hidden_checks")
    sol = sol.resolve() if sol is not None and sol.is_dir() else None
    hid = hid.resolve() if hid is not None and hid.is_dir() else None
    return sol, hid


def _load_module(path: Path, prefix: str):
    name = f"_attention_{prefix}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_hidden_checks(hidden_dir: Optional[Path]) -> Dict[str, List[Check]]:
    """``{exercise name: [hidden Check, ...]}`` from every ``*.py`` in ``hidden_dir``.

    Each check is marked hidden and given the id ``hidden/<assignment>/<exercise>/<i>``.
    Hidden check names must differ from the public check names of their exercise.
    """
    out: Dict[str, List[Check]] = {}
    if hidden_dir is None:
        return out
    exercises = all_exercises()
    for path in sorted(Path(hidden_dir).glob("*.py")):
        mod = _load_module(path, "hidden")
        table = getattr(mod, "HIDDEN_CHECKS", None)
        if not isinstance(table, dict):
            raise ValueError(f"{path} must define HIDDEN_CHECKS = {{exercise name: [Check]}}")
        for name, checks in table.items():
            if name not in exercises:
                raise ValueError(f"{path}: no exercise called {name!r}")
            ex = exercises[name]
            public = {c.name for c in ex.checks}
            for c in checks:
                if c.name in public:
                    raise ValueError(f"{path}: hidden check {c.name!r} of {name} has the name "
                                     f"of a public check")
                i = len(out.get(name, []))
                out.setdefault(name, []).append(
                    c.as_hidden(f"hidden/{ex.assignment}/{name}/{i}"))
    return out


def load_solutions(solutions_dir: Optional[Path]) -> Dict[str, object]:
    """``{assignment name: module}`` for every ``chNN_<name>.py`` in ``solutions_dir``
    (the solutions of ``exercises/NN_<name>.ipynb``, named like its checks module)."""
    out = {}
    if solutions_dir is None:
        return out
    known = assignments()
    for path in sorted(Path(solutions_dir).glob("ch[0-9][0-9]_*.py")):
        name = path.stem[2:]  # ch07_masking.py -> assignment 07_masking
        if name in known:
            out[name] = _load_module(path, "solutions")
    return out


def selftest(solutions: Dict[str, object], hidden: Dict[str, List[Check]]
             ) -> List[CheckReport]:
    """Run every public and hidden check on the solutions, in-process; return the reports
    that did not pass (an empty list: the solutions pass everything)."""
    bad = []
    for name, a in assignments().items():
        mod = solutions.get(name)
        if mod is None:
            continue
        for ex in a.exercises:
            missing = not hasattr(mod, ex.name)
            rep = run_checks(ex, getattr(mod, ex.name, None),
                             list(ex.checks) + hidden.get(ex.name, []), missing=missing)
            if not rep.passed:
                bad.append(rep)
    return bad
