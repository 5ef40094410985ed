"""The exercise checks (attention_course.checks): specs, notebooks, solutions, stubs, hints.

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

from attention_course.checks import (
    TIERS,
    assignments,
    check,
    get_assignment,
    get_exercise,
    run_checks,
)
from attention_course.checks.compare import compare_tensors
from attention_course.checks.probe import run_probe, sanitize
from attention_course.grading.instructor import load_hidden_checks, load_solutions
from attention_course.grading.notebook import exercise_cells

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
    from attention_course.checks.compare import expected_output
    from attention_course.checks.probe import MAX_NUMEL
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
def _chapter_buggy():
    """Every chapter keeps its buggy implementations in one module,
    ``tests/mistakes/chNN_<name>.py``, defining ``BUGGY = {(exercise, mistake): fn}``."""
    import importlib.util
    out = {}
    for path in sorted((Path(__file__).parent / "mistakes").glob("ch[0-9][0-9]_*.py")):
        spec = importlib.util.spec_from_file_location(f"mistakes_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        extra = module.BUGGY
        assert not set(extra) & set(out), path.name
        out.update(extra)
    return out


BUGGY = _chapter_buggy()
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
        return torch.softmax(scores, -1).nan_to_num(0.0)
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
    from attention_course.checks.chapters import ch02_attention_pooling as ch02
    from attention_course.checks.chapters import ch03_scoring_functions as ch03
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


def test_exercise_index_lists_every_exercise_and_its_files():
    """attention_course/README.md is the one index of each exercise's five files."""
    readme = (ROOT / "attention_course" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and ".ipynb" in line]
    listed = {}
    for row in rows:
        links = [cell.split("](")[1].split(")")[0] for cell in row.split(" | ")[1:]
                 if "](" in cell]
        stem = Path(links[0]).stem
        listed[stem] = links
        for link in links:
            assert (ROOT / "attention_course" / link).resolve().is_file(), (stem, link)
        assert all(f"ch{stem}" in link for link in links[1:]), row
    assert sorted(listed) == sorted(assignments()), sorted(set(listed) ^ set(assignments()))
