"""Reading notebooks defensively, finding exercise cells, and writing solved notebooks.

A submitted notebook is untrusted JSON: :func:`read_submission` never raises on garbage, it
returns the code cells it could read and a problem description. Exercise cells of the
student notebooks carry ``metadata.exercise = <name>``; :func:`solve_notebook` replaces
them with the instructor's solutions (to build the "perfect submission" and to check that
the solutions run inside the notebook).
"""
from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = ["read_submission", "detect_assignment", "exercise_cells", "solution_sources",
           "solve_notebook", "strip_outputs", "MAX_NOTEBOOK_BYTES"]

#: Larger files are not notebooks a student wrote; they are refused unread.
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
_ASSIGNMENT_RE = re.compile(r"(\d\d_[a-z0-9_]+?)(?:\.ipynb)?$")


def _source(cell) -> Optional[str]:
    src = cell.get("source", "") if isinstance(cell, dict) else None
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    return src if isinstance(src, str) else None


def read_submission(path: Path) -> Tuple[Optional[dict], List[Tuple[int, str]], str]:
    """``(notebook, [(cell number, code), ...], problem)``; ``problem`` is '' when readable.

    Cell numbers count all cells from 1, as a reader scrolling the notebook would.
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        return None, [], f"cannot read the file ({type(e).__name__})"
    if size > MAX_NOTEBOOK_BYTES:
        return None, [], f"not graded: the file has {size / 2**20:.0f} MiB (limit " \
                         f"{MAX_NOTEBOOK_BYTES // 2**20} MiB)"
    try:
        nb = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except (ValueError, RecursionError) as e:
        return None, [], f"not a notebook: the file is not valid JSON ({type(e).__name__})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, [], "not a notebook: no list of cells"
    cells = []
    for i, cell in enumerate(nb["cells"], start=1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = _source(cell)
            if src is not None:
                cells.append((i, src))
    return nb, cells, ""


def detect_assignment(path: Path, nb: Optional[dict], known: List[str],
                      forced: Optional[str] = None) -> Optional[str]:
    """Which assignment a submission belongs to: ``forced``, else a known name in the file
    name (``alice_03_scoring_functions.ipynb``), else the notebook's metadata
    (``metadata.attention_course.assignment``, set in the student notebooks)."""
    if forced:
        return forced if forced in known else None
    stem = path.name.lower()
    for name in sorted(known, key=len, reverse=True):
        if name in stem:
            return name
    try:
        meta = nb["metadata"]["attention_course"]["assignment"] if nb else None
    except (KeyError, TypeError):
        meta = None
    return meta if isinstance(meta, str) and meta in known else None


def exercise_cells(nb: dict) -> Dict[str, int]:
    """``{exercise name: cell index}`` of the cells tagged ``metadata.exercise``."""
    out = {}
    for i, cell in enumerate(nb.get("cells", [])):
        name = (cell.get("metadata") or {}).get("exercise")
        if isinstance(name, str):
            out[name] = i
    return out


def solution_sources(path: Path) -> Dict[str, str]:
    """``{name: source}`` of the top-level functions and assignments of a solutions file."""
    text = Path(path).read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    out = {}

    def whole_lines(node) -> str:  # keeps trailing comments, which ast segments drop
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return "\n".join(lines[first - 1: node.end_lineno])

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = whole_lines(node)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = whole_lines(node)
    return out


def strip_outputs(nb: dict) -> dict:
    """A copy without outputs and execution counts (how student notebooks are committed)."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            (cell.get("metadata") or {}).pop("execution", None)
    return nb


def solve_notebook(student_nb: dict, solutions: Dict[str, str]) -> dict:
    """The student notebook with every exercise cell replaced by its solution.

    Raises ``KeyError`` when an exercise cell has no solution.
    """
    nb = strip_outputs(student_nb)
    for name, i in exercise_cells(nb).items():
        if name not in solutions:
            raise KeyError(f"no solution for exercise cell {name!r}")
        nb["cells"][i]["source"] = solutions[name].rstrip("\n")
    return nb
