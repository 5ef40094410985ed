"""The exercise checks (attention_lib.checks): specs, notebooks, solutions, stubs, hints.

* every instructor solution passes every public and hidden check;
* every stub of the student notebooks fails every check of its exercise (inverted validation:
  a check that a stub can pass checks nothing);
* every known mistake of every exercise, written the way a student would write it, fails and
  gets the targeted hint of that mistake;
* check() never raises because of the submission, and reports shape before values;
* the exercise notebooks follow the course conventions (setup cell, one title, no outputs,
  one tagged cell per exercise with the spec's signature, a check() call after it).
"""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch

from attention_lib.checks import (TIERS, assignments, check, get_assignment, get_exercise,
                                  run_checks)
from attention_lib.checks.compare import compare_tensors
from attention_lib.checks.probe import run_probe, sanitize
from attention_lib.grading.instructor import load_hidden_checks, load_solutions
from attention_lib.grading.notebook import exercise_cells

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
SOLUTIONS = load_solutions(ROOT / "instructor" / "solutions")
HIDDEN = load_hidden_checks(ROOT / "instructor" / "hidden_checks")
ALL = [(a.name, ex) for a in assignments().values() for ex in a.exercises]
FUNCTIONS = [(a, ex) for a, ex in ALL if ex.kind == "function"]


def _nb(name):
    return json.loads((EXERCISES / f"{name}.ipynb").read_text())


def _src(cell):
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _stub_namespace(name):
    """Execute only the exercise cells of the student notebook (the stubs)."""
    nb = _nb(name)
    ns = {"torch": torch, "math": math}
    for ex_name, i in exercise_cells(nb).items():
        exec(compile(_src(nb["cells"][i]), f"<{ex_name}>", "exec"), ns)
    return ns


# --------------------------------------------------------------------------- the registry
def test_assignments_match_chapters_and_exercise_notebooks():
    chapters = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert {"02_attention_pooling", "03_scoring_functions"} <= set(assignments())
    assert set(assignments()) <= chapters, "an exercise set for a chapter that does not exist"
    assert sorted(p.stem for p in EXERCISES.glob("[0-9][0-9]_*.ipynb")) == sorted(assignments())


@pytest.mark.parametrize("name", sorted(assignments()))
def test_assignment_mixes_kinds(name):
    kinds = [ex.kind for ex in get_assignment(name).exercises]
    assert 3 <= len(kinds) <= 6
    assert kinds.count("function") >= 2 and "answer" in kinds and kinds.count("experiment") == 1


@pytest.mark.parametrize("a,ex", FUNCTIONS, ids=lambda x: getattr(x, "name", x))
def test_function_exercises_are_tiered(a, ex):
    tiers = [c.tier for c in ex.checks]
    assert tiers == sorted(tiers, key=TIERS.index), "checks must run in tier order"
    assert tiers[0] == "shape" and "values" in tiers and len(ex.checks) >= 5
    assert ex.reference is not None and ex.mistakes, "function exercises need hints"
    ids = [c.id for c in ex.checks]
    assert len(set(ids)) == len(ids)


def test_hidden_checks_are_hidden_and_distinct():
    assert sum(len(v) for v in HIDDEN.values()) >= 8
    for name, checks in HIDDEN.items():
        public = {c.name for c in get_exercise(name).checks}
        for c in checks:
            assert c.hidden and c.id.startswith("hidden/") and c.name not in public


def test_check_outputs_fit_what_the_grader_accepts():
    from attention_lib.checks.compare import expected_output
    from attention_lib.checks.probe import MAX_NUMEL
    for ex_name, checks in [(ex.name, list(ex.checks) + HIDDEN.get(ex.name, []))
                            for _, ex in FUNCTIONS]:
        ex = get_exercise(ex_name)
        for c in checks:
            for case in c.get_cases():
                assert expected_output(ex, case).numel() <= MAX_NUMEL, (ex_name, c.name)


