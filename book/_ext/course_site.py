"""Sphinx extension for the course site: keep the built pages self-contained and clean.

It also adds the course's stylesheet and script (``static/course.css``, ``course.js``): code
that wraps on phones and in print, wide equations that show they scroll, the chapter frame;
and the explorers (``static/explorers/``: interactive figures in plain JavaScript and SVG, with
their data from ``book/explorers/*.json``).

Jupyter Book 1 registers sphinx-thebe (live code cells via a CDN-hosted kernel bridge), and
with sphinx-book-theme its inline config script ends up twice on every page, which the browser
reports as a console error. The course uses Colab launch buttons, not Thebe, so its scripts
and styles are dropped from every page.
"""
import json
from pathlib import Path


def _not_thebe(asset) -> bool:
    name = str(getattr(asset, "filename", "") or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" not in name.lower() and "THEBE_JS_URL" not in body


def _drop_thebe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [a for a in context[key] if _not_thebe(a)]


def _add_static(app, config):
    config.html_static_path.append(str(Path(__file__).parent / "static"))


EXPLORER_DATA = Path(__file__).resolve().parents[1] / "explorers"  # book/explorers/*.json


def _explorer_scripts() -> list[str]:
    """The explorers' scripts, the core first (the others register with it)."""
    folder = Path(__file__).parent / "static" / "explorers"
    return ["explorers/core.js"] + [f"explorers/{p.name}" for p in sorted(folder.glob("*.js"))
                                    if p.name != "core.js"]


def _explorer_sheets() -> list[str]:
    """The explorers' stylesheets, the shared one first."""
    folder = Path(__file__).parent / "static" / "explorers"
    return ["explorers/explorers.css"] + [f"explorers/{p.name}"
                                          for p in sorted(folder.glob("*.css"))
                                          if p.name != "explorers.css"]


def _write_explorer_data(app, exception):
    """Serve each explorer's committed JSON as ``_static/explorers/data/<name>.js``: a script
    (not a fetch), so that the explorers also work on a site opened from disk."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / "_static" / "explorers" / "data"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(EXPLORER_DATA.glob("*.json")):
        text = path.read_text().strip()
        (out / f"{path.stem}.js").write_text(
            f"CourseExplorers.data({json.dumps(path.stem)}, {text});\n")


def _author_year_labels():
    """Label the references page as the text cites: "Vaswani et al., 2017", not "[VSP+17]"."""
    from pybtex.plugin import find_plugin, register_plugin
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYear(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            seen: dict[str, int] = {}
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                last = [" ".join(p.last_names) for p in people]
                who = (last[0] if len(last) == 1 else f"{last[0]} and {last[1]}"
                       if len(last) == 2 else f"{last[0]} et al." if last else entry.key)
                label = f"{who}, {entry.fields.get('year', 'n.d.')}"
                seen[label] = seen.get(label, 0) + 1
                yield label if seen[label] == 1 else f"{label}{'abcdefgh'[seen[label] - 1]}"

    base = find_plugin("pybtex.style.formatting", "plain")

    class CourseStyle(base):
        default_label_style = "course_author_year"
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "course_author_year", AuthorYear)
    register_plugin("pybtex.style.formatting", "course_author_year", CourseStyle)


def setup(app):
    _author_year_labels()
    app.connect("html-page-context", _drop_thebe, priority=900)
    app.connect("config-inited", _add_static)
    app.add_css_file("course.css")
    app.add_js_file("course.js", loading_method="defer")
    for sheet in _explorer_sheets():
        app.add_css_file(sheet)
    for script in _explorer_scripts():
        app.add_js_file(script, loading_method="defer")
    app.connect("build-finished", _write_explorer_data)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
