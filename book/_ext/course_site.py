"""Sphinx extension for the course site: keep the built pages self-contained and clean.

Jupyter Book 1 registers sphinx-thebe (live code cells via a CDN-hosted kernel bridge), and
with sphinx-book-theme its inline config script ends up twice on every page, which the browser
reports as a console error. The course uses Colab launch buttons, not Thebe, so its scripts
and styles are dropped from every page.
"""


def _not_thebe(asset) -> bool:
    name = str(getattr(asset, "filename", "") or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" not in name.lower() and "THEBE_JS_URL" not in body


def _drop_thebe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [a for a in context[key] if _not_thebe(a)]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