def test_cases_are_deterministic():
    ex = get_exercise("scaled_dot_product_attention")
    fresh = get_exercise("scaled_dot_product_attention").checks[1].cases()
    again = ex.checks[1].cases()
    for a, b in zip(fresh, again):
        for x, y in zip(a.args, b.args):
            assert torch.equal(x, y)


# --------------------------------------------------------------------------- solutions, stubs
@pytest.mark.parametrize("a,ex", ALL, ids=lambda x: getattr(x, "name", x))
def test_solution_passes_every_check(a, ex):
    obj = getattr(SOLUTIONS[a], ex.name)
    report = run_checks(ex, obj, list(ex.checks) + HIDDEN.get(ex.name, []))
    assert report.passed, report.format()


@pytest.mark.parametrize("a,ex", ALL, ids=lambda x: getattr(x, "name", x))
def test_stub_fails_every_check(a, ex):
    obj = _stub_namespace(a)[ex.name]
    report = run_checks(ex, obj, list(ex.checks) + HIDDEN.get(ex.name, []))
    assert not any(r.passed for r in report.results), report.format()
    if ex.kind == "function":
        assert all("not implemented yet" in r.message for r in report.results)
        assert report.format().count("\n") == 0  # one line: nothing to read twice
    else:
        assert obj is None


@pytest.mark.parametrize("a,ex", ALL, ids=lambda x: getattr(x, "name", x))
def test_signatures_match_the_spec(a, ex):
    stub = _stub_namespace(a)[ex.name]
    sol = getattr(SOLUTIONS[a], ex.name)
    if ex.kind != "function":
        assert ex.signature.startswith(f"{ex.name} = ")
        return
    import inspect
    spec = ex.signature[ex.signature.index("("):]
    assert str(inspect.signature(stub)) == spec
    assert str(inspect.signature(sol)) == spec


# --------------------------------------------------------------------------- mistakes
def _softmax_rows(s, mask=None, fill=float("-inf")):
    return (s if mask is None else s.masked_fill(~mask, fill)).softmax(-1)


def _box(q, k, h, inside=None, norm_dim=-1):
    inside = (q[:, None] - k[None, :]).abs() <= h if inside is None else inside
    w = inside.to(q.dtype)
    s = w.sum(norm_dim, keepdim=True)
    return w / torch.where(s > 0, s, torch.ones_like(s))


def _loo(x, y, h, how):
    n = len(x)
    s = -(x[:, None] - x[None, :]) ** 2 / (2 * h**2)
    eye = torch.eye(n, dtype=torch.bool)
    if how == "no mask":
        w = torch.softmax(s, -1)
    elif how == "after":
        w = torch.softmax(s, -1).masked_fill(eye, 0.0)
    elif how == "inverted":
        w = torch.softmax(s.masked_fill(~eye, float("-inf")), -1)
    else:
        w = torch.softmax(s.masked_fill(eye, float("-inf")), 0 if how == "dim0" else -1)
    err = (w @ y - y) ** 2
    return {"sum": err.sum(), "rmse": err.mean().sqrt()}.get(how, err.mean())


def _sdpa(q, k, v, m, scale="sqrt", dim=-1, how="fill"):
    d = q.shape[-1]
    s = q @ k.transpose(-2, -1) * {"sqrt": d ** -0.5, "none": 1.0, "d": 1.0 / d,
                                   "times": d ** 0.5}[scale]
    if m is None or how == "ignore":
        return s.softmax(dim) @ v
    if how == "after":
        return (s.softmax(-1) * m) @ v
    if how == "inverted":
        m = ~m
    if how in ("fill", "inverted"):
        # a correct masked softmax (zeros on empty rows), along `dim`
        s = s.masked_fill(~m, float("-inf"))
        mx = s.amax(dim, keepdim=True)
        e = torch.exp(s - torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)))
        tot = e.sum(dim, keepdim=True)
        return e / torch.where(tot > 0, tot, torch.ones_like(tot)) @ v
    return s.masked_fill(~m, {"nan": float("-inf"), "1e9": -1e9}[how]).softmax(-1) @ v


