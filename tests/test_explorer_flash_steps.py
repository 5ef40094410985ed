"""Chapter 16's FlashAttention stepper (book/explorers/16_flash_steps.json) against an
independent replay and against the library.

- the tiles are those of ``tile_schedule``, in the order ``flash_attention`` visits them;
- every step's running max, rescale factor, sum and outputs equal a plain-Python float64
  replay of the recurrence from the JSON's Q, K, V (written out here, not taken from
  attention_lib), to the 4 significant digits the file keeps;
- the final outputs equal torch SDPA and the library's ``flash_attention`` on the same inputs;
- the numbers the chapter's caption quotes are the file's.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attention_lib.efficient.flash import _tiles, flash_attention, tile_schedule
from explorers import load

ROOT = Path(__file__).resolve().parents[1]
DIGITS4 = dict(rel=5.01e-4, abs=1e-12)  # what rounding to 4 significant digits can move


@pytest.fixture(scope="module")
def data() -> dict:
    return load("16_flash_steps")


def _qkv(d: dict) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(d[x], dtype=torch.float64)[None, None] for x in "qkv")


def test_the_tiles_are_the_library_schedule_in_its_loop_order(data):
    n, bq, bk = data["n"], data["block_q"], data["block_k"]
    assert data["schedule"] == tile_schedule(n, n, bq, bk).tolist()
    visited = [(q0 // bq, k0 // bk) for q0, _, tiles in _tiles(n, n, bq, bk, False, None, None)
               for k0, _, _ in tiles]
    assert [(s["qb"], s["kb"]) for s in data["steps"]] == visited
    assert len(visited) == 8 and len({qb for qb, _ in visited}) == 2  # several tiles, 2 blocks
    for s in data["steps"]:
        assert (s["q0"], s["q1"]) == (s["qb"] * bq, min(n, (s["qb"] + 1) * bq))
        assert (s["k0"], s["k1"]) == (s["kb"] * bk, min(n, (s["kb"] + 1) * bk))


def test_every_step_equals_a_float64_replay(data):
    """m, exp(m_old - m), l, the unnormalised and the normalised output of every row after each
    of its tiles, replayed with Python floats from the inputs in the file."""
    n, d = data["n"], data["d"]
    q, k, v = data["q"], data["k"], data["v"]
    for x in (q, k, v):  # the inputs are stored exactly: two decimals
        assert all(abs(a * 100 - round(a * 100)) < 1e-9 for row in x for a in row)
    s = [[sum(q[i][c] * k[j][c] for c in range(d)) / math.sqrt(d) for j in range(n)]
         for i in range(n)]
    for i in range(n):
        assert data["scores"][i] == pytest.approx(s[i], **DIGITS4)
    m, ell = [-math.inf] * n, [0.0] * n
    acc = [[0.0] * d for _ in range(n)]
    seen = {i: 0 for i in range(n)}
    jumps = 0
    for t, st in enumerate(data["steps"]):
        for i in range(st["q0"], st["q1"]):
            tile = s[i][st["k0"]:st["k1"]]
            m_new = max(m[i], max(tile))
            alpha = math.exp(m[i] - m_new) if m[i] > -math.inf else 0.0
            p = [math.exp(x - m_new) for x in tile]
            ell[i] = ell[i] * alpha + sum(p)
            acc[i] = [acc[i][c] * alpha + sum(pj * v[st["k0"] + j][c] for j, pj in enumerate(p))
                      for c in range(d)]
            m[i] = m_new
            h = data["rows"][i][seen[i]]
            seen[i] += 1
            assert h["step"] == t
            assert h["tile_max"] == pytest.approx(max(tile), **DIGITS4)
            assert h["m"] == pytest.approx(m[i], **DIGITS4)
            assert h["alpha"] == pytest.approx(alpha, **DIGITS4)
            assert h["l"] == pytest.approx(ell[i], **DIGITS4)
            assert h["acc"] == pytest.approx(acc[i], **DIGITS4)
            assert h["out"] == pytest.approx([a / ell[i] for a in acc[i]], **DIGITS4)
            jumps += 0 < alpha < 1
    assert seen == {i: len(data["rows"][i]) for i in range(n)}
    assert jumps >= 3  # the figure does show the max growing, and rescaling


def test_the_final_outputs_are_softmax_attention(data):
    q, k, v = _qkv(data)
    sdpa = F.scaled_dot_product_attention(q, k, v)[0, 0]
    library = flash_attention(q, k, v, block_q=data["block_q"], block_k=data["block_k"])[0, 0]
    softmax = torch.softmax(q[0, 0] @ k[0, 0].T / math.sqrt(data["d"]), -1) @ v[0, 0]
    final = torch.tensor([h[-1]["out"] for h in data["rows"]], dtype=torch.float64)
    for other in (sdpa, library, softmax):
        torch.testing.assert_close(final, other, rtol=5.01e-4, atol=1e-12)
    for i, row in enumerate(data["sdpa"]):
        assert row == pytest.approx(sdpa[i].tolist(), **DIGITS4)
    assert (library - sdpa).abs().max() < 1e-12
    # the differences the figure prints: float64 rounding, never more
    assert all(0 <= x < 1e-14 for x in data["row_diff"])
    assert 0 < data["max_diff"]["sdpa"] == max(data["row_diff"]) < 1e-14
    assert all(0 <= x < 1e-14 for x in data["max_diff"].values())


def _caption() -> str:
    nb = json.loads((ROOT / "notebooks" / "16_flash_attention.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c.get("id") == "explorer-flash-steps")
    return re.sub(r"<[^>]+>", "", "".join(cell["source"]))


def test_the_caption_quotes_the_file(data):
    cap = _caption()
    r0, r4 = data["rows"][0], data["rows"][4]
    quoted = [f"m = {r0[0]['m']:.2f} and ℓ = {r0[0]['l']:.3f}",
              f"a score of {r0[1]['m']:.2f} arrives", f"= {r0[1]['alpha']:.3f}",
              f"{r0[0]['m']:.2f} − {r0[1]['m']:.2f}",
              f"its best score is {r0[2]['tile_max']:.2f}".replace("-", "−"),
              f"raises m to {r0[3]['m']:.2f} (factor {r0[3]['alpha']:.3f})",
              "O = (" + ", ".join(f"{x:.3f}" for x in r0[3]["out"]).replace("-", "−") + ")",
              f"SDPA's within {data['row_diff'][0]:.1e}",
              f"jumps at tile {r4[1]['step'] + 1} (factor {r4[1]['alpha']:.3f}) and at tile "
              f"{r4[2]['step'] + 1} (factor {r4[2]['alpha']:.3f})",
              f"within {data['max_diff']['sdpa']:.1e}"]
    for text in quoted:
        assert text in cap, text
    assert r0[2]["alpha"] == 1.0 and r4[3]["alpha"] == 1.0 and r4[0]["step"] == 4
