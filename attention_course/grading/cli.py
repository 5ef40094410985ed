"""Command line: ``attention-grade`` (or ``python -m attention_course.grading``).

::

    attention-grade SUBMISSIONS_DIR --out DIR [--solutions DIR] [--hidden-checks DIR]
                    [--timeout S] [--memory-mb M] [--cell-timeout S] [--probe-timeout S]
                    [--jobs N] [--assignment NAME]
    attention-grade bundle OUT_DIR [--exercises DIR] [--solutions DIR] [--hidden-checks DIR]
    attention-grade selftest [--solutions DIR] [--hidden-checks DIR]
    attention-grade list

``grade`` may also be spelled out: ``attention-grade grade SUBMISSIONS_DIR --out DIR``.
Exit status: 0 when every submission got a score (whatever the scores), 2 on a usage or
set-up error (e.g. the solutions fail their own checks), 1 when a bundle leaks.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

__all__ = ["main"]

_COMMANDS = ("grade", "bundle", "selftest", "list")


def _instructor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solutions", metavar="DIR", help="reference solutions (default: "
                   "$ATTENTION_SOLUTIONS_DIR, else ./instructor/solutions)")
    p.add_argument("--hidden-checks", metavar="DIR", help="hidden checks (default: "
                   "$ATTENTION_HIDDEN_CHECKS_DIR, else <solutions>/../hidden_checks)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attention-grade", description="Grade exercise notebooks "
                                "of the attention course, or build the student bundle.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks")
    g.add_argument("submissions", metavar="SUBMISSIONS_DIR")
    g.add_argument("--out", required=True, metavar="DIR", help="where to write gradebook.csv, "
                   "summary.txt and <submission>/results.json")
    _instructor_args(g)
    g.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="wall-time limit per notebook in seconds (default 120)")
    g.add_argument("--memory-mb", type=int, default=4096, metavar="M",
                   help="memory a notebook may allocate, in MiB, on top of the libraries "
                        "the grader loads (default 4096)")
    g.add_argument("--cell-timeout", type=float, default=None, metavar="S",
                   help="a cell running longer is interrupted and the notebook goes on "
                        "(default: timeout / 4)")
    g.add_argument("--probe-timeout", type=float, default=None, metavar="S",
                   help="a check whose calls run longer fails (default: timeout / 10)")
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="notebooks graded at the same time (default: min(2, CPUs))")
    g.add_argument("--assignment", metavar="NAME", help="grade every notebook as this "
                   "assignment (default: from the file name or the notebook's metadata)")
    g.add_argument("--keep-sandboxes", action="store_true", help="keep the temporary folders")
    g.add_argument("--no-selftest", action="store_true",
                   help="skip checking the solutions against the checks first")
    g.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    g.add_argument("--no-isolation", action="store_true",
                   help="run notebooks without bubblewrap (trusted notebooks only; prints "
                        "what is lost)")
    b = sub.add_parser("bundle", help="build the student bundle and prove it has no solutions")
    b.add_argument("out", metavar="OUT_DIR")
    b.add_argument("--exercises", metavar="DIR", help="exercise notebooks (default: exercises/)")
    _instructor_args(b)
    s = sub.add_parser("selftest", help="run every public and hidden check on the solutions")
    _instructor_args(s)
    sub.add_parser("list", help="list the assignments, exercises and checks")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "grade")  # attention-grade SUBMISSIONS_DIR --out DIR
    args = _parser().parse_args(argv)

    if args.command == "list":
        from ..checks import assignments
        for name, a in assignments().items():
            print(f"{name}: {a.title}")
            for ex in a.exercises:
                print(f"  {ex.name:<30} {ex.kind:<10} {len(ex.checks)} public checks  "
                      f"{ex.signature}")
        return 0

    if args.command == "selftest":
        from .instructor import find_instructor_dirs, load_hidden_checks, load_solutions, selftest
        sol, hid = find_instructor_dirs(args.solutions, args.hidden_checks)
        if sol is None:
            print("no solutions folder found", file=sys.stderr)
            return 2
        hidden = load_hidden_checks(hid)
        bad = selftest(load_solutions(sol), hidden)
        for rep in bad:
            print(rep.format())
        n_hidden = sum(len(v) for v in hidden.values())
        print(f"selftest: {'FAILED' if bad else 'ok'}: solutions in {sol}, {n_hidden} hidden "
              f"checks from {hid}")
        return 2 if bad else 0

    if args.command == "bundle":
        from .bundle import BundleLeakError, build_student_bundle
        try:
            report = build_student_bundle(args.out, exercises_dir=args.exercises,
                                          solutions_dir=args.solutions,
                                          hidden_dir=args.hidden_checks)
        except BundleLeakError as e:
            print(e, file=sys.stderr)
            return 1
        except OSError as e:  # an output folder that is not a bundle, no notebooks, ...
            print(f"attention-grade bundle: {e}", file=sys.stderr)
            return 2
        print(report.format())
        return 0

    from .grader import Grader
    from .sandbox import NO_ISOLATION_WARNING, Limits
    if args.no_isolation:
        print(f"attention-grade: {NO_ISOLATION_WARNING}", file=sys.stderr)
    try:
        grader = Grader(solutions_dir=args.solutions, hidden_dir=args.hidden_checks,
                        limits=Limits(timeout=args.timeout, memory_mb=args.memory_mb,
                                      cell_timeout=args.cell_timeout,
                                      probe_timeout=args.probe_timeout),
                        run_selftest=not args.no_selftest, isolate=not args.no_isolation)
    except (RuntimeError, ValueError) as e:
        print(f"attention-grade: {e}", file=sys.stderr)
        return 2
    grader.grade_folder(args.submissions, args.out, jobs=args.jobs, assignment=args.assignment,
                        progress=not args.quiet, keep=args.keep_sandboxes)
    print(f"wrote {args.out}/gradebook.csv, summary.txt and one results.json per submission",
          file=sys.stderr)
    return 0