def _concat(q, k, w, v, swap=False, act=torch.tanh, reduce="v"):
    dq, dk = q.shape[-1], k.shape[-1]
    wq, wk = (w[:, dk:], w[:, :dk]) if swap else (w[:, :dq], w[:, dq:])
    hidden = act((q @ wq.T)[:, :, None, :] + (k @ wk.T)[:, None, :, :])
    return hidden.sum(-1) if reduce == "sum" else hidden @ v


def _heads(x, h, how):
    b, n, e = x.shape
    if how == "view":
        return x.view(b, h, n, e // h) if x.is_contiguous() else x.reshape(b, h, n, e // h)
    if how == "interleave":
        return x.reshape(b, n, e // h, h).permute(0, 3, 1, 2)
    return x.reshape(b, n, h, e // h).transpose(1, 2)


def _mh(q, k, h, split="good", scale="head"):
    qh, kh = _heads(q, h, split), _heads(k, h, split)
    d = {"head": q.shape[-1] // h, "model": q.shape[-1]}.get(scale)
    return qh @ kh.transpose(-2, -1) * (1.0 if scale == "none" else d ** -0.5)


# Written the way a student would, independently of the variants in the chapter modules.
BUGGY = {
    ("nw_gaussian", "weights not normalised"):
        lambda q, k, v, h: torch.exp(-(q[:, None] - k) ** 2 / (2 * h**2)) @ v,
    ("nw_gaussian", "kernel density not normalised"):
        lambda q, k, v, h: (torch.exp(-0.5 * ((q[:, None] - k) / h) ** 2)
                            / (h * math.sqrt(2 * math.pi))) @ v,
    ("nw_gaussian", "softmax over the queries"):
        lambda q, k, v, h: torch.softmax(-(q[:, None] - k) ** 2 / (2 * h**2), dim=0) @ v,
    ("nw_gaussian", "missing 1/2"):
        lambda q, k, v, h: torch.softmax(-(q[:, None] - k) ** 2 / h**2, dim=-1) @ v,
    ("nw_gaussian", "h not squared"):
        lambda q, k, v, h: torch.softmax(-(q[:, None] - k) ** 2 / (2 * h), dim=-1) @ v,
    ("nw_gaussian", "multiplied by h"):
        lambda q, k, v, h: torch.softmax(-((q[:, None] - k) * h) ** 2 / 2, dim=-1) @ v,
    ("nw_gaussian", "underflow"):
        lambda q, k, v, h: (lambda w: (w / w.sum(1, keepdim=True)) @ v)(
            torch.exp(-(q[:, None] - k) ** 2 / (2 * h**2))),
    ("nw_gaussian", "ignores the queries"):
        lambda q, k, v, h: v.mean(dim=0, keepdim=True).repeat(len(q), 1),
    ("boxcar_weights", "inverted mask"):
        lambda q, k, h: _box(q, k, h, inside=(q[:, None] - k).abs() > h),
    ("boxcar_weights", "indicator not normalised"):
        lambda q, k, h: ((q[:, None] - k).abs() <= h).to(q.dtype),
    ("boxcar_weights", "kernel not normalised"):
        lambda q, k, h: torch.where((q[:, None] - k).abs() <= h, 0.5, 0.0).to(q.dtype),
    ("boxcar_weights", "NaN on empty rows"):
        lambda q, k, h: (lambda m: m / m.sum(-1, keepdim=True))(
            ((q[:, None] - k).abs() <= h).to(q.dtype)),
    ("boxcar_weights", "strict inequality"):
        lambda q, k, h: _box(q, k, h, inside=(q[:, None] - k).abs() < h),
    ("boxcar_weights", "normalised over the queries"): lambda q, k, h: _box(q, k, h, norm_dim=0),
    ("boxcar_weights", "window of width h"):
        lambda q, k, h: _box(q, k, h, inside=(q[:, None] - k).abs() <= h / 2),
    ("loo_mse", "no mask"): lambda x, y, h: _loo(x, y, h, "no mask"),
    ("loo_mse", "mask after softmax"): lambda x, y, h: _loo(x, y, h, "after"),
    ("loo_mse", "inverted mask"): lambda x, y, h: _loo(x, y, h, "inverted"),
    ("loo_mse", "softmax over the queries"): lambda x, y, h: _loo(x, y, h, "dim0"),
    ("loo_mse", "sum instead of mean"): lambda x, y, h: _loo(x, y, h, "sum"),
    ("loo_mse", "root mean square"): lambda x, y, h: _loo(x, y, h, "rmse"),
    ("masked_softmax", "inverted mask"): lambda s, mask=None: _ms(s, mask, "inverted"),
    ("masked_softmax", "mask after softmax"): lambda s, mask=None: _ms(s, mask, "after"),
    ("masked_softmax", "mask ignored"): lambda s, mask=None: torch.softmax(s, dim=-1),
    ("masked_softmax", "NaN on fully masked rows"): lambda s, mask=None: _softmax_rows(s, mask),
    ("masked_softmax", "large negative fill"):
        lambda s, mask=None: _softmax_rows(s, mask, fill=-1e9),
    ("masked_softmax", "zero fill"): lambda s, mask=None: _softmax_rows(s, mask, fill=0.0),
    ("masked_softmax", "softmax over the queries"): lambda s, mask=None: _ms(s, mask, "dim-2"),
    ("scaled_dot_product_attention", "no scale"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, scale="none"),
    ("scaled_dot_product_attention", "scale 1/D"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, scale="d"),
    ("scaled_dot_product_attention", "scale sqrt(D)"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, scale="times"),
    ("scaled_dot_product_attention", "softmax over the queries"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, dim=-2),
    ("scaled_dot_product_attention", "inverted mask"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="inverted"),
    ("scaled_dot_product_attention", "mask after softmax"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="after"),
    ("scaled_dot_product_attention", "mask ignored"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="ignore"),
    ("scaled_dot_product_attention", "NaN on fully masked rows"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="nan"),
    ("scaled_dot_product_attention", "large negative fill"):
        lambda q, k, v, attn_mask=None: _sdpa(q, k, v, attn_mask, how="1e9"),
    ("concat_score", "halves swapped"): lambda q, k, w, v: _concat(q, k, w, v, swap=True),
    ("concat_score", "no tanh"): lambda q, k, w, v: _concat(q, k, w, v, act=lambda x: x),
    ("concat_score", "sum instead of v"): lambda q, k, w, v: _concat(q, k, w, v, reduce="sum"),
    ("multi_head_scores", "view without transpose"): lambda q, k, h: _mh(q, k, h, split="view"),
    ("multi_head_scores", "scaled by the model dim"): lambda q, k, h: _mh(q, k, h, scale="model"),
    ("multi_head_scores", "no scale"): lambda q, k, h: _mh(q, k, h, scale="none"),
    ("multi_head_scores", "heads interleaved"): lambda q, k, h: _mh(q, k, h, split="interleave"),
}


def _ms(s, mask, how):
    if mask is None:
        return torch.softmax(s, dim=-2 if how == "dim-2" else -1)
    if how == "after":
        return torch.softmax(s, dim=-1) * mask
    keep = ~mask if how == "inverted" else mask
    dim = -2 if how == "dim-2" else -1
    s = s.masked_fill(~keep, float("-inf"))
    mx = s.amax(dim, keepdim=True)
    e = torch.exp(s - torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)))
    tot = e.sum(dim, keepdim=True)
    return e / torch.where(tot > 0, tot, torch.ones_like(tot))


def _chapter_buggy():
    """Later chapters keep their buggy implementations beside this file, one module per
    chapter: ``tests/mistakes_chNN.py`` defining ``BUGGY = {(exercise, mistake): fn}``."""
    import importlib
    out = {}
    for path in sorted(Path(__file__).parent.glob("mistakes_ch[0-9][0-9].py")):
        extra = importlib.import_module(path.stem).BUGGY
        assert not set(extra) & (set(BUGGY) | set(out)), path.name
        out.update(extra)
    return out


BUGGY.update(_chapter_buggy())
MISTAKES = [(ex.name, m) for _, ex in FUNCTIONS for m in ex.mistakes]


def test_every_mistake_has_a_buggy_implementation():
    declared = {(e, m.name) for e, m in MISTAKES}
    assert declared == set(BUGGY), declared ^ set(BUGGY)


@pytest.mark.parametrize("name,mistake", MISTAKES, ids=lambda x: getattr(x, "name", x))
def test_known_mistake_gets_its_hint(name, mistake):
    report = run_checks(get_exercise(name), BUGGY[(name, mistake.name)])
    assert not report.passed
    hints = [r.hint for r in report.results if not r.passed]
    assert mistake.hint in hints, report.format()
    # the hint is shown where the failure is first reported
    assert mistake.hint in report.format()


# --------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("bad", [
    lambda *a, **k: 1 / 0,
    lambda *a, **k: None,
    lambda *a, **k: (torch.zeros(2), torch.zeros(2)),
    lambda *a, **k: [[1.0]],
    lambda *a, **k: torch.zeros(2).numpy(),
    lambda *a, **k: torch.full((3, 3), float("nan")),
    lambda *a: torch.zeros(10**2, dtype=torch.int64),
    "not a function",
    None,
], ids=["raises", "None", "tuple", "list", "numpy", "nan", "int tensor", "str", "NoneObj"])
@pytest.mark.parametrize("name", ["masked_softmax", "nw_gaussian", "answer_dot_std",
                                  "my_setting", "my_saturation_dim"])
