"""Every exercise page shows, near its top, what ``check(...)`` prints for a wrong answer.

The example is real: the first known mistake of the notebook's first function exercise
(``tests/mistakes/chNN_*.py``), checked now, must print exactly the text in the notebook.
``python tests/test_exercise_examples.py`` rewrites the examples after the checks change.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
MARK = "example-check-output"  # the id of the markdown cell that shows the example
HEAD = ("## What `check` tells you\n\n"
        "Each `check(...)` cell runs the checks of one exercise and prints one line per "
        "check,\nfrom the shape to the edge cases. When a value is wrong it shows the case, "
        "the first\nwrong entry and, when your output matches a known mistake, a hint. "
        "This is what it\nprints for `{name}` written with a typical mistake ({mistake}):\n\n"
        "```text\n{text}\n```")


def _buggy(path: Path) -> dict:
    stem = f"ch{path.name[:2]}_{path.stem[3:]}"
    spec = importlib.util.spec_from_file_location(f"mistakes_{stem}",
                                                  ROOT / "tests" / "mistakes" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BUGGY


def example(path: Path) -> str:
    """The markdown of the example for this exercise notebook, computed now."""
    from attention_course import check
    from attention_course.grading.notebook import exercise_cells
    nb = json.loads(path.read_text())
    buggy = _buggy(path)
    order = list(exercise_cells(nb))
    name, mistake = next((n, m) for n in order for (e, m) in buggy if e == n)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(name, buggy[(name, mistake)])
    return HEAD.format(name=name, mistake=mistake, text=out.getvalue().rstrip())


def _cell(nb: dict):
    return next((c for c in nb["cells"] if c.get("id") == MARK), None)


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_exercise_page_shows_real_check_output(path):
    nb = json.loads(path.read_text())
    cell = _cell(nb)
    assert cell is not None, f"{path.name}: no example of check output (run {__file__})"
    assert nb["cells"].index(cell) <= 3, f"{path.name}: the example belongs near the top"
    assert "".join(cell["source"]) == example(path), (
        f"{path.name}: the example is stale: run python tests/test_exercise_examples.py")


def write() -> None:
    for path in EXERCISES:
        nb = json.loads(path.read_text())
        text = example(path)
        cell = _cell(nb)
        if cell is None:
            cell = {"cell_type": "markdown", "id": MARK, "metadata": {}, "source": []}
            nb["cells"].insert(1, cell)
        cell["source"] = text.splitlines(keepends=True)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"{path.name}: {text.splitlines()[6][:60]}...")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    write()
