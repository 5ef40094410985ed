"""The explorers' data (book/explorers/*.json): up to date, and right.

- every committed file equals what ``python -m explorers`` computes today (not stale), and
  every registered explorer is placed in a chapter by a ``figure.explorer`` element whose
  ``data-data`` names it, with a caption that says what to try;
- each file agrees with the library or with an independent computation (per explorer
  below); what the browser draws from these files is checked in tests/site/test_explorers.py.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from explorers import OUT, dumps, load
from explorers.__main__ import load_all

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIGURE = re.compile(r'<figure class="explorer" data-explorer="([\w-]+)" data-data="(\w+)"'
                    r' id="(explorer-[\w-]+)">(.*?)</figure>', re.S)
EXPLORERS = load_all()


def _placed() -> dict:
    """data name -> (chapter, kind, element id, inner html) for every explorer in a chapter."""
    found = {}
    for path in CHAPTERS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for m in FIGURE.finditer("".join(cell["source"])):
                    found[m.group(2)] = (path.name, m.group(1), m.group(3), m.group(4))
    return found


@pytest.mark.parametrize("name", sorted(EXPLORERS))
def test_data_is_up_to_date(name):
    fresh = dumps(EXPLORERS[name]())
    committed = (OUT / f"{name}.json").read_text()
    assert committed == fresh, f"book/explorers/{name}.json is stale: run `make explorers`"


def test_every_explorer_is_placed_with_a_caption():
    placed = _placed()
    assert sorted(placed) == sorted(EXPLORERS)
    assert sorted(p.stem for p in OUT.glob("*.json")) == sorted(EXPLORERS)
    scripts = ROOT / "book" / "_ext" / "static" / "explorers"
    for chapter, kind, ident, inner in placed.values():
        assert (scripts / f"{kind.replace('-', '_')}.js").exists(), f"no script for {kind}"
        caption = re.search(r"<figcaption>(.*?)</figcaption>", inner, re.S)
        assert caption and "Try" in caption.group(1) and len(caption.group(1)) > 120, \
            f"{chapter}: the explorer {ident} needs a caption that says what to try"
        assert 'class="explorer-static"' in inner, f"{chapter}: {ident} has no text for readers " \
                                                   "without the site (Jupyter, Colab)"


# ----------------------------------------------------------------------- 07: mask builder
def test_mask_builder_masks_follow_the_rules_and_weights_the_softmax():
    """Each mask equals the rule written out by hand (not by attention_lib), and each row of
    weights is the float64 softmax of the fixed scores over the kept keys (0 for none)."""
    d = load("07_mask_builder")
    n, s = d["n"], d["scores"]
    pat = re.compile(r"L(\d+)([rl])c([01])w([-\d])g([01])")
    assert len(d["settings"]) == n * 2 * 2 * len(d["windows"]) * 2
    empty_seen = 0
    for key, setting in d["settings"].items():
        length, side, causal, window, glob = pat.fullmatch(key).groups()
        length, causal, glob = int(length), causal == "1", glob == "1"
        for i in range(n):
            row = setting["mask"][i]
            for j in range(n):
                real = j < length if side == "r" else j >= n - length
                near = window == "-" or abs(i - j) <= int(window) or \
                    (glob and window != "-" and (i == 0 or j == 0))
                want = real and near and (not causal or j <= i)
                assert row[j] == ("1" if want else "0"), (key, i, j)
            kept = [j for j in range(n) if row[j] == "1"]
            if not kept:
                assert i in setting["empty_rows"] and setting["weights"][i] == [0.0] * n
                empty_seen += 1
                continue
            z = sum(math.exp(s[i][j]) for j in kept)
            for j in range(n):
                want = math.exp(s[i][j]) / z if j in kept else 0.0
                assert setting["weights"][i][j] == pytest.approx(want, rel=5e-3, abs=1e-12)  # 3 digits
        assert setting["empty_rows"] == [i for i in range(n) if "1" not in setting["mask"][i]]
    assert empty_seen > 0  # the explorer does show queries with nothing to attend to