def test_check_never_raises_on_garbage(bad, name, capsys):
    report = check(name, bad)
    assert not report.passed and report.results
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: 0/")


def test_exception_is_reported_with_type_and_message():
    def boom(scores, mask=None):
        raise ValueError("my own bug")
    report = check("masked_softmax", boom, verbose=False)
    assert all(r.message.endswith("raised ValueError: my own bug") for r in report.results)


def test_shape_is_reported_before_values():
    def transposed(query, key, value, attn_mask=None):
        w = torch.softmax(query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5, -1)
        return (w @ value).transpose(-2, -1)
    report = check("scaled_dot_product_attention", transposed, verbose=False)
    first = report.results[0]
    assert first.tier == "shape" and not first.passed
    assert first.message.startswith("output has shape") and "max abs error" not in first.message
    assert "swapped" in (first.hint or "")


def test_value_report_has_errors_worst_index_and_tolerance():
    a = torch.zeros(2, 3, dtype=torch.float32)
    e = torch.zeros(2, 3, dtype=torch.float64)
    e[1, 2] = 0.5
    lines = compare_tensors(a, e, torch.float32)
    assert "max abs error 5.00e-01 at [1, 2]" in lines[0] and "max rel error" in lines[0]
    assert lines[1].startswith("tolerance for float32")
    assert compare_tensors(e.float() + 1e-7, e, torch.float32) is None
    assert "dtype" in compare_tensors(e, e, torch.float32)[0]


