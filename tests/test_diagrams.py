"""The book's diagrams: drawn by diagrams/ (``make figures``), committed, and shown in chapters.

- every committed SVG in book/figures/ equals what its script draws today (not stale);
- every diagram is shown in a chapter by a MyST ``figure`` directive with alt text and a
  caption, and every figure directive in a chapter points at an existing diagram;
- the diagrams keep the visual language: text no smaller than ``style.SMALL``.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "book" / "figures"
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIGURE = re.compile(r"^:::\{figure\} (\S+)\n((?::\w+:[^\n]*\n)*)\n?(.*?)^:::", re.M | re.S)


def _figure_directives():
    """(chapter, target path, options dict, caption) for every figure directive."""
    found = []
    for path in CHAPTERS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            src = "".join(cell["source"])
            for m in FIGURE.finditer(src + "\n"):
                opts = dict(re.findall(r"^:(\w+): *(.*)$", m.group(2), re.M))
                found.append((path.name, (path.parent / m.group(1)).resolve(), opts,
                              m.group(3).strip()))
    return found


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    subprocess.run([sys.executable, "-m", "diagrams", "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return out


def test_every_diagram_is_committed_and_up_to_date(fresh):
    drawn = {p.name for p in fresh.glob("*.svg")}
    committed = {p.name for p in FIGURES.glob("*.svg")}
    assert drawn == committed, (
        f"run `make figures`: drawn but not committed {sorted(drawn - committed)}, "
        f"committed but drawn by no script {sorted(committed - drawn)}")
    stale = [n for n in sorted(drawn)
             if (fresh / n).read_bytes() != (FIGURES / n).read_bytes()]
    assert not stale, f"stale diagrams (run `make figures`): {stale}"


def test_every_diagram_is_shown_with_alt_text_and_caption():
    shown = _figure_directives()
    for chapter, target, opts, caption in shown:
        assert target.exists(), f"{chapter}: figure {target} does not exist"
        alt = opts.get("alt", "")
        assert len(alt.split()) >= 8, f"{chapter}: {target.name} needs a meaningful :alt:"
        assert len(caption.split()) >= 5, f"{chapter}: {target.name} needs a caption"
    used = {t.name for _, t, _, _ in shown if t.parent == FIGURES}
    unused = sorted({p.name for p in FIGURES.glob("*.svg")} - used)
    assert not unused, f"diagrams no chapter shows: {unused}"


def test_text_is_readable():
    """matplotlib writes every glyph run with its font size in a comment-free style; we check
    the source instead: no call in diagrams/ passes a size below style.SMALL."""
    sys.path.insert(0, str(ROOT))
    try:
        from diagrams.style import SMALL
    finally:
        sys.path.remove(str(ROOT))
    for path in (ROOT / "diagrams").glob("*.py"):
        for m in re.finditer(r"(?<!\w)(?:size|fontsize)\s*=\s*(\d+(?:\.\d+)?)\b", path.read_text()):
            assert float(m.group(1)) >= SMALL, f"{path.name}: text of {m.group(1)} pt"
