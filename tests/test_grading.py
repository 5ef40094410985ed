"""The grader (attention_course.grading) against a folder of hostile and broken submissions.

The folder ``tests/fixtures/submissions/`` (written by ``tests/fixtures/make_submissions.py``)
holds the perfect submissions, the untouched stub, and one notebook per kind of trouble. It is
graded once per session through the command line (two notebooks at a time, a short time
limit), and every submission must end with the score of the table below and a one-line
reason; the rest of the folder must be graded whatever one submission does.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from attention_course.grading import BundleLeakError, build_student_bundle, main, scan_for_leaks
from attention_course.grading.instructor import load_hidden_checks
from attention_course.grading.sandbox import Limits, isolation, validate_outcomes

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
SOLUTIONS = ROOT / "instructor" / "solutions"
HIDDEN = ROOT / "instructor" / "hidden_checks"
ESCAPES = [Path("/tmp/attention_grade_escape.txt"), Path("/tmp/attention_grade_escape_dir"),
           Path("/tmp/attention_grade_escape_proc"), Path("/tmp/attention_grade_escape_sys"),
           Path("/tmp/attention_grade_escape_gc"), Path("/tmp/attention_grade_escape_gc.txt"),
           Path("/tmp/attention_grade_escape_spawn")]
TIMEOUT = 15  # seconds per notebook (hard); soft limits: 3 s per cell, 3 s per check

# fixture -> (score, max_score, status, text in the reason). Max scores: chapter 2 has 26
# public + 4 hidden checks, chapter 3 has 33 public + 6 hidden, one point each.
EXPECTED = {
    # the references
    "perfect_02": (30, 30, "graded", "all 30 checks passed"),
    "alice_03_scoring_functions": (39, 39, "graded", "all 39 checks passed"),  # found by name
    "stub_03": (0, 39, "graded", "nothing implemented yet"),
    # kinds of trouble
    "import_error": (11, 30, "graded", "ModuleNotFoundError"),  # boxcar needs no torch.*
    "syntax_error": (32, 39, "graded", "SyntaxError"),  # concat_score never defined
    "infinite_loop": (21, 30, "graded", "interrupted after 3 s"),  # + loo_mse hangs
    "unkillable_loop": (0, 39, "timeout", f"stopped at the {TIMEOUT} s time limit"),
    "huge_allocation": (29, 39, "graded", "RuntimeError"),  # masked_softmax allocates 40 GB
    "nan_inf_outputs": (14, 30, "graded", "lost points in nw_gaussian, boxcar_weights"),
    "wrong_shapes": (20, 39, "graded", "scaled_dot_product_attention, multi_head_scores"),
    "wrong_dtype": (29, 39, "graded", "masked_softmax, concat_score"),
    "stdout_flood": (30, 30, "graded", "all 30 checks passed"),
    "deleted_cells": (24, 39, "graded", "NameError"),
    "renamed_function": (22, 30, "graded", "boxcar_weights"),
    "redefine_check_monkeypatch": (2, 30, "graded", "2/30 checks passed"),
    "write_outside": (39, 39, "graded", 'PermissionError "grading sandbox'),
    "import_solutions": (0, 30, "graded", "No module named 'instructor'"),  # not there
    "exit_early": (0, 39, "crashed", "ended the Python process (exit code 3)"),
    "garbage_outputs": (0, 39, "graded", "0/39 checks passed"),
    "garbage_02_attention_pooling": (0, 30, "invalid", "not a notebook"),
    # attacks on the grader (make_submissions.attacks): none earns more than without it
    "attack_library_in_a_thread": (19, 39, "graded", "lost points in masked_softmax, "
                                   "scaled_dot_product_attention"),  # = the library's values
    "attack_read_through_dir_fd": (30, 30, "graded", "all 30 checks passed"),
    "attack_sandbox_off_by_gc": (30, 30, "graded", "all 30 checks passed"),
    "attack_detached_process": (30, 30, "graded", "all 30 checks passed"),
    "attack_own_reason": (0, 39, "graded", 'cell 5: RuntimeError "all 39 checks passed ; '
                          'score 39/39"; nothing implemented yet'),
    # loses the gradient check (numpy has no autograd) and the efficiency check, whose memory
    # the sandbox measures from outside the call (see test_memory_is_measured_from_outside)
    "attack_scores_in_numpy": (20, 22, "graded", "lost points in tiled_attention"),
    # the references of the chapters with such efficiency checks keep full marks
    "perfect_11": (19, 19, "graded", "all 19 checks passed"),
    "perfect_13": (20, 20, "graded", "all 20 checks passed"),
    "perfect_14": (27, 27, "graded", "all 27 checks passed"),
    "perfect_15": (28, 28, "graded", "all 28 checks passed"),
    "perfect_16": (22, 22, "graded", "all 22 checks passed"),
}


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """Grade the fixture folder once per test run, through the command line.

    Under pytest-xdist every worker asks for it; the first one grades (holding a lock), the
    others wait and read the same results, so the folder is not graded twice at once.
    """
    why = isolation()
    if why is not None:
        if os.environ.get("REQUIRE_SANDBOX_TESTS"):
            pytest.fail(f"the grader's sandbox cannot run here: {why}")
        pytest.skip(f"the grader's sandbox cannot run here: {why}")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this run only
    out = shared / "graded_fixtures"
    with open(shared / "graded_fixtures.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (out / "summary.txt").exists():
                for p in ESCAPES:
                    assert not p.exists(), f"remove {p} left by an earlier run"
                rc = main([str(FIXTURES), "--out", str(out), "--solutions", str(SOLUTIONS),
                           "--hidden-checks", str(HIDDEN), "--timeout", str(TIMEOUT),
                           "--memory-mb", "2048", "--cell-timeout", "3", "--probe-timeout", "3",
                           "--jobs", "2", "--quiet",
                           # tests/test_checks.py runs the solutions against every check
                           "--no-selftest"])
                assert rc == 0
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


def _n_hidden_checks() -> int:
    """Hidden checks of every chapter (the summary counts them all)."""
    return sum(len(v) for v in load_hidden_checks(HIDDEN).values())


def test_the_fixture_folder_is_up_to_date():
    sys.path.insert(0, str(FIXTURES.parent))
    try:
        import make_submissions
    finally:
        sys.path.remove(str(FIXTURES.parent))
    fresh = make_submissions.fixtures()
    on_disk = {p.stem for p in FIXTURES.glob("*.ipynb")}
    assert on_disk == set(fresh) | {"garbage_02_attention_pooling"} == set(EXPECTED)
    for name, nb in fresh.items():
        assert json.loads((FIXTURES / f"{name}.ipynb").read_text()) == json.loads(
            json.dumps(nb)), f"{name} is stale: run python tests/fixtures/make_submissions.py"
    assert len(EXPECTED) >= 12 + 2 + 5


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_submission_gets_its_score_and_a_reason(graded, name):
    score, max_score, status, reason = EXPECTED[name]
    res = json.loads((graded / name / "results.json").read_text())
    assert (res["score"], res["max_score"], res["extra_data"]["status"]) == \
        (score, max_score, status), res["output"]
    assert reason in res["output"] and "\n" not in res["output"] and len(res["output"]) <= 200
    # Gradescope's format: the tests add up to the score
    if res["tests"]:
        assert sum(t["score"] for t in res["tests"]) == res["score"]
        assert sum(t["max_score"] for t in res["tests"]) == res["max_score"]
        for t in res["tests"]:
            assert set(t) >= {"name", "score", "max_score", "output", "visibility"}
            assert 0 <= t["score"] <= t["max_score"]
            assert t["visibility"] == ("after_published" if "(hidden)" in t["name"]
                                       else "visible")


def test_gradebook_and_summary(graded):
    rows = list(csv.DictReader((graded / "gradebook.csv").open()))
    assert sorted(r["submission"] for r in rows) == sorted(EXPECTED)
    for r in rows:
        assert float(r["score"]) == EXPECTED[r["submission"]][0]
    perfect = next(r for r in rows if r["submission"] == "perfect_02")
    assert perfect["nw_gaussian"] == "10" and perfect["loo_mse"] == "9"
    summary = (graded / "summary.txt").read_text()
    assert all(name in summary for name in EXPECTED)
    assert f"{len(EXPECTED)} submissions graded in" in summary
    assert f"hidden checks: {_n_hidden_checks()} " in summary


def test_hints_reach_the_results(graded):
    res = json.loads((graded / "wrong_shapes" / "results.json").read_text())
    shape = next(t for t in res["tests"] if t["name"].startswith(
        "scaled_dot_product_attention: [shape]"))
    assert "output has shape (2, 3, 5, 4), expected (2, 3, 4, 5)" in shape["output"]
    assert "hint: the last two axes are swapped" in shape["output"]
    res = json.loads((graded / "nan_inf_outputs" / "results.json").read_text())
    assert any("non-finite" in t["output"] for t in res["tests"])


def test_memory_is_measured_from_outside(graded):
    """numpy's (Nq, Nk) matrix is invisible to the tracer of torch calls; the sandbox's
    measurement of the call's resident memory (kernel-counted, in a forked process) is not."""
    res = json.loads((graded / "attack_scores_in_numpy" / "results.json").read_text())
    eff = next(t for t in res["tests"] if t["name"].startswith("tiled_attention: [efficiency]"))
    assert eff["score"] == 0, eff
    grew = re.search(r"peak memory grew by ([\d,.]+) MiB \(measured by the grader's sandbox\);"
                     r" the limit for this case is ([\d.]+) MiB", eff["output"])
    assert grew, eff["output"]
    # the float64 scores of N = 2048, two heads, are 64 MiB; numpy holds two such matrices
    assert float(grew.group(1).replace(",", "")) > 2 * 64 > float(grew.group(2))
    for name in ("perfect_11", "perfect_13", "perfect_14", "perfect_15", "perfect_16"):
        tests = json.loads((graded / name / "results.json").read_text())["tests"]
        assert all(t["score"] == t["max_score"] for t in tests if "[efficiency]" in t["name"])


