"""The student bundle: the exercise notebooks, and a proof that nothing else came with them.

:func:`build_student_bundle` copies ``exercises/*.ipynb`` (outputs stripped) and a README
into a folder, then :func:`scan_for_leaks` checks the bundle **and** the ``attention_lib`` and
``attention_course`` packages (which students pip-install) for

* the instructor-only marker at the top of every solutions / hidden-checks file;
* any statement of a solution: every statement of every solution function (and every
  answer assignment) is normalised with ``ast.unparse`` and looked for among the statements
  of the bundle's code cells; in the package, where the library legitimately computes the
  same things, a leak is a whole solution function body found in one file;
* the names of the hidden checks.

The build fails (``BundleLeakError``) on any finding.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

from .instructor import find_instructor_dirs, load_hidden_checks
from .notebook import strip_outputs

__all__ = ["build_student_bundle", "scan_for_leaks", "BundleReport", "BundleLeakError",
           "INSTRUCTOR_MARKER"]

#: The first line of every instructor-only file contains this (spelled in two parts here so
#: that this module does not contain it).
INSTRUCTOR_MARKER = "INSTRUCTOR" + " ONLY"
_TRIVIAL = {"raise NotImplementedError", "pass", "return None"}
_MAGIC = re.compile(r"^(\s*)([%!].*)$", re.M)
_README = """# Exercises: {title}

One notebook per chapter of the course "Attention, from seq2seq to random features".
Open a notebook (locally or in Colab), run it from the top, and fill in the cells marked
`# YOUR CODE HERE`. After each exercise, a `check("name", function)` cell runs the public
checks and tells you what is wrong: the shape first, then the values (largest error, where,
and the tolerance), then a hint when your output matches a known mistake.

