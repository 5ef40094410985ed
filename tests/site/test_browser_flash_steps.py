"""Chapter 16's FlashAttention stepper in Chromium: the tile buttons move the outlined tile and
the chosen row's running max, factor, sum and outputs, which are the JSON's numbers (checked
against a float64 replay and SDPA by tests/test_explorer_flash_steps.py); after a row's last
tile its output is SDPA's; buttons work by keyboard (Enter, Space, arrow keys) and by touch.
"""
from __future__ import annotations

import pytest
import test_site
from test_explorers import Explorer, browser, open_explorer, server  # noqa: F401

pytestmark = test_site.pytestmark
IDENT = "explorer-flash-steps"
FIELDS = ("tile_max", "m", "alpha", "l")


def _state(e: Explorer) -> tuple[int, int]:
    return (int(e.page.get_attribute(e.sel, "data-step")),
            int(e.page.get_attribute(e.sel, "data-row")))


def _tiles(e: Explorer) -> list[str]:
    return e.page.evaluate(
        f"() => [...document.querySelectorAll('{e.sel} rect.flash-tile[data-step]')]"
        ".map(r => r.dataset.state)")


def _table(e: Explorer) -> dict:
    """(field, column) -> value of the numbers drawn in the chosen row's table."""
    got = e.page.evaluate(
        f"() => [...document.querySelectorAll('{e.sel} text[data-field][data-col]')]"
        ".map(t => [t.dataset.field, +t.dataset.col, +t.dataset.value])")
    return {(f, c): v for f, c, v in got}


def _check_row(e: Explorer) -> int:
    """The drawn table and vectors are the JSON's state of the chosen row after the current
    tile; returns how many of the row's tiles are done."""
    t, i = _state(e)
    hist = e.data["rows"][i]
    done = [h for h in hist if h["step"] <= t]
    want = {(f, c): h[f] for c, h in enumerate(done) for f in FIELDS}
    assert _table(e) == want
    if done:
        assert e.cells("acc") == [done[-1]["acc"]]
        assert e.cells("out") == [done[-1]["out"]]
    else:
        assert e.root.locator("g[data-kind='acc'], g[data-kind='out']").count() == 0
    assert e.cells("sdpa") == [e.data["sdpa"][i]]
    return len(done)


def test_next_moves_the_tile_and_the_running_state(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    steps, row0 = e.data["steps"], e.data["rows"][0]
    assert _state(e) == (0, 0)
    assert _tiles(e) == ["current"] + ["todo"] * (len(steps) - 1)
    assert e.cells("scores") == e.data["scores"]
    assert _check_row(e) == 1
    assert e.control("prev").is_disabled()
    before = _table(e)
    for t in range(1, len(steps)):
        e.control("next").click()
        assert _state(e) == (t, 0)
        assert _tiles(e) == ["done"] * t + ["current"] + ["todo"] * (len(steps) - t - 1)
        box = e.root.locator(f"rect.flash-tile[data-step='{t}']")
        s = steps[t]
        assert (int(box.get_attribute("data-qb")), int(box.get_attribute("data-kb"))) == \
            (s["qb"], s["kb"])
        done = _check_row(e)
        if t < len(row0):  # row 0's own tiles: its state changes at every one
            assert _table(e) != before
            h = row0[t]
            shown = float(e.root.locator(".flash-story .flash-m").get_attribute("data-value"))
            assert shown == h["m"]
            jumped = e.root.locator(".flash-story [data-jump]").count() == 1
            assert jumped == (h["alpha"] < 1)
            if jumped:
                assert float(e.root.locator(".flash-story .flash-alpha")
                             .get_attribute("data-value")) == h["alpha"]
        else:  # query block 1: row 0 is finished and its output is SDPA's
            assert done == len(row0) and _table(e) == before
        before = _table(e)
    # after the last tile of row 0: O equals the reference, and the drawn difference is the file's
    out, ref = e.cells("out")[0], e.data["sdpa"][0]
    assert out == pytest.approx(ref, rel=1e-3, abs=1e-9)
    diff = e.root.locator("svg [data-field='diff']")
    assert float(diff.get_attribute("data-value")) == e.data["row_diff"][0]
    total = e.root.locator(".flash-story .flash-maxdiff")
    assert float(total.get_attribute("data-value")) == e.data["max_diff"]["sdpa"]
    assert total.inner_text() == f"{e.data['max_diff']['sdpa']:.1e}"
    assert e.control("next").is_disabled()
    e.control("prev").click()
    assert _state(e) == (len(steps) - 2, 0) and not e.control("next").is_disabled()


def test_a_row_holds_state_only_while_its_block_runs(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    e.control("row").select_option("4")
    assert _state(e) == (0, 4)
    assert _check_row(e) == 0 and _table(e) == {}
    assert "has not started" in e.root.inner_text()
    e.control("step").fill("6")  # tile 6: the second of row 4's tiles
    assert _state(e) == (5, 4)
    assert _check_row(e) == 2
    for i in range(e.data["n"]):  # every row, at the last tile, ends at SDPA
        e.control("row").select_option(str(i))
        e.control("step").fill(str(len(e.data["steps"])))
        _check_row(e)
        assert e.cells("out")[0] == pytest.approx(e.data["sdpa"][i], rel=1e-3, abs=1e-9)


def test_keyboard_and_touch(open_explorer):  # noqa: F811
    e = open_explorer(IDENT, has_touch=True)
    nxt = e.control("next")
    nxt.focus()
    e.page.keyboard.press("Enter")
    assert _state(e)[0] == 1
    e.page.keyboard.press("Space")
    assert _state(e)[0] == 2
    _check_row(e)
    e.root.focus()  # the figure itself: arrow keys step through the tiles
    e.page.keyboard.press("ArrowRight")
    assert _state(e)[0] == 3
    e.page.keyboard.press("ArrowLeft")
    e.page.keyboard.press("ArrowLeft")
    assert _state(e)[0] == 1
    e.control("step").focus()  # the slider keeps its own arrow keys: one step, not two
    e.page.keyboard.press("ArrowRight")
    assert _state(e)[0] == 2
    e.control("prev").tap()
    assert _state(e)[0] == 1
    e.control("next").tap()
    e.control("next").tap()
    assert _state(e)[0] == 3
    assert e.root.locator("[data-step='3']").get_attribute("data-state") == "current"
    _check_row(e)