def test_efficiency_check_catches_the_concatenation():
    def concatenated(query, key, weight, v):
        b, nq, nk = query.shape[0], query.shape[1], key.shape[1]
        pairs = torch.cat([query[:, :, None].expand(b, nq, nk, -1),
                           key[:, None].expand(b, nq, nk, -1)], dim=-1)
        return torch.tanh(pairs @ weight.T) @ v
    report = check("concat_score", concatenated, verbose=False)
    failed = [r for r in report.results if not r.passed]
    assert [r.tier for r in failed] == ["efficiency"], report.format()


def test_rules_check_catches_the_library_shortcut():
    from attention_lib import functional
    report = check("masked_softmax", lambda s, mask=None: functional.masked_softmax(s, mask),
                   verbose=False)
    assert [r.tier for r in report.results if not r.passed] == ["rules"]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    report = check("scaled_dot_product_attention",
                   lambda q, k, v, attn_mask=None: sdpa(q, k, v, attn_mask), verbose=False)
    assert "rules" in [r.tier for r in report.results if not r.passed]


def test_inputs_are_copies():
    def inplace(scores, mask=None):  # d2l's masked_softmax writes into its input
        if mask is not None:
            scores.masked_fill_(~mask, float("-inf"))
        return _ms(scores, mask, "good")
    first = check("masked_softmax", inplace, verbose=False)
    failed = [r for r in first.results if not r.passed]
    # the values are right (every check got fresh copies of its inputs); only autograd objects
    assert [r.tier for r in failed] == ["gradients"], first.format()
    assert "in place" in failed[0].hint
    again = check("masked_softmax", inplace, verbose=False)
    assert [r.passed for r in again.results] == [r.passed for r in first.results]