def test_the_sandbox_held(graded):
    for p in ESCAPES:
        assert not p.exists(), f"a submission wrote {p}"
    res = json.loads((graded / "write_outside" / "results.json").read_text())
    errors = " | ".join(e["error"] for e in res["extra_data"]["cell_errors"])
    for blocked in ("writing '/tmp/attention_grade_escape.txt'", "os.mkdir",
                    "subprocess.Popen", "os.system", "os.kill", "os.fork"):
        assert blocked in errors
    assert "notes_in_my_own_folder" not in errors  # writing in its own folder is allowed
    res = json.loads((graded / "import_solutions" / "results.json").read_text())
    errors = " | ".join(e["error"] for e in res["extra_data"]["cell_errors"])
    # isolated, the instructor's files are not there at all (the audit hook stays behind)
    assert "No module named 'instructor'" in errors and "No such file or directory" in errors
    assert "No module named 'attention_course.grading.instructor'" in errors
    assert "/cmdline' is not allowed" in errors
    out = (graded / "stdout_flood" / "output.txt").read_text()
    assert len(out) < 100_000 and "bytes in total" in out


def test_student_bundle_has_no_solutions_or_hidden_checks(tmp_path):
    report = build_student_bundle(tmp_path / "bundle", solutions_dir=SOLUTIONS,
                                  hidden_dir=HIDDEN)
    hidden_names = {c.name for cs in load_hidden_checks(HIDDEN).values() for c in cs}
    assert report.ok and report.solution_statements >= 20
    assert report.hidden_names == len(hidden_names) >= 10
    assert sorted(report.files) == sorted(
        [p.name for p in (ROOT / "exercises").glob("[0-9][0-9]_*.ipynb")] + ["README.md"])
    assert not (ROOT / "attention_lib" / "instructor").exists()
    assert main(["bundle", str(tmp_path / "b2"), "--solutions", str(SOLUTIONS),
                 "--hidden-checks", str(HIDDEN)]) == 0


