"""The built website, in a real browser (Debian chromium driven by Playwright).

Serves ``_build/html`` on 127.0.0.1 and visits every page of ``_toc.yml``. Each page must
load with HTTP 200 and no console error, typeset its maths with the *local* MathJax, load
every image, show no traceback in cell outputs, make no request that leaves 127.0.0.1, and
(for notebooks) carry an "Open in Colab" link to that notebook in the repository.
A screenshot per page (its first screen; the whole page with ``FULL_PAGE_SCREENSHOTS=1``) is
written to the test's temp dir and checked not to be blank. The same page is then narrowed
to a 390 px phone (no sideways scrolling, wide equations marked as scrolling; a second
screenshot) and put in print mode (no clipped code block).

Run after ``make book``: ``pytest tests/site``. Skipped, with the reason, when chromium or
the built site is missing.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("SITE_DIR", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FULL_PAGE = bool(os.environ.get("FULL_PAGE_SCREENSHOTS"))  # else each page's first screen
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic"]

def _missing() -> str:
    """Why the browser tests cannot run here, or '' when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if not (SITE / "index.html").exists():
        return f"no built site at {SITE}: run `make book` first"
    return ""


_REASON = _missing()
if _REASON and os.environ.get("REQUIRE_BROWSER_TESTS"):  # CI sets this: never skip there
    pytest.fail(f"browser tests required but cannot run: {_REASON}", pytrace=False)
pytestmark = [pytest.mark.site, pytest.mark.skipif(bool(_REASON), reason=_REASON)]
if not _REASON:
    import playwright.sync_api as playwright_sync


def _toc_files(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        out += [node[k] for k in ("root", "file") if k in node]
        for v in node.values():
            out += _toc_files(v)
    elif isinstance(node, list):
        for v in node:
            out += _toc_files(v)
    return out


PAGES = _toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {d}")
    return d


class Visit:
    """One page load with everything the assertions need."""

    def __init__(self, browser, url: str, *, wait_until: str = "networkidle",
                 without_maths: bool = False, **context):
        """``without_maths``: MathJax's script is served empty, for tests of something else
        on a long page (typesetting it takes seconds); ``wait_until`` as in Playwright."""
        self.external, self.console_errors, self.failed = [], [], []
        ctx = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
        page = ctx.new_page()

        def route(r):
            host = urlparse(r.request.url).hostname
            if without_maths and host == "127.0.0.1" and "/_static/mathjax/" in r.request.url:
                r.fulfill(status=200, content_type="text/javascript", body="")
            elif r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error"
                else None)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.response = page.goto(url, wait_until=wait_until)
        self.page, self.ctx = page, ctx

    def close(self):
        self.ctx.close()


def _page_url(server: str, file: str) -> str:
    return f"{server}/{file}.html"


def _wait_for_mathjax(page) -> bool:
    """True when MathJax is on the page and has finished typesetting."""
    has = page.evaluate("() => !!(window.MathJax && window.MathJax.startup)")
    if has:
        page.evaluate("() => window.MathJax.startup.promise")
    return has


def _assert_not_blank(path: Path) -> None:
    from PIL import Image, ImageStat
    img = Image.open(path).convert("L")
    stat = ImageStat.Stat(img)
    assert stat.stddev[0] > 5, f"screenshot {path} looks blank (stddev {stat.stddev[0]:.2f})"
    lo, hi = img.getextrema()
    assert hi - lo > 50, f"screenshot {path} has almost no contrast"