def test_check_finds_the_function_by_name_and_skips_while_grading(monkeypatch, capsys):
    masked_softmax = SOLUTIONS["03_scoring_functions"].masked_softmax  # noqa: F841
    assert check("masked_softmax").passed
    assert "no exercise called" in check("nope").note
    monkeypatch.setenv("ATTENTION_GRADING", "1")
    assert check("masked_softmax", None).results == []


def test_numpy_numbers_are_numbers():
    import numpy as np
    assert check("answer_dot_std", np.sqrt(np.float64(256)), verbose=False).passed
    assert check("my_saturation_dim", np.int64(256), verbose=False).passed
    assert type(sanitize(np.float64(2.5))) is float


def test_sanitize_and_probe_never_raise():
    class Evil:
        def __repr__(self):
            raise RuntimeError("no")
    assert sanitize(Evil())["__type__"].endswith("Evil")
    assert sanitize(torch.zeros(3, requires_grad=True)).requires_grad is False
    out = run_probe(lambda: (_ for _ in ()).throw(KeyboardInterrupt()), "call",
                    [{"args": [], "kwargs": {}}])
    assert out[0]["status"] == "error"


# --------------------------------------------------------------------------- claims
def test_open_ended_targets_are_reachable():
    from attention_lib.checks.chapters import ch02_attention_pooling as ch02
    from attention_lib.checks.chapters import ch03_scoring_functions as ch03
    best = ch02.best_gaussian_on_grid()
    assert abs(best - 0.42) < 0.005  # "about 0.42", as the notebook says
    assert ch02.loo_of_setting("boxcar", 0.45) < best  # another kernel does beat it
    assert ch03.saturation_dim() in (128, 256, 512)
    assert ch03.mean_max_weight(2) < 0.5 < 0.9 < ch03.mean_max_weight(2048)


# --------------------------------------------------------------------------- the notebooks
@pytest.mark.parametrize("name", sorted(assignments()))
def test_exercise_notebook_conventions(name):
    from test_notebook_conventions import setup_cell_source
    nb = _nb(name)
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and _src(cells[0]).startswith("# ")
    titles = [ln for c in cells if c["cell_type"] == "markdown"
              for ln in _src(c).splitlines() if ln.startswith("# ")]
    assert len(titles) == 1
    code = [c for c in cells if c["cell_type"] == "code"]
    assert _src(code[0]).strip() == setup_cell_source()
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), \
        "student notebooks are committed without outputs"
    assert nb["metadata"]["attention_course"]["assignment"] == name
    tagged = exercise_cells(nb)
    a = get_assignment(name)
    assert list(tagged) == [ex.name for ex in a.exercises], "one tagged cell per exercise, in order"
    for ex in a.exercises:
        i = tagged[ex.name]
        src = _src(cells[i])
        tree = ast.parse(src)
        if ex.kind == "function":
            assert "raise NotImplementedError" in src and "# YOUR CODE HERE" in src
        else:
            assert isinstance(tree.body[0], ast.Assign) and "None" in src
        later = [_src(c) for c in cells[i + 1:] if c["cell_type"] == "code"]
        assert any(f'check("{ex.name}", {ex.name})' in s for s in later[:3])
