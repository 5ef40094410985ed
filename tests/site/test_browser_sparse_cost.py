"""Chapter 11's sparse-cost explorer in Chromium: the mask drawn is the JSON's, choosing a
pattern changes it and shows that pattern's measured time and memory, changing N changes the
cost readout, every drawn number equals book/explorers/11_sparse_cost.json, what the caption
quotes is what the figure shows, and keyboard and touch reach the controls."""
from __future__ import annotations

import test_site
from test_explorers import Explorer, browser, open_explorer, server  # noqa: F401

pytestmark = test_site.pytestmark
IDENT = "explorer-sparse-cost"


def _state(e: Explorer) -> tuple[dict, int]:
    """The pattern (its JSON entry) and the index of N that the figure says it shows."""
    pid = e.page.get_attribute(e.sel, "data-pattern")
    n = int(e.page.get_attribute(e.sel, "data-n"))
    pattern = next(p for p in e.data["patterns"] if p["id"] == pid)
    return pattern, e.data["sizes"].index(n)


def _values(e: Explorer) -> dict:
    """Every named number of the readouts: name -> data-value."""
    return e.page.evaluate(
        f"() => Object.fromEntries([...document.querySelectorAll('{e.sel} [data-name]')]"
        ".filter(x => x.dataset.value !== undefined)"
        ".map(x => [x.dataset.name, +x.dataset.value]))")


def _dots(e: Explorer) -> dict:
    """The chart points: (chart index, series) -> values by N, in the order of the sizes."""
    got = e.page.evaluate(
        f"() => [...document.querySelectorAll('{e.sel} .sparse-cost-charts svg')].map(s => "
        "[...s.querySelectorAll('circle.sparse-cost-dot')].map(c => "
        "[c.dataset.series, +c.dataset.n, +c.dataset.value, c.classList.contains('now')]))")
    out = {}
    for chart, dots in enumerate(got):
        for series, n, v, now in dots:
            out.setdefault((chart, series), {})[n] = (v, now)
    return out


def _check_drawn(e: Explorer):
    """What is drawn equals the JSON for the pattern and N the figure shows: the pattern's
    own measurement and SDPA's from the same run and mode, naive attention from its run."""
    p, k = _state(e)
    want = [[1.0 if c == "1" else 0.0 for c in row] for row in p["mask"]]
    assert e.cells("mask") == want
    v = _values(e)
    assert v["draw_kept"] == p["draw_kept"]
    assert v["kept"] == p["kept"][k] and v["keys_per_query"] == p["keys_per_query"][k]
    mode, variant = p["measured"]["mode"], p["measured"]["variant"]
    assert (mode, variant) == ("causal" if p["causal"] else "non_causal", p["id"])
    cost, naive = e.data["cost"][mode], e.data["naive"][mode]
    c = cost[variant]
    assert v["time"] == c["time_s"][k] and v["memory"] == c["peak_bytes"][k]
    assert v["speedup"] == c["speedup_vs_sdpa"][k]
    assert v["memory_ratio"] == c["memory_vs_sdpa"][k]
    assert v["sdpa_time"] == cost["sdpa"]["time_s"][k]
    assert v["sdpa_memory"] == cost["sdpa"]["peak_bytes"][k]
    assert v["naive_time"] == naive["time_s"][k]
    assert v["naive_memory"] == naive["peak_bytes"][k]
    dots = _dots(e)
    assert sorted(dots) == sorted((ch, s) for ch in (0, 1) for s in ("naive", "sdpa", variant))
    for (chart, name), by_n in dots.items():
        field = ("time_s", "peak_bytes")[chart]
        series = naive if name == "naive" else cost[name]
        assert [by_n[n][0] for n in e.data["sizes"]] == series[field]
        assert [n for n in e.data["sizes"] if by_n[n][1]] == [e.data["sizes"][k]]
    assert "not measured" not in e.root.inner_text().lower()
    assert "other run" in e.root.locator(".sparse-cost-charts").inner_text()
    return p, k, v


def _readout(e: Explorer, name: str) -> str:
    return e.root.locator(f".sparse-cost-cost [data-name='{name}']").inner_text()


def _caption(e: Explorer) -> str:
    return e.page.locator(f"{e.sel} figcaption").inner_text()


def test_sparse_cost_draws_the_json(open_explorer):  # noqa: F811
    """The first view (sliding window, N = 4096) is the caption's first example: every
    number the caption quotes for it is the one the figure shows."""
    e = open_explorer(IDENT)
    p, k, v = _check_drawn(e)
    assert p["id"] == "window" and e.data["sizes"][k] == 4096
    caption = _caption(e)
    for name in ("time", "sdpa_time", "speedup", "memory", "sdpa_memory", "memory_ratio",
                 "naive_memory"):
        assert _readout(e, name) in caption, name
    kept = e.root.locator(".sparse-cost-kept [data-name='kept']").inner_text()
    assert kept == "12.1%" and kept in caption


def test_choosing_a_pattern_shows_its_measured_numbers(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    before, values = e.cells("mask"), _values(e)  # the sliding window, as it opens
    for pid in ("causal", "dilated", "longformer", "bigbird"):
        e.control("pattern").select_option(pid)
        p, k, v = _check_drawn(e)
        assert p["id"] == pid and e.cells("mask") != before
        assert v["kept"] != values["kept"] and v["draw_kept"] != values["draw_kept"]
        assert v["time"] != values["time"] and v["memory"] != values["memory"]
        if pid == "causal":  # the causal sweep: SDPA's causal time
            assert v["sdpa_time"] != values["sdpa_time"]
        else:  # the same SDPA of the same sweep
            assert v["sdpa_time"] == values["sdpa_time"]
        assert p["label"] in e.root.locator(".sparse-cost-cost").inner_text()
        if pid == "bigbird":  # the caption's second example, at N = 4096
            caption = _caption(e)
            for name in ("time", "speedup", "memory"):
                assert _readout(e, name) in caption, name


def test_changing_n_changes_the_cost(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    before = _values(e)
    e.control("n").fill("0")  # N = 512: the window is slower than SDPA there
    p, k, v = _check_drawn(e)
    assert e.data["sizes"][k] == 512
    assert v["time"] != before["time"] and v["kept"] != before["kept"]
    assert v["speedup"] < 1 and "slower" in _readout(e, "speedup")
    assert _readout(e, "speedup") in _caption(e)
    assert e.cells("mask") == [[1.0 if c == "1" else 0.0 for c in row] for row in p["mask"]]
    e.control("n").fill(str(len(e.data["sizes"]) - 1))  # N = 16384: faster, as quoted
    p, k, v = _check_drawn(e)
    assert v["speedup"] > 1 and _readout(e, "speedup") in _caption(e)


def test_sparse_cost_by_keyboard_and_touch(open_explorer):  # noqa: F811
    e = open_explorer(IDENT, has_touch=True)
    slider = e.control("n")
    slider.focus()
    e.page.keyboard.press("ArrowRight")  # 4096 -> 8192
    assert _state(e)[1] == e.data["sizes"].index(8192)
    e.page.keyboard.press("End")
    assert _state(e)[1] == len(e.data["sizes"]) - 1
    _check_drawn(e)
    select = e.control("pattern")
    select.focus()
    e.page.keyboard.press("ArrowDown")  # the next pattern: the causal window
    assert _state(e)[0]["id"] == "causal"
    _check_drawn(e)
    box = slider.bounding_box()
    slider.tap(position={"x": 3, "y": box["height"] / 2})  # the left end: N = 512
    assert _state(e)[1] == 0
    _check_drawn(e)
