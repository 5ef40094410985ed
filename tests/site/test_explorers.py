"""The explorers (interactive figures) in Chromium: each starts with no console error and no
request outside 127.0.0.1, a control changes what is drawn, and the drawn numbers are the
committed JSON's (book/explorers/*.json, themselves checked against the library by
tests/test_explorer_data.py and tests/test_explorer_*.py). Also: keyboard and touch reach the controls, the figure fits a
390 px phone, and dark mode changes its colours.

Run after ``make book``; skipped with the reason when chromium or the site is missing
(never in CI, see test_site.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import test_site
from test_site import Visit, browser, server  # noqa: F401 - the fixtures, shared

pytestmark = test_site.pytestmark
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "book" / "explorers"
FIGURE = re.compile(r'<figure class="explorer" data-explorer="[\w-]+" data-data="(\w+)"'
                    r' id="(explorer-[\w-]+)"')


def _placed_explorers() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for m in FIGURE.finditer("".join(cell["source"])):
                    out.append((f"notebooks/{path.stem}", m.group(2), m.group(1)))
    return out


def _data(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


PLACED = _placed_explorers()  # every explorer in a chapter: (page, element id, data name)


class Explorer:
    """One explorer on its page, ready, with the page's console errors collected."""

    def __init__(self, browser, server, ident: str, **context):  # noqa: F811
        page_file, data = next((p, d) for p, i, d in PLACED if i == ident)
        # the explorer, not the page: no waiting for the network to settle or for MathJax
        self.visit = Visit(browser, f"{server}/{page_file}.html", wait_until="load",
                           without_maths=True, **context)
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


# ----------------------------------------------------------------------- every explorer
_INK = ("() => [...document.querySelectorAll('{sel} svg text')].slice(0, 1)"
        ".map(t => getComputedStyle(t).fill)[0]")


def _luminance(css: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.parametrize("ident", [i for _, i, _ in PLACED])
def test_explorer_fits_a_phone_and_follows_dark_mode(open_explorer, ident):
    e = open_explorer(ident, viewport={"width": 390, "height": 844}, has_touch=True)
    over = e.page.evaluate(f"() => {{ const f = document.querySelector('#{ident}');"
                           " return [f.scrollWidth, f.clientWidth]; }")
    assert over[0] <= over[1] + 1, f"{ident} is {over[0]} px wide in a {over[1]} px column"
    small = e.page.evaluate(
        f"() => [...document.querySelectorAll('#{ident} svg text')].map(t => "
        "t.getBoundingClientRect().height).filter(h => h > 0 && h < 8).length")
    assert small == 0, f"{ident}: {small} labels shorter than 8 px on a phone"
    light = _luminance(e.page.evaluate(_INK.format(sel=f"#{ident}")))
    e.page.evaluate("() => document.documentElement.dataset.theme = 'dark'")
    dark = _luminance(e.page.evaluate(_INK.format(sel=f"#{ident}")))
    assert light < 0.4 < 0.6 < dark, f"{ident}: text luminance {light:.2f} light, {dark:.2f} dark"


def test_explorers_work_from_a_site_opened_from_disk(browser):  # noqa: F811
    """Opened as files (file://, no server), every explorer still starts: its data is a
    script next to the page, not a fetch, and nothing is requested from a network."""
    pages = sorted({p for p, _, _ in PLACED})
    ctx = browser.new_context()
    page, errors, http = ctx.new_page(), [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: http.append(r.url) if not r.url.startswith(
        ("file:", "data:", "blob:")) else None)
    try:
        for p in pages:
            page.goto((test_site.SITE / f"{p}.html").as_uri(), wait_until="load")
            page.wait_for_function("() => [...document.querySelectorAll('figure.explorer')]"
                                   ".every(f => f.dataset.ready)", timeout=20_000)
            states = page.evaluate("() => [...document.querySelectorAll('figure.explorer')]"
                                   ".map(f => f.dataset.ready)")
            assert states and all(s == "true" for s in states), (p, states)
    finally:
        ctx.close()
    assert not errors, errors[:5]
    assert not http, http[:5]


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