Submit the notebook itself (keep its file name). The grader executes it in a sandbox and
runs the public checks and a few hidden ones: one point per check.
"""


class BundleLeakError(RuntimeError):
    """The student bundle (or the package) contains instructor-only material."""


@dataclass
class BundleReport:
    out_dir: Path
    files: List[str] = field(default_factory=list)
    scanned_files: int = 0
    solution_statements: int = 0
    hidden_names: int = 0
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        head = (f"student bundle {self.out_dir}: {len(self.files)} files; scanned "
                f"{self.scanned_files} files of the bundle and the installed packages for "
                f"{self.solution_statements} solution statements, {self.hidden_names} hidden "
                f"check names and the instructor-only marker")
        if self.ok:
            return head + ": nothing found"
        return head + ":\n" + "\n".join(f"  LEAK {p}" for p in self.problems)


# --------------------------------------------------------------------------- statements
def _norm(node: ast.AST) -> str:
    return " ".join(ast.unparse(node).split())


def _stmts(tree: ast.AST) -> Set[str]:
    """Normalised text of every statement in ``tree``, at any depth."""
    return {_norm(n) for n in ast.walk(tree) if isinstance(n, ast.stmt)}


def _body(fn: ast.FunctionDef) -> List[ast.stmt]:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                             ast.Constant):
        body = body[1:]  # the docstring is shared with the student stub
    return body


def solution_fingerprints(solutions_dir: Optional[Path]) -> Dict[str, List[str]]:
    """``{"file:function": [normalised statements]}`` of every solution definition."""
    out: Dict[str, List[str]] = {}
    if solutions_dir is None:
        return out
    for path in sorted(Path(solutions_dir).glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stmts = [s for s in (_norm(b) for b in _body(node)) if s not in _TRIVIAL]
            elif isinstance(node, ast.Assign):
                stmts = [_norm(node)]
            else:
                continue
            if stmts:
                out[f"{path.name}:{getattr(node, 'name', None) or _norm(node)[:30]}"] = stmts
    return out


def _notebook_code(path: Path) -> List[str]:
    try:
        nb = json.loads(path.read_text())
    except ValueError:
        return [path.read_text(errors="replace")]
    return ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else
            str(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def _code_stmts(code: str) -> Set[str]:
    try:
        return _stmts(ast.parse(_MAGIC.sub(r"\1pass", code)))
    except SyntaxError:
        return set()


def _text_files(root: Path) -> Iterable[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".png"):
            yield p


def scan_for_leaks(bundle_dir: Path, *, solutions_dir: Optional[Path],
                   hidden_dir: Optional[Path], package_dir: Optional[Path] = None,
                   report: Optional[BundleReport] = None) -> BundleReport:
    """Look for instructor-only material in ``bundle_dir`` and in ``package_dir``."""
    report = report or BundleReport(Path(bundle_dir))
    fingerprints = solution_fingerprints(solutions_dir)
    report.solution_statements = sum(len(v) for v in fingerprints.values())
    hidden_names = sorted({c.name for cs in load_hidden_checks(hidden_dir).values() for c in cs})
    report.hidden_names = len(hidden_names)
    if package_dir is None:  # what ``pip install`` gives students: the library and the checks
        package_dirs = [Path(__file__).resolve().parents[2] / name
                        for name in ("attention_lib", "attention_course")]
    else:
        package_dirs = [Path(package_dir)]

    def scan_text(path: Path, text: str):
        if INSTRUCTOR_MARKER in text:
            report.problems.append(f"{path}: contains the instructor-only marker")
        for name in hidden_names:
            if name in text:
                report.problems.append(f"{path}: names the hidden check {name!r}")

    for path in _text_files(Path(bundle_dir)):  # the bundle: any statement is a leak
        report.scanned_files += 1
        text = path.read_text(errors="replace")
        scan_text(path, text)
        stmts: Set[str] = set()
        for code in (_notebook_code(path) if path.suffix == ".ipynb" else
                     ([text] if path.suffix == ".py" else [])):
            stmts |= _code_stmts(code)
        for where, fp in fingerprints.items():
            found = [s for s in fp if s in stmts]
            if found:
                report.problems.append(f"{path}: contains solution code of {where}: "
                                       f"{found[0][:60]!r}")
    for path in (p for d in package_dirs for p in _text_files(d)):  # a whole body is a leak
        report.scanned_files += 1
        text = path.read_text(errors="replace")
        scan_text(path, text)
        if path.suffix != ".py":
            continue
        stmts = _code_stmts(text)
        for where, fp in fingerprints.items():
            if len(fp) >= 2 and all(s in stmts for s in fp):
                report.problems.append(f"{path}: contains the whole solution {where}")
    return report


def build_student_bundle(out_dir, *, exercises_dir=None, solutions_dir=None,
                         hidden_dir=None) -> BundleReport:
    """Copy the exercise notebooks (without outputs) and a README into ``out_dir``; prove
    that neither the bundle nor the installed packages contain solutions or hidden
    checks. Raises :class:`BundleLeakError` when something leaks."""
    out = Path(out_dir)
    src = Path(exercises_dir) if exercises_dir else Path(__file__).resolve().parents[2] / \
        "exercises"
    notebooks = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no exercise notebooks NN_*.ipynb in {src}")
    if out.exists():
        extra = [p.name for p in out.iterdir()
                 if not (p.name == "README.md" or re.match(r"\d\d_.*\.ipynb$", p.name))]
        if extra:
            raise FileExistsError(f"refusing to replace {out}: it holds more than a student "
                                  f"bundle ({', '.join(sorted(extra)[:3])})")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report = BundleReport(out)
    for nb_path in notebooks:
        nb = strip_outputs(json.loads(nb_path.read_text()))
        (out / nb_path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        report.files.append(nb_path.name)
    (out / "README.md").write_text(_README.format(title="attention course"))
    report.files.append("README.md")
    sol, hid = find_instructor_dirs(solutions_dir, hidden_dir)
    scan_for_leaks(out, solutions_dir=sol, hidden_dir=hid, report=report)
    if sol is None:
        report.problems.append("no solutions folder found: cannot prove that nothing leaks "
                               "(pass --solutions or set ATTENTION_SOLUTIONS_DIR)")
    if not report.ok:
        raise BundleLeakError(report.format())
    return report
