"""Explorer 4.1 (alignment) in Chromium: the heatmaps, outputs, BLEU and AER drawn for each
sentence and budget are the JSON's; a French word, pointed at, focused or tapped, lights up
its row and its gold English words; the select, the buttons and the words work by keyboard
and by touch. The JSON itself is checked against the library by
tests/test_explorer_alignment.py.
"""
from __future__ import annotations

import test_site
from test_explorers import Explorer, browser, open_explorer, server  # noqa: F401

from explorers.ch04_alignment import dense

pytestmark = test_site.pytestmark
IDENT = "explorer-alignment"


def _gold(s: dict) -> list[list[float]]:
    m = [[0.0] * len(s["src"].split()) for _ in s["tgt"].split()]
    for i, j in s["gold"]:
        m[j][i] = 1.0
    return m


def _shown(e: Explorer) -> tuple[int, str]:
    return int(e.page.get_attribute(e.sel, "data-sentence")), \
        e.page.get_attribute(e.sel, "data-budget")


def _values(e: Explorer, css: str) -> list[float]:
    return [float(v) for v in e.root.locator(css).evaluate_all(
        "els => els.map(x => x.dataset.value)")]


def _check_drawn(e: Explorer):
    """Everything drawn for the sentence and budget on show equals the JSON."""
    k, budget = _shown(e)
    s = e.data["sentences"][k]
    assert e.cells("gold") == _gold(s)
    for model in ("bahdanau", "luong"):
        assert e.cells(model) == dense(s, budget, model, e.data["scale"]), model
    runs = s["runs"][budget]
    assert _values(e, ".ex-al-aer") == [runs["bahdanau"]["aer"], runs["luong"]["aer"]]
    assert _values(e, ".ex-al-bleu") == [runs["bahdanau"]["bleu"], runs["luong"]["bleu"]]
    assert _values(e, ".ex-al-hitcount") == [runs["bahdanau"]["hits"], runs["luong"]["hits"]]
    src = e.root.locator(".ex-al-tok.src").all_inner_texts()
    tgt = e.root.locator(".ex-al-tok.tgt").all_inner_texts()
    assert (" ".join(src), " ".join(tgt)) == (s["src"], s["tgt"])
    outs = e.root.locator(".ex-al-out").all_inner_texts()
    for model, shown in zip(("bahdanau", "luong"), outs):
        assert shown.startswith(runs[model]["out"])
    return s


def _check_word(e: Explorer, j: int):
    """French word j is highlighted, with its gold English words and each model's argmax."""
    k, budget = _shown(e)
    s = e.data["sentences"][k]
    assert e.page.get_attribute(e.sel, "data-row") == str(j)
    active = e.root.locator(".ex-al-tok.tgt.is-active")
    assert active.count() == 1 and active.get_attribute("data-index") == str(j)
    gold = sorted(i for i, jj in s["gold"] if jj == j)
    lit = e.root.locator(".ex-al-tok.src.is-gold").evaluate_all(
        "els => els.map(x => +x.dataset.index)")
    assert lit == gold
    assert e.root.locator("rect.ex-al-row").count() == 3  # one row outline per panel
    assert e.root.locator(f"rect.ex-al-row[data-row='{j}']").count() == 3
    for model in ("bahdanau", "luong"):
        row = dense(s, budget, model, e.data["scale"])[j]
        top = row.index(max(row))
        read = e.root.locator(f".ex-al-word em[data-model='{model}']")
        assert read.get_attribute("data-col") == str(top)
        assert read.inner_text() == s["src"].split()[top]
        assert _values(e, f".ex-al-word .ex-al-{model}") == [row[top]]
        hit = [top, j] in s["gold"]
        assert e.root.locator(".ex-al-word [data-hit]").nth(
            0 if model == "bahdanau" else 1).get_attribute("data-hit") == ("1" if hit else "0")


def test_alignment_opens_on_chapter_4s_example(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    assert _shown(e) == (e.data["first"], "benchmark")
    s = _check_drawn(e)
    assert s["src"] == "the famous child always reads some books ."
    assert e.page.get_attribute(e.sel, "data-row") == "-1"


def test_alignment_sentence_and_budget_change_what_is_drawn(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    before = e.cells("bahdanau")
    last = len(e.data["sentences"]) - 1
    e.control("sentence").select_option(str(last))
    assert _shown(e) == (last, "benchmark")
    s = _check_drawn(e)
    assert e.cells("bahdanau") != before and len(e.cells("bahdanau")) == len(s["tgt"].split())
    assert e.control("next").is_disabled()
    e.control("budget").select_option("quick")
    assert _shown(e) == (last, "quick")
    _check_drawn(e)
    e.control("prev").click()
    assert _shown(e) == (last - 1, "quick")
    _check_drawn(e)
    assert e.control("sentence").input_value() == str(last - 1)
    e.control("sentence").select_option("0")
    assert e.control("prev").is_disabled()
    _check_drawn(e)


def test_alignment_pointing_at_a_word_lights_its_row(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    first = e.data["first"]
    e.control("prev").click()
    e.control("prev").click()  # the 'mais il' sentence of chapter 4
    assert _shown(e) == (first - 2, "benchmark")
    il = e.data["sentences"][first - 2]["tgt"].split().index("il")
    e.root.locator(f".ex-al-tok.tgt[data-index='{il}']").hover()
    _check_word(e, il)
    word = e.root.locator(".ex-al-word").inner_text()
    assert "Bahdanau \u2192 but" in word and "Luong \u2192 he" in word
    # a row of a heatmap, pointed at, does the same
    e.root.locator("[data-panel='luong'] rect.ex-al-rowhit[data-row='1']").hover()
    _check_word(e, 1)


def test_alignment_by_keyboard(open_explorer):  # noqa: F811
    e = open_explorer(IDENT)
    first = e.data["first"]
    e.control("sentence").focus()
    e.page.keyboard.press("ArrowDown")
    assert _shown(e)[0] == first + 1
    _check_drawn(e)
    e.control("next").focus()
    e.page.keyboard.press("Enter")
    assert _shown(e)[0] == first + 2
    _check_drawn(e)
    # Tab from the last control reaches the French words, in order
    e.control("next").focus()
    e.page.keyboard.press("Tab")
    _check_word(e, 0)
    e.page.keyboard.press("Tab")
    _check_word(e, 1)


def test_alignment_by_touch(open_explorer):  # noqa: F811
    e = open_explorer(IDENT, viewport={"width": 390, "height": 844}, has_touch=True)
    first = e.data["first"]
    e.control("next").tap()
    assert _shown(e)[0] == first + 1
    _check_drawn(e)
    e.root.locator(".ex-al-tok.tgt[data-index='2']").tap()
    _check_word(e, 2)
    e.root.locator("[data-panel='gold'] rect.ex-al-rowhit[data-row='0']").tap()
    _check_word(e, 0)