@pytest.mark.parametrize("leak", ["solution", "hidden name", "marker"])
def test_bundle_scan_finds_planted_leaks(tmp_path, leak):
    bundle = tmp_path / "bundle"
    build_student_bundle(bundle, solutions_dir=SOLUTIONS, hidden_dir=HIDDEN)
    nb_path = bundle / "03_scoring_functions.ipynb"
    nb = json.loads(nb_path.read_text())
    planted = {"solution": "    q = query @ w_q.T  # (B, Nq, Hd)\n",
               "hidden name": "# eight heads of size 8, float32 [H9]\n",
               "marker": "# INSTRUCTOR" + " ONLY\n"}[leak]
    cell = next(c for c in nb["cells"] if c["metadata"].get("exercise") == "concat_score")
    src = "".join(cell["source"])
    cell["source"] = src.replace("    # YOUR CODE HERE\n", "    # YOUR CODE HERE\n" + planted)
    nb_path.write_text(json.dumps(nb))
    report = scan_for_leaks(bundle, solutions_dir=SOLUTIONS, hidden_dir=HIDDEN)
    assert not report.ok and any(str(nb_path) in p for p in report.problems), report.format()
    with pytest.raises(BundleLeakError):
        build_student_bundle(bundle / "again", exercises_dir=bundle, solutions_dir=SOLUTIONS,
                             hidden_dir=HIDDEN)


