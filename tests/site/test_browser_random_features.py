"""Chapter 15's random features explorer in Chromium: each slider (keyboard, fill, tap)
changes what is drawn, and the drawn numbers (data-value) are the JSON's at the grid point
the figure says it shows (its data-setting "radius_m" and data-pair)."""
from __future__ import annotations

import json

import test_site
from test_explorers import Explorer, browser, open_explorer, server  # noqa: F401

pytestmark = test_site.pytestmark
IDENT = "explorer-random-features"


def _where(e: Explorer) -> tuple[dict, int, int, int]:
    key = e.page.get_attribute(e.sel, "data-setting")
    ri, mi = (int(v) for v in key.split("_"))
    return e.data["settings"][key], ri, mi, int(e.page.get_attribute(e.sel, "data-pair"))


def _values(e: Explorer, css: str, attr: str = "data-value") -> list[float]:
    return e.page.evaluate(
        "([sel, css, attr]) => [...document.querySelectorAll(`${sel} ${css}`)]"
        ".map(n => +n.getAttribute(attr))", [e.sel, css, attr])


def _check_drawn(e: Explorer):
    """Every drawn number against the JSON at the current grid point."""
    s, ri, mi, pair = _where(e)
    exact = e.data["radius"][str(ri)]["exact"]
    for t in e.data["types"]:
        scatter = f"g.rf-scatter[data-type='{t}'] circle.rf-point"
        assert _values(e, scatter) == s["estimate"][t]
        assert _values(e, scatter, "data-exact") == exact
        assert _values(e, f"g.rf-attention[data-type='{t}'] circle.rf-dot") == s["attention"][t]
        assert _values(e, f"g.rf-attention[data-type='{t}'] text.rf-number") == \
            [s["attention_median"][t]]
        rows = [e.data["settings"][f"{ri}_{m}"] for m in range(len(e.data["ms"]))]
        assert _values(e, f"g.rf-measured[data-type='{t}'] .rf-point") == \
            [r["mse"][t][pair] for r in rows]
        got = e.root.locator(f"[data-field='estimate'][data-type='{t}']").get_attribute(
            "data-value")
        assert float(got) == s["estimate"][t][pair]
    for t in ("trig", "positive"):
        line = e.root.locator(f"polyline.rf-line[data-type='{t}']").get_attribute("data-values")
        rows = [e.data["settings"][f"{ri}_{m}"] for m in range(len(e.data["ms"]))]
        assert json.loads(line) == [r["lemma2"][t][pair] for r in rows]
        got = e.root.locator(f"[data-field='lemma2'][data-type='{t}']").get_attribute(
            "data-value")
        assert float(got) == s["lemma2"][t][pair]
    assert float(e.root.locator("[data-field='exact']").get_attribute("data-value")) == \
        exact[pair]
    assert float(e.root.locator("[data-field='negative']").get_attribute("data-value")) == \
        s["negative"]["trig"]
    highlighted = _values(e, "g.rf-scatter circle.rf-highlight", "data-pair")
    assert highlighted == [pair] * 3


def test_random_features_draws_the_json(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    assert _where(e)[1:] == (2, 2, 9)  # length 1.5, m = 16, the pair at 0.79 pi
    _check_drawn(e)
    # m: the dots of the attention panel move
    before = _values(e, "g.rf-attention circle.rf-dot")
    e.control("m").fill("4")
    assert _where(e)[1:] == (2, 4, 9)
    assert _values(e, "g.rf-attention circle.rf-dot") != before
    _check_drawn(e)
    # length 3: trigonometric estimates go negative (hollow), the normaliser <= 0 is flagged
    e.control("radius").fill("5")
    s, ri, mi, _ = _where(e)
    assert (ri, mi) == (5, 4)
    _check_drawn(e)
    assert e.root.locator("g.rf-scatter[data-type='trig'] circle.rf-negative").count() > 0
    assert e.root.locator("g.rf-scatter[data-type='positive'] circle.rf-negative").count() == 0
    assert e.root.locator(".rf-alert[data-field='negative']").count() == 1
    assert s["attention_median"]["trig"] > 10 * s["attention_median"]["positive"]
    # the pair: the highlighted point and the MSE panel follow it
    e.control("pair").fill("0")
    assert _where(e)[3] == 0
    _check_drawn(e)


def test_random_features_by_keyboard_and_touch(open_explorer):  # noqa: F811
    e = open_explorer(IDENT, has_touch=True)
    for name, index in (("m", 2), ("radius", 1), ("pair", 3)):
        before = e.page.evaluate(f"() => document.querySelector('#{IDENT} .explorer-body')"
                                 ".innerHTML")
        slider = e.control(name)
        slider.focus()
        e.page.keyboard.press("ArrowRight")
        after = e.page.evaluate(f"() => document.querySelector('#{IDENT} .explorer-body')"
                                ".innerHTML")
        assert after != before, name
        assert _where(e)[index] == {"m": 3, "radius": 3, "pair": 10}[name]
        _check_drawn(e)
    # a tap on a slider's track moves it (to where the finger lands)
    slider = e.control("radius")
    box = slider.bounding_box()
    e.page.touchscreen.tap(box["x"] + 3, box["y"] + box["height"] / 2)
    assert _where(e)[1] == 0
    _check_drawn(e)
    slider.tap()  # the middle of the track
    assert _where(e)[1] in (2, 3)
    _check_drawn(e)