def _settle(page) -> None:
    """Wait until the page has laid out and painted twice (after a resize, course.js has
    re-marked the wide equations by then)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() =>"
                  " requestAnimationFrame(r)))")


@pytest.mark.parametrize("file", PAGES)
def test_page(server, browser, shots, file):
    # checked from "load" on; the network's going idle is awaited before the requests are
    # checked, by which time it has long been idle (no 500 ms wait per page)
    v = Visit(browser, _page_url(server, file), wait_until="load")
    try:
        page = v.page
        assert v.response is not None and v.response.status == 200, (
            f"{file}: HTTP {v.response.status if v.response else 'no response'}")
        # maths: every math node typeset by the local MathJax, no raw delimiters left
        n_math = page.locator(".math").count()
        if n_math:
            assert _wait_for_mathjax(page), f"{file}: has maths but MathJax did not load"
            src = page.evaluate("() => document.querySelector('script[src*=\"mathjax\"]').src")
            assert urlparse(src).hostname == "127.0.0.1", f"{file}: MathJax from {src}"
            untypeset = page.evaluate(
                "() => [...document.querySelectorAll('.math')]"
                ".filter(e => !e.querySelector('mjx-container') && e.tagName !== 'MJX-CONTAINER')"
                ".length")
            assert untypeset == 0, f"{file}: {untypeset} of {n_math} math nodes not typeset"
            text = page.inner_text("article")
            for raw in ("\\(", "\\[", "$$"):
                assert raw not in text, f"{file}: raw {raw!r} left in the rendered text"
        # images: all loaded
        page.evaluate("() => Promise.all([...document.images].map(i => i.complete ? 0 :"
                      " new Promise(r => { i.onload = i.onerror = r; })))")
        broken = page.evaluate("() => [...document.images].filter(i => !(i.naturalWidth > 0))"
                               ".map(i => i.src)")
        assert not broken, f"{file}: images that did not load: {broken}"
        # outputs: no tracebacks or errors shown
        outputs = page.evaluate("() => [...document.querySelectorAll('.cell_output')]"
                                ".map(e => e.innerText)")
        for out in outputs:
            assert "Traceback" not in out and "Error" not in out, f"{file}: output shows {out[:200]!r}"
        # Colab launch link of a notebook page points at that notebook in the repository
        if file.startswith(("notebooks/", "exercises/")):
            repo = CONFIG["repository"]
            path = urlparse(repo["url"]).path.strip("/")
            want = (f"{CONFIG['launch_buttons']['colab_url']}/github/{path}/blob/"
                    f"{repo['branch']}/{file}.ipynb")
            hrefs = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.href)")
            colab = [h for h in hrefs if "colab.research.google.com" in h]
            assert want in colab, f"{file}: Colab links {colab} do not include {want}"
        # the first screen as a JPEG, or the whole page with FULL_PAGE_SCREENSHOTS=1 (a long
        # chapter's whole page takes seconds)
        shot = shots / (file.replace("/", "__") + ".jpg")
        page.screenshot(path=str(shot), full_page=FULL_PAGE, type="jpeg", quality=80)
        _assert_not_blank(shot)
        # a phone: the page is no wider than the screen, wide equations say they scroll
        page.set_viewport_size({"width": 390, "height": 844})
        _settle(page)  # reflow, the sidebar closing; course.js re-marks equations
        sizes = page.evaluate("() => [document.documentElement.scrollWidth,"
                              " document.documentElement.clientWidth]")
        assert sizes[0] <= sizes[1], (
            f"{file}: {sizes[0]} px wide on a 390 px phone: {_phone_overflow(page)}")
        unmarked = page.evaluate("() => [...document.querySelectorAll('.bd-article div.math')]"
                                 ".filter(e => e.scrollWidth > e.clientWidth + 1"
                                 " && !e.classList.contains('course-wide')).length")
        assert unmarked == 0, f"{file}: {unmarked} wide equations with no scroll cue"
        page.screenshot(path=str(shots / (file.replace("/", "__") + "__390.png")))
        # print (and so the PDF): no code or output block is wider than its box
        page.set_viewport_size({"width": 794, "height": 1123})
        page.emulate_media(media="print")
        clipped = page.evaluate("() => [...document.querySelectorAll('pre')]"
                                ".filter(e => e.scrollWidth > e.clientWidth + 1).length")
        assert clipped == 0, f"{file}: {clipped} code blocks clipped in print"
        # network and console, once every request has ended
        page.wait_for_load_state("networkidle")
        assert not v.external, f"{file}: requests left 127.0.0.1: {v.external[:5]}"
        assert not v.failed, f"{file}: requests failed: {v.failed[:5]}"
        assert not v.console_errors, f"{file}: console errors: {v.console_errors[:5]}"
    finally:
        v.close()


def _phone_overflow(page) -> list[str]:
    """Elements of the article that stick out of a phone's viewport, outside the blocks that
    scroll on their own (code, outputs, display maths, tables)."""
    return page.evaluate("""() => [...document.querySelectorAll('.bd-article *')]
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                     && !e.closest('pre, .highlight, div.math, mjx-container, table,'
                                   + ' .cell_output, .pst-scrollable-table-container'))
        .slice(0, 3).map(e => e.tagName + ': ' + (e.textContent || '').slice(0, 60))""")


def test_search_ranks_the_chapter_first_for_its_topic(server, browser):
    v = Visit(browser, f"{server}/search.html?q=mask")
    try:
        v.page.wait_for_selector("ul.search li", timeout=20000)
        v.page.wait_for_timeout(500)
        titles = v.page.locator("ul.search li > a").all_inner_texts()
        assert "7. Masking" in [t.strip() for t in titles[:3]], f"top results: {titles[:5]}"
    finally:
        v.close()


def test_references_are_labelled_as_cited():
    html = (SITE / "book" / "references.html").read_text()
    assert "Vaswani et al., 2017" in html and "[VSP+17]" not in html
    assert "$O(" not in html, "raw TeX in the references"


def test_every_page_has_a_favicon_and_an_issues_link():
    url = CONFIG["repository"]["url"]
    missing = []
    for file in PAGES:
        html = (SITE / f"{file}.html").read_text()
        if 'rel="icon"' not in html or f"{url}/issues" not in html:
            missing.append(file)
    assert not missing, f"pages without a favicon or an issues link: {missing}"


def test_every_toc_page_was_built():
    missing = [f for f in PAGES if not (SITE / f"{f}.html").exists()]
    assert not missing, f"pages in _toc.yml missing from the site: {missing}"


def test_search_works_offline(server, browser):
    v = Visit(browser, f"{server}/search.html?q=softmax")
    try:
        v.page.wait_for_selector("#search-results li, ul.search li", timeout=20000)
        n = v.page.locator("ul.search li").count()
        assert n >= 1, "searching 'softmax' found nothing"
        assert not v.external, f"search made external requests: {v.external[:5]}"
    finally:
        v.close()


def test_site_is_self_contained():
    """No page of the built site references a script or stylesheet on another host."""
    import re
    offenders = {}
    for html in SITE.rglob("*.html"):
        refs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html.read_text())
        if refs:
            offenders[str(html.relative_to(SITE))] = refs[:3]
    assert not offenders, f"external scripts/styles: {offenders}"


def test_mathjax_is_local():
    mj = SITE / "_static" / "mathjax" / "tex-chtml.js"
    assert mj.exists(), "local MathJax missing from the built site"
    assert 'VERSION="3.' in mj.read_text(errors="ignore")[:200000]


@pytest.fixture(scope="session", autouse=True)
def _keep_last_screenshots(tmp_path_factory):
    """Also copy screenshots to _build/screenshots for people to look at."""
    yield
    base = tmp_path_factory.getbasetemp()
    dest = ROOT / "_build" / "screenshots"
    for shot in [*base.rglob("screenshots*/*.png"), *base.rglob("screenshots*/*.jpg")]:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)