def test_garbage_from_the_child_becomes_error_outcomes():
    assert validate_outcomes("nope")[0]["status"] == "error"
    assert validate_outcomes([{"status": "ok", "output": object()}])[0]["output"] == {
        "__type__": "invalid"}
    assert validate_outcomes([{"status": "pwned"}])[0]["status"] == "error"
    big = torch.zeros(3, requires_grad=True)
    assert validate_outcomes([{"status": "ok", "output": big}])[0]["output"]["__type__"]
    lim = Limits(timeout=40).resolved()
    assert (lim.cell_timeout, lim.probe_timeout) == (10.0, 4.0)


def test_list_command(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "02_attention_pooling" in out and "masked_softmax" in out


def test_attacks_reach_nothing_and_leave_nothing(graded):
    """The attacks of make_submissions.attacks, graded in the bubblewrap sandbox."""
    for p in ESCAPES:
        assert not p.exists(), f"a submission wrote {p}"
    # nothing the sandboxes started is still running (their uids start at 61000)
    left = [line for line in os.popen("ps -eo uid=,args=").read().splitlines()
            if line.split() and line.split()[0].isdigit() and int(line.split()[0]) >= 61000]
    assert left == [], left
    out = (graded / "attack_read_through_dir_fd" / "output.txt").read_text()
    assert "found 0 files" in out and out.count("FileNotFoundError") == 3
    assert out.count("is gone") == 3  # the runner's inputs, the hidden checks' among them
    out = (graded / "attack_detached_process" / "output.txt").read_text()
    assert "spawned a process that holds the output pipe" in out  # the attack did run ...
    assert "processes beside the runner and init: 0" in out  # ... was ended after its cell
    rows = {r["submission"]: r for r in csv.DictReader((graded / "gradebook.csv").open())}
    assert float(rows["attack_detached_process"]["seconds"]) < TIMEOUT  # ... and stalled nothing
    res = json.loads((graded / "attack_library_in_a_thread" / "results.json").read_text())
    rules = [t for t in res["tests"] if "[rules]" in t["name"]
             and t["name"].startswith(("masked_softmax", "scaled_dot_product_attention"))]
    assert rules and all(t["score"] == 0 and "read from the notebook" in t["output"]
                         for t in rules)
    # the student's words stay quoted, after the grader's own count
    reason = json.loads((graded / "attack_own_reason" / "results.json").read_text())["output"]
    assert reason.startswith("0/39 checks passed; cell 5: RuntimeError \"")


def test_without_isolation_the_grader_refuses_unless_told(monkeypatch, tmp_path, capsys):
    from attention_course.grading import Grader, sandbox
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # no bwrap here
    with pytest.raises(sandbox.IsolationUnavailable, match="bubblewrap"):
        Grader(solutions_dir=SOLUTIONS, hidden_dir=HIDDEN, run_selftest=False)
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--solutions", str(SOLUTIONS),
                 "--no-selftest", "--quiet"]) == 2
    assert "cannot isolate submissions: bubblewrap (bwrap) is not installed" in \
        capsys.readouterr().err
    # said explicitly, it grades, and says what is lost
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--solutions", str(SOLUTIONS),
                 "--no-selftest", "--quiet", "--no-isolation"]) == 0
    assert "WITHOUT isolation" in capsys.readouterr().err
