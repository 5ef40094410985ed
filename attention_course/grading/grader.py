"""Grade a folder of submitted exercise notebooks.

For each ``*.ipynb`` under the folder (in parallel, ``jobs`` at a time):

1. read it defensively and find its assignment (file name, else notebook metadata);
2. run it in the sandbox (:mod:`~attention_course.grading.sandbox`): execute every code cell,
   then probe each exercise with the inputs of its public and hidden checks;
3. judge the outcomes here, in the parent, against the references: one point per check
   (partial credit), a one-line reason for the whole submission.

Writes ``OUT/<submission>/results.json`` (Gradescope's format), ``OUT/gradebook.csv``,
``OUT/summary.txt`` (the table also printed at the end) and ``OUT/<submission>/output.txt``
(what the notebook printed, head and tail). A broken, hostile or endless submission gets a
score and a reason; nothing it does stops the others from being graded.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..checks.core import Assignment, Check, Exercise, assignments
from ..checks.report import CheckResult, judge_check
from .instructor import find_instructor_dirs, load_hidden_checks, load_solutions, selftest
from .notebook import detect_assignment, read_submission
from .rules import forbidden_uses
from .sandbox import IsolationUnavailable, Limits, RunResult, isolation, run_in_sandbox

__all__ = ["SubmissionResult", "Grader", "grade_folder"]


@dataclass
class SubmissionResult:
    submission: str
    path: str
    assignment: Optional[str]
    score: float
    max_score: float
    status: str  # graded | timeout | crashed | invalid | error
    reason: str
    seconds: float = 0.0
    results: List[CheckResult] = field(default_factory=list)
    exercise_scores: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    cell_errors: List[dict] = field(default_factory=list)
    output: str = ""

    def gradescope(self) -> dict:
        """The Gradescope ``results.json`` of this submission."""
        return {
            "score": round(self.score, 4), "max_score": self.max_score,
            "execution_time": round(self.seconds, 2), "output": self.reason,
            "visibility": "visible", "stdout_visibility": "hidden",
            "tests": [{"name": r.title, "score": r.score, "max_score": r.points,
                       "output": r.explanation(), "tags": [r.tier],
                       "visibility": "after_published" if r.hidden else "visible"}
                      for r in self.results],
            "extra_data": {"assignment": self.assignment, "status": self.status,
                           "cell_errors": self.cell_errors[:20]},
        }


def _submission_id(path: Path, root: Path, taken: set) -> str:
    rel = path.relative_to(root).with_suffix("")
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(rel.parts)).strip("._") or "submission"
    sid, i = base, 2
    while sid in taken:
        sid, i = f"{base}-{i}", i + 1
    taken.add(sid)
    return sid


def _where(progress: dict, cells: Dict[int, str], symbols: Sequence[str]) -> str:
    """Where the notebook was, in the grader's own words: the child reports only a phase and
    a number or name, which are checked against the submission and the assignment."""
    phase = progress.get("phase")
    if phase == "cell" and progress.get("cell") in cells:
        number = progress["cell"]
        line = _first_code_line(cells[number])
        return f"cell {number}" + (f" ({json.dumps(line, ensure_ascii=True)})" if line else "")
    if phase == "probe":
        symbol = progress.get("symbol")
        return f"the checks of `{symbol}`" if symbol in symbols else "the checks"
    if phase == "startup":
        return "start-up"
    return "the end"


def _first_code_line(src: str) -> str:
    for line in src.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:37] + "..." if len(line) > 40 else line
    return ""


def _short(text: str, n: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _cell_number(n) -> str:
    return str(n) if isinstance(n, int) and not isinstance(n, bool) else "?"


def _quoted_error(error) -> str:
    """A cell's error as the reason column shows it: the exception's type name (identifier
    characters only), then what the submission's exception said, as quoted student text,
    truncated and escaped: a submission cannot write its own reason."""
    text = str(error or "")
    if re.fullmatch(r"interrupted after [0-9.]+ s \(the time limit of one cell\)", text):
        return text  # the runner's own words (forging them gains nothing)
    kind, _, message = text.partition(": ")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,40}", kind):
        kind, message = "error", text
    message = " ".join(message.split())
    if len(message) > 50:
        message = message[:47] + "..."
    return f"{kind} {json.dumps(message, ensure_ascii=True)}" if message else kind


class Grader:
    """Grades submissions against the registry's assignments plus hidden checks.

    Build once (it loads the hidden checks, runs the solutions' self-test, and prepares the
    inputs of every check), then call :meth:`grade_folder` or :meth:`grade_one`.
    """

    def __init__(self, *, solutions_dir=None, hidden_dir=None, limits: Optional[Limits] = None,
                 run_selftest: bool = True, log=print, isolate: bool = True):
        if isolate:
            why = isolation()
            if why is not None:
                raise IsolationUnavailable(f"cannot isolate submissions: {why}. Install "
                                           f"bubblewrap, or grade trusted notebooks with "
                                           f"isolate=False (--no-isolation)")
        self.isolate = isolate
        self.solutions_dir, self.hidden_dir = find_instructor_dirs(solutions_dir, hidden_dir)
        self.limits = limits or Limits()
        self.log = log
        self.hidden = load_hidden_checks(self.hidden_dir)
        self.assignments: Dict[str, Assignment] = assignments()
        self._plans: Dict[str, Tuple[List[Tuple[Exercise, Check]], bytes]] = {}
        self._lock = threading.Lock()
        if run_selftest and self.solutions_dir is not None:
            bad = selftest(load_solutions(self.solutions_dir), self.hidden)
            if bad:
                lines = "\n".join(r.format() for r in bad)
                raise RuntimeError(f"the instructor's solutions fail their own checks; fix the "
                                   f"checks before grading:\n{lines}")

    # ------------------------------------------------------------------ plans
    def plan(self, name: str) -> Tuple[List[Tuple[Exercise, Check]], bytes]:
        """The (exercise, check) pairs of an assignment and the serialized probe inputs."""
        with self._lock:
            if name not in self._plans:
                a = self.assignments[name]
                pairs = [(ex, c) for ex in a.exercises
                         for c in list(ex.checks) + self.hidden.get(ex.name, [])]
                tasks = [{"id": c.id, "symbol": ex.name, "probe": c.probe,
                          "options": {"forbid": list(c.options.get("forbid", ()))},
                          "cases": [case.to_wire() for case in c.get_cases()]}
                         for ex, c in pairs]
                buf = io.BytesIO()
                torch.save(tasks, buf)
                self._plans[name] = (pairs, buf.getvalue())
            return self._plans[name]

    def max_score(self, name: str) -> float:
        return sum(c.points for _, c in self.plan(name)[0])

    # ------------------------------------------------------------------ one submission
    def grade_one(self, path: Path, sid: str, *, assignment: Optional[str] = None,
                  deny_read: Sequence[str] = (), keep: bool = False) -> SubmissionResult:
        start = time.perf_counter()
        try:
            res = self._grade_one(path, sid, assignment, deny_read, keep)
        except Exception as e:  # noqa: BLE001 - the folder must go on
            res = SubmissionResult(sid, str(path), assignment, 0.0, 0.0, "error",
                                   _short(f"grader error: {type(e).__name__}: {e}"))
        res.seconds = time.perf_counter() - start
        return res

    def _grade_one(self, path, sid, forced, deny_read, keep) -> SubmissionResult:
        nb, cells, problem = read_submission(path)
        name = detect_assignment(path, nb, list(self.assignments), forced)
        if problem or name is None:
            reason = problem or ("cannot tell which exercise notebook this is: keep the file "
                                 "name NN_<chapter>.ipynb or the notebook's metadata")
            max_score = self.max_score(name) if name else 0.0
            return SubmissionResult(sid, str(path), name, 0.0, max_score, "invalid", reason)
        pairs, blob = self.plan(name)
        run = run_in_sandbox(cells, blob, len(pairs), self.limits, deny_read=deny_read,
                             keep=keep, isolate=self.isolate)
        stop_note = self._stop_note(run, dict(cells), [ex.name for ex, _ in pairs])
        results = []
        for (ex, chk), outcomes in zip(pairs, run.outcomes):
            if outcomes is None:
                results.append(CheckResult(ex.name, chk.id, chk.name, chk.tier, False,
                                           chk.points, f"not checked: {stop_note or 'no result'}",
                                           hidden=chk.hidden))
            else:
                results.append(self._read_rules(judge_check(ex, chk, outcomes), ex, chk,
                                                cells))
        score = sum(r.score for r in results)
        max_score = sum(r.points for r in results)
        per_ex: Dict[str, Tuple[float, float]] = {}
        for r in results:
            s, m = per_ex.get(r.exercise, (0.0, 0.0))
            per_ex[r.exercise] = (s + r.score, m + r.points)
        status = "graded" if run.finished else ("timeout" if run.timed_out else "crashed")
        reason = self._reason(results, run, stop_note, per_ex)
        out = run.output_head + (
            f"\n... [{run.output_bytes:,} bytes in total] ...\n" + run.output_tail
            if run.output_tail else "")
        return SubmissionResult(sid, str(path), name, score, max_score, status, reason,
                                results=results, exercise_scores=per_ex,
                                cell_errors=run.cell_errors, output=out)

    @staticmethod
    def _read_rules(res: CheckResult, ex: Exercise, chk: Check, cells) -> CheckResult:
        """A watched check (rules and efficiency tiers: the in-sandbox tracer looks at the
        call) also fails when the code the exercise can reach refers to a forbidden function
        or hides what it does (a thread, a computed name): the tracer can be blinded, the
        source cannot (:mod:`~attention_course.grading.rules`)."""
        if not res.passed or chk.probe != "trace":
            return res
        used = forbidden_uses(cells, ex.name, chk.options.get("forbid", ()))
        if not used:
            return res
        return dataclasses.replace(
            res, passed=False, message=f"the code of `{ex.name}` uses {', '.join(used[:3])} "
                                       f"(read from the notebook)",
            hint="build it from torch operations, in the calling thread: the library's version "
                 "is what your code is compared with")

    def _stop_note(self, run: RunResult, cells: Dict[int, str], symbols: Sequence[str]) -> str:
        if run.finished:
            return ""
        where = _where(run.progress, cells, symbols)
        if run.timed_out:
            return f"stopped at the {self.limits.timeout:g} s time limit during {where}"
        rc = run.returncode
        if rc is not None and rc < 0:
            import signal as _s
            try:
                sig = _s.Signals(-rc).name
            except ValueError:
                sig = f"signal {-rc}"
            why = {"SIGXFSZ": " (file size limit)", "SIGXCPU": " (CPU time limit)",
                   "SIGKILL": " (killed: out of memory?)", "SIGSEGV": " (crash)"}.get(sig, "")
            return f"the notebook process died with {sig}{why} during {where}"
        return f"the notebook ended the Python process (exit code {rc}) during {where}"

    def _reason(self, results, run, stop_note, per_ex) -> str:
        n, passed = len(results), sum(r.passed for r in results)
        parts = [f"all {n} checks passed" if passed == n else f"{passed}/{n} checks passed"]
        if stop_note:
            parts.append(stop_note)
        if run.cell_errors:
            e = run.cell_errors[0]
            more = f" (and {len(run.cell_errors) - 1} more)" if len(run.cell_errors) > 1 else ""
            parts.append(f"cell {_cell_number(e.get('cell'))}: {_quoted_error(e.get('error'))}"
                         f"{more}")
        if passed < n and not stop_note:
            msgs = [r.message for r in results if not r.passed]
            if all("not implemented yet" in m or "not answered yet" in m or "not done yet" in m
                   for m in msgs):
                parts.append("nothing implemented yet (stubs)")
            else:
                worst = [e for e, (s, m) in per_ex.items() if s < m]
                parts.append("lost points in " + ", ".join(worst[:4]) +
                             (" ..." if len(worst) > 4 else ""))
        return _short("; ".join(parts), 200)

    # ------------------------------------------------------------------ a folder
    def grade_folder(self, submissions_dir, out_dir, *, jobs: Optional[int] = None,
                     assignment: Optional[str] = None, progress: bool = True,
                     keep: bool = False) -> List[SubmissionResult]:
        root, out = Path(submissions_dir).resolve(), Path(out_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        paths = sorted(p for p in root.rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts and p.is_file()
                       and not p.resolve().is_relative_to(out))
        taken: set = set()
        ids = [_submission_id(p, root, taken) for p in paths]
        deny = [str(root), str(out)] + [str(d) for d in (self.solutions_dir, self.hidden_dir)
                                        if d is not None]
        jobs = jobs or min(2, os.cpu_count() or 1)
        start = time.perf_counter()
        results: List[SubmissionResult] = []
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
        bar = tqdm(total=len(paths), desc="grading", unit="nb", file=sys.stderr,
                   disable=not progress) if tqdm else None
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futs = {pool.submit(self.grade_one, p, sid, assignment=assignment, deny_read=deny,
                                keep=keep): sid for p, sid in zip(paths, ids)}
            for fut in as_completed(futs):
                res = fut.result()
                results.append(res)
                _write_submission(out, res)
                if bar is not None:
                    bar.set_postfix_str(f"{res.submission[:24]}: {res.score:g}/{res.max_score:g}")
                    bar.update(1)
        if bar is not None:
            bar.close()
        results.sort(key=lambda r: r.submission)
        wall = time.perf_counter() - start
        _write_gradebook(out / "gradebook.csv", results)
        table = summary_table(results, wall, jobs, self)
        (out / "summary.txt").write_text(table + "\n")
        if progress:
            self.log(table)
        return results


# --------------------------------------------------------------------------- outputs
def _write_submission(out: Path, res: SubmissionResult) -> None:
    d = out / res.submission
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(res.gradescope(), indent=1))
    (d / "output.txt").write_text(res.output)


def _write_gradebook(path: Path, results: List[SubmissionResult]) -> None:
    exercises: List[str] = []
    for r in results:
        for e in r.exercise_scores:
            if e not in exercises:
                exercises.append(e)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "assignment", "score", "max_score", "percent", "status",
                    "reason", "seconds"] + exercises)
        for r in results:
            pct = 100 * r.score / r.max_score if r.max_score else 0.0
            w.writerow([r.submission, r.assignment or "", f"{r.score:g}", f"{r.max_score:g}",
                        f"{pct:.1f}", r.status, r.reason, f"{r.seconds:.1f}"]
                       + [(f"{r.exercise_scores[e][0]:g}" if e in r.exercise_scores else "")
                          for e in exercises])


def summary_table(results: List[SubmissionResult], wall: float, jobs: int,
                  grader: Optional[Grader] = None) -> str:
    w = max([len(r.submission) for r in results] + [10])
    lines = [f"{'submission':<{w}}  {'score':>9}  {'status':<8}  reason",
             f"{'-' * w}  {'-' * 9}  {'-' * 8}  {'-' * 40}"]
    for r in results:
        score = f"{r.score:g}/{r.max_score:g}"
        lines.append(f"{r.submission:<{w}}  {score:>9}  {r.status:<8}  {r.reason}")
    n = len(results)
    mean = (sum(r.score / r.max_score for r in results if r.max_score) / n * 100) if n else 0
    lines.append(f"{n} submission{'s' if n != 1 else ''} graded in {wall:.1f} s "
                 f"({jobs} at a time); mean score {mean:.0f}%")
    if grader is not None:
        n_hidden = sum(len(v) for v in grader.hidden.values())
        lines.append(f"hidden checks: {n_hidden} from {grader.hidden_dir}" if n_hidden else
                     "hidden checks: none found (public checks only)")
    return "\n".join(lines)


def grade_folder(submissions_dir, out_dir, *, solutions_dir=None, hidden_dir=None,
                 timeout: float = 120.0, memory_mb: int = 4096,
                 cell_timeout: Optional[float] = None, probe_timeout: Optional[float] = None,
                 jobs: Optional[int] = None, assignment: Optional[str] = None,
                 progress: bool = True, keep: bool = False,
                 run_selftest: bool = True, isolate: bool = True) -> List[SubmissionResult]:
    """Grade every notebook under ``submissions_dir``; write the results under ``out_dir``.
    ``isolate=False`` runs the notebooks without bubblewrap (trusted notebooks only)."""
    grader = Grader(solutions_dir=solutions_dir, hidden_dir=hidden_dir,
                    limits=Limits(timeout=timeout, memory_mb=memory_mb,
                                  cell_timeout=cell_timeout, probe_timeout=probe_timeout),
                    run_selftest=run_selftest, isolate=isolate)
    return grader.grade_folder(submissions_dir, out_dir, jobs=jobs, assignment=assignment,
                               progress=progress, keep=keep)
