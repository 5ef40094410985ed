"""Static checks of the committed notebooks and the book's table of contents.

Fast and independent of execution: stale outputs (unexecuted cells, out-of-order execution
counts), error outputs, the Colab setup cell, titles, and _toc.yml <-> files on disk.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def _cells(path: Path, kind: str):
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == kind]


def _source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def setup_cell_source() -> str:
    """The Colab setup cell every notebook starts with, derived from _config.yml."""
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    return (
        "# Setup: on Colab (or any fresh environment) install the course library,\n"
        "# then import it. The repository URL and branch are named once, in the\n"
        "# book's _config.yml.\n"
        "try:\n"
        "    import attention_lib\n"
        "except ImportError:\n"
        f'    REPO = "{url}"\n'
        f'    %pip install -q "attention-lib @ git+{{REPO}}@{branch}"\n'
        "    import attention_lib"
    )


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2, "expected at least chapters 02 and 03 in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom(path):
    """Every code cell was executed, once, in order: outputs are not stale."""
    code = [c for c in _cells(path, "code") if _source(c).strip()]
    counts = [c.get("execution_count") for c in code]
    missing = [i for i, n in enumerate(counts) if n is None]
    assert not missing, f"{path.name}: code cells {missing} were never executed (make notebooks)"
    assert counts == list(range(counts[0], counts[0] + len(counts))), (
        f"{path.name}: execution counts {counts} are not consecutive: re-run top to bottom "
        f"with `make notebooks`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_outputs(path):
    for i, cell in enumerate(_cells(path, "code")):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: code cell {i} has an error"
            text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else ""
            assert "Traceback" not in text, f"{path.name}: code cell {i} prints a traceback"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_colab_setup(path):
    first = _source(_cells(path, "code")[0]).strip()
    assert first == setup_cell_source(), (
        f"{path.name}: the first code cell must be the setup cell built from _config.yml:\n"
        f"{setup_cell_source()}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_title_first(path):
    nb = json.loads(path.read_text())
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be the title"
    titles = [ln for c in _cells(path, "markdown") for ln in _source(c).splitlines()
              if re.match(r"^# ", ln)]
    assert _source(first).lstrip().startswith("# ") and len(titles) == 1, (
        f"{path.name}: exactly one '# ' title, in the first cell; found {titles}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_png(path):
    for i, cell in enumerate(_cells(path, "code")):
        for out in cell.get("outputs", []):
            assert "image/svg+xml" not in out.get("data", {}), f"{path.name}: cell {i} has SVG"


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for v in node.values():
            files += _toc_files(v)
    elif isinstance(node, list):
        for v in node:
            files += _toc_files(v)
    return files


def test_toc_and_files_agree():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = _toc_files(toc)
    for f in listed:
        assert any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb")), (
            f"_toc.yml lists {f}, which does not exist")
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


def test_config_is_complete():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    import datetime
    year = int(str(CONFIG["copyright"]).split("-")[-1])
    assert 2026 <= year <= datetime.date.today().year, "copyright year is not current"


READER_PAGES = NOTEBOOKS + sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", READER_PAGES, ids=lambda p: p.name)
def test_nbval_markers_are_tags_not_comments(path):
    """nbval reads the tags ``nbval-ignore-output`` etc.; a reader never sees them."""
    shown = [_source(c).splitlines()[0] for c in _cells(path, "code")
             if re.search(r"#\s*NBVAL_", _source(c))]
    assert shown == [], shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_progress_bar_warning_or_machine_path(path):
    """Committed outputs are for readers: bars are off when notebooks are executed for the
    book (TQDM_DISABLE, set by `make notebooks` and `make test-notebooks`)."""
    bad = []
    for i, c in enumerate(_cells(path, "code")):
        for o in c.get("outputs", []):
            text = "".join(o.get("text", "")) + "".join(
                "".join(v) for k, v in o.get("data", {}).items() if k == "text/plain")
            if re.search(r"\d+%\|", text) or "it/s]" in text:
                bad.append((i, "progress bar"))
            if re.search(r"Warning:|warnings\.warn", text):
                bad.append((i, "warning"))
            if re.search(r"(\.venv/|site-packages|/tmp/|/home/|/root/|/work/)", text):
                bad.append((i, "machine path"))
    assert bad == [], bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_links_its_exercises(path):
    exercise = ROOT / "exercises" / path.name
    assert exercise.is_file()
    prose = "\n".join(_source(c) for c in _cells(path, "markdown"))
    assert f"](../exercises/{path.name})" in prose


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_mention_is_a_link(path):
    """"chapter N" in the prose links to chapter N (headings, code and maths aside)."""
    own = int(path.name[:2])
    plain = []
    for c in _cells(path, "markdown"):
        for line in _source(c).splitlines():
            if line.lstrip().startswith("#"):
                continue
            for m in re.finditer(r"\b[Cc]hapter (\d{1,2})\b", line):
                before = line[:m.start()]
                if int(m.group(1)) == own or before.count("`") % 2 or before.count("$") % 2:
                    continue
                if not (before.endswith("[") and line[m.end():].startswith("](")):
                    plain.append(m.group(0))
    assert plain == [], plain


def _colab_url(path: Path) -> str:
    repo = CONFIG["repository"]
    slug = repo["url"].removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{slug}/blob/{repo['branch']}/"
            f"notebooks/{path.name}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_opens_with_its_frame(path):
    """Right after the title: the goals (3-5), what the chapter assumes and a Colab badge."""
    nb = json.loads(path.read_text())
    frame = nb["cells"][1]
    src = _source(frame)
    assert frame["cell_type"] == "markdown" and src.startswith(
        ":::{admonition} In this chapter\n:class: chapter-frame\n"), (
        f"{path.name}: cell 1 must be the frame admonition (see notebooks/02_*.ipynb)")
    goals = re.findall(r"^- ", src, re.M)
    assert 3 <= len(goals) <= 5, f"{path.name}: {len(goals)} goals in the frame, want 3-5"
    assumes = re.search(r"^\*\*Assumes:\*\* (.+)$", src, re.M)
    assert assumes, f"{path.name}: the frame needs an '**Assumes:** ...' line"
    if int(path.name[:2]) > 1:
        assert re.search(r"\]\(\d\d_\w+\.ipynb\)", assumes.group(1)), (
            f"{path.name}: '**Assumes:**' should link the chapters it builds on")
    badge = f"[![Open in Colab](../book/colab-badge.svg)]({_colab_url(path)})"
    assert badge in src, f"{path.name}: the frame needs the badge {badge}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_closes_with_summary_reading_and_exercises(path):
    cells = json.loads(path.read_text())["cells"]
    heads = [ln for c in cells if c["cell_type"] == "markdown"
             for ln in _source(c).splitlines() if ln.startswith("## ")]
    assert heads[-2:] == ["## Summary", "## Further reading"], (
        f"{path.name}: the last two sections must be Summary and Further reading, "
        f"got {heads[-2:]}")
    last = _source(cells[-1])
    assert cells[-1]["cell_type"] == "markdown" and last.startswith(
        ":::{admonition} Exercises for this chapter"), f"{path.name}: end with the exercises"
    reading = "\n".join(_source(c) for c in cells).split("## Further reading", 1)[1]
    assert reading.count("{cite}") + reading.count("](http") >= 2, (
        f"{path.name}: Further reading should point to at least two sources")


def _long_code_lines(path: Path) -> list[str]:
    return [f"{path.parent.name}/{path.name}, code cell {i}: {len(ln)} chars: {ln[:40]}..."
            for i, c in enumerate(_cells(path, "code"))
            for ln in _source(c).splitlines() if len(ln) > 79]


@pytest.mark.parametrize(
    "path", NOTEBOOKS + sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")),
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_code_fits_the_page(path):
    """A code block on the page shows 79 characters; longer lines scroll or clip in print."""
    assert _long_code_lines(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_plots_have_alt_text_and_a_caption(path):
    """myst-nb turns the cell metadata into the figure's caption and the image's alt text."""
    bad = []
    for i, cell in enumerate(_cells(path, "code")):
        if not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            continue
        meta = cell["metadata"].get("mystnb", {})
        alt = meta.get("image", {}).get("alt", "")
        caption = meta.get("figure", {}).get("caption", "")
        if len(alt.split()) < 8 or len(caption.split()) < 5:
            bad.append(i)
    assert bad == [], f"{path.name}: plot cells without alt text or caption: {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_long_outputs_scroll(path):
    """An output of more than 25 lines is shown in a scrolling box (the scroll-output tag)."""
    long = []
    for i, cell in enumerate(_cells(path, "code")):
        lines = sum(len("".join(o.get("text", "")).splitlines()) for o in cell.get("outputs", [])
                    if o.get("output_type") == "stream")
        if lines > 25 and "scroll-output" not in cell["metadata"].get("tags", []):
            long.append((i, lines))
    assert long == [], f"{path.name}: long outputs without the scroll-output tag: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_titles_carry_their_number(path):
    title = _source(json.loads(path.read_text())["cells"][0]).splitlines()[0]
    assert title.startswith(f"# {int(path.name[:2])}. "), title
