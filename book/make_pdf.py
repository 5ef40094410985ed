"""The whole book as one PDF, offline: Chromium prints the one-page build of the site.

    python book/make_pdf.py [--site _build/singlehtml] [--out _build/html/attention-course.pdf]

``make pdf`` first builds the one-page site (``jupyter-book build . --builder singlehtml``),
then runs this script. It serves that build on 127.0.0.1, opens it in Debian's chromium
(driven by Playwright, the browser of the site tests; nothing is downloaded), waits until
MathJax has typeset every equation and every image has loaded, and prints it with the
print stylesheet of ``book/_ext/static/course.css``, which wraps code instead of clipping it.
It writes ``attention-course.pdf.json`` next to the PDF: pages, equations, images and clipped code blocks,
which ``tests/site/test_pdf.py`` checks.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def count_pages(pdf: Path) -> int:
    """Pages of a PDF, from its page tree (no PDF library needed)."""
    data = pdf.read_bytes()
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "singlehtml")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "html" /
                        "attention-course.pdf")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    index = args.site / "index.html"
    if not index.exists():
        raise SystemExit(f"no one-page build at {index}: run `make pdf`")
    # index.html redirects to the root document (book/intro.html), whose links are written
    # relative to the build's top folder: serve a copy of it from there.
    target = re.search(r'url=([^"]+)"', index.read_text())
    page_path = args.site / (target.group(1) if target else "index.html")
    (args.site / "book.html").write_text(page_path.read_text())
    handler = functools.partial(_Quiet, directory=str(args.site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/book.html"
    external: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1000, "height": 1400})

            def route(r):
                if r.request.url.startswith(("data:", "blob:", "http://127.0.0.1")):
                    r.continue_()
                else:
                    external.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(url, wait_until="networkidle", timeout=300_000)
            page.evaluate("() => window.MathJax && window.MathJax.startup"
                          " ? window.MathJax.startup.promise : null")
            # the explorers print their first state (explorers.css hides their controls)
            page.wait_for_function("() => [...document.querySelectorAll('figure.explorer')]"
                                   ".every(f => f.dataset.ready)", timeout=60_000)
            page.evaluate("() => Promise.all([...document.images].map(i => i.complete ? 0 :"
                          " new Promise(r => { i.onload = i.onerror = r; })))")
            page.emulate_media(media="print")
            stats = page.evaluate("""() => ({
                equations: document.querySelectorAll('.math').length,
                typeset: document.querySelectorAll('mjx-container').length,
                images: document.images.length,
                broken_images: [...document.images].filter(i => !(i.naturalWidth > 0)).length,
                code_blocks: document.querySelectorAll('pre').length,
                clipped_code: [...document.querySelectorAll('pre')]
                    .filter(e => e.scrollWidth > e.clientWidth + 1).length,
                explorers: document.querySelectorAll('figure.explorer').length,
                explorers_drawn: [...document.querySelectorAll('figure.explorer')]
                    .filter(f => f.dataset.ready === 'true' && f.querySelector('svg')).length,
                visible_controls: [...document.querySelectorAll('.explorer-controls')]
                    .filter(e => e.offsetParent !== null).length,
            })""")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.pdf(path=str(args.out), format="A4", print_background=True,
                     margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"},
                     display_header_footer=True, header_template="<span></span>",
                     footer_template='<div style="font-size:8px;width:100%;text-align:center">'
                                     '<span class="pageNumber"></span></div>')
            browser.close()
    finally:
        httpd.shutdown()
    stats.update(pages=count_pages(args.out), bytes=args.out.stat().st_size,
                 external_requests=external[:5])
    (args.out.parent / "attention-course.pdf.json").write_text(json.dumps(stats, indent=1))
    print(f"{args.out}: {stats['pages']} pages, {stats['typeset']} equations typeset, "
          f"{stats['images']} images, {stats['clipped_code']} clipped code blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
