"""The exercise checks of chapters 17 and 18 beyond what tests/test_checks.py runs for every
chapter (solutions pass, stubs fail, known mistakes get their hints):

* the references agree with independent computations (numpy's polyfit, the library's
  relative_error, a loop over the words);
* the efficiency tier fails a correct uniform baseline that builds an (N, N) averaging matrix,
  and nothing else fails;
* the truths of the predict-then-verify questions and of the open-ended experiments agree with
  closed forms counted by hand, and the experiments' targets are reachable.
"""
from __future__ import annotations

import numpy as np
import torch

from attention_course.checks import check, get_exercise, run_checks
from attention_course.checks.chapters import ch17_benchmark as ch17
from attention_course.checks.chapters import ch18_visual_attention as ch18
from attention_lib.efficient import zoo


# --------------------------------------------------------------------------- chapter 17
def test_references_agree_with_independent_code():
    g = torch.Generator().manual_seed(0)
    out, ref = torch.randn(2, 3, 5, 4, generator=g), torch.randn(2, 3, 5, 4, generator=g)
    assert abs(float(ch17._rfe_ref(out.double(), ref.double()))
               - zoo.relative_error(out, ref)) < 1e-12
    sizes = np.array([64.0, 128, 256, 512, 1024])
    cost = 3e-5 * sizes ** 1.7 * np.exp(np.random.default_rng(0).normal(0, 0.3, 5))
    slope = np.polyfit(np.log(sizes), np.log(cost), 1)[0]
    assert abs(float(ch17._fit_ref(torch.tensor(sizes), torch.tensor(cost))) - slope) < 1e-10
    v = torch.randn(1, 2, 6, 3, generator=g, dtype=torch.float64)
    loop = torch.stack([v[:, :, : i + 1].mean(2) for i in range(6)], 2)
    assert torch.allclose(ch17._uniform_ref(v, True), loop)
    catalog_uniform = zoo.catalog(head_dim=3)["uniform"].build(6, True)
    assert torch.allclose(catalog_uniform(v, v, v), loop)


def test_dense_uniform_baseline_fails_only_efficiency():
    def dense(value, is_causal=False):
        n = value.shape[-2]
        w = torch.ones(n, n, dtype=value.dtype)
        if is_causal:
            w = w.tril()
        return (w / w.sum(-1, keepdim=True)) @ value  # an (N, N) averaging matrix
    report = run_checks(get_exercise("uniform_attention"), dense)
    failed = [r.tier for r in report.results if not r.passed]
    assert failed == ["efficiency"], report.format()
    assert "cumsum" in report.format()


def test_naive_memory_is_two_score_matrices_and_the_output():
    q = ch17.NAIVE_QUESTION
    scores = q["B"] * q["H"] * q["N"] * q["N"] * 4  # one float32 (B, H, N, N) matrix
    output = q["B"] * q["H"] * q["N"] * q["D"] * 4
    assert ch17.naive_mib() == (2 * scores + output) / 2**20
    assert check("answer_naive_mib", 64.0, verbose=False).passed  # "two matrices", rounded
    assert not check("answer_naive_mib", 32.0, verbose=False).passed


def test_workload_pick_accepts_exact_causal_variants_only():
    err, mib = ch17.variant_stats("sdpa")
    assert err < ch17.WORKLOAD["max_error"]
    exact = {name: ch17.variant_stats(name)[1] for name in ("naive", "sdpa", "flash")}
    assert min(exact, key=exact.get) == "sdpa"  # the least memory of the exact ones
    for name in ("uniform", "local", "linear", "performer"):
        assert ch17.variant_stats(name)[0] > ch17.WORKLOAD["max_error"]
    assert ch17.variant_stats("linformer") == (None, None)  # no causal form
    assert check("my_workload_pick", ("flash", exact["flash"]), verbose=False).passed
    report = check("my_workload_pick", ("local", 23.0), verbose=False)
    assert [r.passed for r in report.results][:2] == [True, False]
    report = check("my_workload_pick", ("sdpa", 10 * mib), verbose=False)
    assert [r.passed for r in report.results] == [True, True, False]


# --------------------------------------------------------------------------- chapter 18
def test_pointing_reference_against_a_loop():
    case = ch18._point_case(7, torch.float64, sizes=dict(M=25, h=3, w=5, ch=2, cw=4))
    attn, regions = case.args
    hits = 0
    for a, r in zip(attn, regions):
        k = int(a.flatten().argmax())
        i, j = divmod(k, 5)
        hits += bool(r[2 * i: 2 * i + 2, 4 * j: 4 * j + 4].any())
    assert float(ch18._pointing_ref(attn, regions)) == hits / 25


def test_se_reference_is_the_library_block():
    from attention_lib.vision import SqueezeExcitation
    torch.manual_seed(0)
    block = SqueezeExcitation(8, reduction=4).double()
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    ours = ch18._se_ref(x, block.fc1.weight, block.fc1.bias, block.fc2.weight, block.fc2.bias)
    assert torch.allclose(ours, block(x))


def test_uniform_pointing_answer_counted_by_hand():
    rows, cols = ch18.UNIFORM_QUESTION["rows"], ch18.UNIFORM_QUESTION["cols"]
    cells = (rows[1] // 4 - rows[0] // 4 + 1) * (cols[1] // 4 - cols[0] // 4 + 1)
    assert cells == 9 and ch18.uniform_pointing_truth() == cells / 64


def test_receptive_field_matches_the_architecture_and_can_grow():
    # cell (i, j) of GridEncoder sees pixel rows 4i - 4 ... 4i + 4 (three 3x3 convolutions,
    # two with stride 2): count the cells whose window holds the pixel
    r, c = ch18.RECEPTIVE_PIXEL
    by_hand = sum(4 * i - 4 <= r <= 4 * i + 4 for i in range(8)) \
        * sum(4 * j - 4 <= c <= 4 * j + 4 for j in range(8))
    assert ch18.chapter_cells() == by_hand == 9
    from attention_lib.vision import load_captioner
    torch.manual_seed(0)
    larger = torch.nn.Sequential(load_captioner("attention")[0].encoder,
                                 torch.nn.Conv2d(64, 64, 3, padding=1))
    grown = ch18.cells_reached(larger)
    assert grown == 25
    assert check("my_receptive_cells", (9, grown), verbose=False).passed
    assert not check("my_receptive_cells", (9, 9), verbose=False).passed
