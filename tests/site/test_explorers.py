"""The explorers (interactive figures) in Chromium: each starts with no console error and no
request outside 127.0.0.1, a control changes what is drawn, and the drawn numbers are the
committed JSON's (book/explorers/*.json, themselves checked against the library by
tests/test_explorers.py). Also: keyboard and touch reach the controls, the figure fits a
390 px phone, and dark mode changes its colours.

Run after ``make book``; skipped with the reason when chromium or the site is missing
(never in CI, see test_site.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_site
from test_site import Visit, browser, server  # noqa: F401 - the fixtures, shared

pytestmark = test_site.pytestmark
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "book" / "explorers"

# explorer id -> (page, data file)
EXPLORERS = {
    "explorer-mask-builder": ("notebooks/07_masking", "07_mask_builder"),
}


def _data(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


class Explorer:
    """One explorer on its page, ready, with the page's console errors collected."""

    def __init__(self, browser, server, ident: str, **context):  # noqa: F811
        page_file, data = EXPLORERS[ident]
        self.visit = Visit(browser, f"{server}/{page_file}.html", **context)
        self.page = self.visit.page
        self.data = _data(data)
        self.sel = f"#{ident}"
        self.page.wait_for_function(
            f"() => document.querySelector('{self.sel}')?.dataset.ready", timeout=20_000)
        assert self.page.get_attribute(self.sel, "data-ready") == "true", \
            self.page.inner_text(self.sel)
        self.root = self.page.locator(self.sel)

    def cells(self, kind: str) -> list[list[float]]:
        """The values drawn in the heatmap of ``kind``, as a matrix."""
        got = self.page.evaluate(
            "([sel, kind]) => [...document.querySelectorAll("
            "`${sel} g.explorer-heatmap[data-kind='${kind}'] rect.explorer-cell`)]"
            ".map(r => [+r.dataset.row, +r.dataset.col, +r.dataset.value])", [self.sel, kind])
        n = max(r for r, _, _ in got) + 1
        m = max(c for _, c, _ in got) + 1
        out = [[None] * m for _ in range(n)]
        for r, c, v in got:
            out[r][c] = v
        return out

    def control(self, name: str):
        return self.root.locator(f"[data-control='{name}']")

    def close(self):
        errors, external = self.visit.console_errors, self.visit.external
        self.visit.close()
        assert not errors, f"console errors: {errors[:5]}"
        assert not external, f"requests left 127.0.0.1: {external[:5]}"


@pytest.fixture
def open_explorer(browser, server):  # noqa: F811
    opened = []

    def _open(ident: str, **context) -> Explorer:
        e = Explorer(browser, server, ident, **context)
        opened.append(e)
        return e
    yield _open
    for e in opened:
        e.close()


# ----------------------------------------------------------------------- 07: mask builder
def _mask_setting(e: Explorer) -> dict:
    key = e.page.get_attribute(e.sel, "data-setting")
    return key, e.data["settings"][key]


def test_mask_builder_draws_the_library_masks(open_explorer):
    e = open_explorer("explorer-mask-builder")
    key, s = _mask_setting(e)
    assert key == "L6rc0w-g0"
    want_mask = [[1.0 if c == "1" else 0.0 for c in row] for row in s["mask"]]
    assert e.cells("mask") == want_mask
    assert e.cells("weights") == s["weights"]
    # left padding and causal: rows with no key are flagged, their weights all zero
    e.control("length").fill("3")
    e.control("side").select_option("left")
    e.control("causal").check()
    key, s = _mask_setting(e)
    assert key == "L3lc1w-g0" and s["empty_rows"] == [0, 1, 2, 3, 4]
    assert e.cells("weights") == s["weights"]
    assert all(v == 0 for i in s["empty_rows"] for v in e.cells("weights")[i])
    flagged = e.root.locator("[data-empty-rows]").get_attribute("data-empty-rows")
    assert flagged == "0,1,2,3,4"
    assert e.root.locator("rect.explorer-empty-row").count() == 2 * 5  # both panels
    # a window, then a global first token: column 0 opens for every query
    e.control("side").select_option("right")
    e.control("causal").uncheck()
    e.control("length").fill("8")
    e.control("window").select_option("1")
    before = e.cells("mask")
    e.control("global").check()
    after = e.cells("mask")
    assert [r[0] for r in before] != [r[0] for r in after]
    assert all(r[0] == 1.0 for r in after) and all(after[0])
    key, s = _mask_setting(e)
    assert key == "L8rc0w1g1"
    assert e.cells("weights") == s["weights"]


def test_mask_builder_by_keyboard_and_touch(open_explorer):
    e = open_explorer("explorer-mask-builder", has_touch=True)
    slider = e.control("length")
    slider.focus()
    e.page.keyboard.press("ArrowLeft")  # 6 -> 5 real tokens
    assert _mask_setting(e)[0] == "L5rc0w-g0"
    e.control("causal").tap()
    assert _mask_setting(e)[0] == "L5rc1w-g0"
