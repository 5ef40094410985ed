"""The whole-book PDF (``make pdf``): Chromium's print of the one-page build.

``book/make_pdf.py`` writes ``attention-course.pdf`` into the site, with a report of what the
page held when it was printed. Checked here: it exists and is linked from the landing page,
it has a book's number of pages, every equation was typeset and every image loaded before
printing, no code block was clipped, and nothing was fetched from outside the machine.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("SITE_DIR", ROOT / "_build" / "html"))
PDF = SITE / "attention-course.pdf"
REPORT = SITE / "attention-course.pdf.json"

if not PDF.exists():
    why = f"no PDF at {PDF}: run `make pdf` after `make book`"
    if os.environ.get("REQUIRE_BROWSER_TESTS"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)

sys.path.insert(0, str(ROOT / "book"))
from make_pdf import count_pages  # noqa: E402

sys.path.remove(str(ROOT / "book"))


@pytest.fixture(scope="module")
def report():
    return json.loads(REPORT.read_text())


def test_a_book_of_pages(report):
    pages = count_pages(PDF)
    assert pages == report["pages"]
    # 18 chapters, 18 exercise pages and the front and back matter: 488 pages when written
    assert 300 <= pages <= 1200, f"{pages} pages"


def test_maths_and_figures_are_in_it(report):
    assert report["equations"] > 1000 and report["typeset"] == report["equations"], report
    assert report["broken_images"] == 0, report
    diagrams = len(list((ROOT / "book" / "figures").glob("*.svg")))
    assert report["images"] >= 80 + diagrams, report


def test_no_code_is_clipped_and_nothing_was_downloaded(report):
    assert report["code_blocks"] > 500 and report["clipped_code"] == 0, report
    assert report["external_requests"] == [], report


def test_the_landing_page_links_it():
    intro = (SITE / "book" / "intro.html").read_text()
    assert 'href="../attention-course.pdf"' in intro


def test_explorers_print_as_still_figures(report):
    """Each explorer draws its first state in the one-page site before it is printed, and
    its controls are left out of the print."""
    placed = sum(nb.read_text().count('<figure class=\\"explorer\\"')
                 for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert placed >= 5
    assert report["explorers"] == report["explorers_drawn"] == placed, report
    assert report["visible_controls"] == 0, report
