"""The vocabulary of the exercise system: cases, checks, exercises, assignments, the registry.

An **assignment** is the exercise notebook of one chapter (``02_attention_pooling``). It holds
**exercises**, each a name that the notebook defines: a function with a fixed signature
(``kind="function"``), a predicted number (``"answer"``) or the result of an open-ended
experiment (``"experiment"``). Each exercise has a list of **checks**, ordered by tier::

    shape -> values -> masks -> edge cases -> gradients -> efficiency -> rules

A check is split in two halves so that the grader never has to trust the submission:

* the **probe** calls the submitted object on the check's cases and records what came back
  (output, gradients, peak memory, forbidden calls; see :mod:`attention_course.checks.probe`).
  In a notebook it runs in-process; when grading it runs inside the sandboxed child process;
* the **judge** compares what came back with the reference, computed from the same cases by
  trusted code (in the notebook process, or in the grader's parent process).

Chapter modules in :mod:`attention_course.checks.chapters` declare the exercises; adding a
chapter's exercises is adding one module there (plus its notebook and solutions).
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

__all__ = [
    "TIERS", "Case", "Verdict", "Mistake", "Check", "Exercise", "Assignment", "register",
    "get_exercise", "get_assignment", "assignments", "all_exercises",
]

#: The order in which checks run and are reported. ``rules`` checks the constraints an
#: exercise states in words (e.g. "do not call the library's version").
TIERS = ("shape", "values", "masks", "edge cases", "gradients", "efficiency", "rules")

#: The probes a check may ask for (implemented in :mod:`attention_course.checks.probe`).
PROBES = ("call", "grad", "trace", "value")


@dataclass
class Case:
    """One input of a check: ``fn(*args, **kwargs)``.

    ``wrt`` names the positional indices (ints) or keyword names (strs) of the tensors to
    differentiate with respect to in a ``grad`` probe, and ``upstream`` is the gradient
    arriving at the output (the probe backpropagates ``(out * upstream).sum()``).
    ``label`` says in words what the case is; ``meta`` carries anything the judge needs
    (e.g. the sizes) and never goes to the submission.
    """

    args: tuple = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    label: str = ""
    wrt: tuple = ()
    upstream: Optional[torch.Tensor] = None
    meta: Dict[str, Any] = field(default_factory=dict)
    _cache: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """The dtype the output should have: ``meta['dtype']``, else the first float tensor's."""
        if "dtype" in self.meta:
            return self.meta["dtype"]
        for a in list(self.args) + list(self.kwargs.values()):
            if isinstance(a, torch.Tensor) and a.is_floating_point():
                return a.dtype
        return None

    def to_wire(self) -> dict:
        """What the probe needs, as plain containers of tensors and numbers (no ``meta``)."""
        return {"args": list(self.args), "kwargs": dict(self.kwargs), "wrt": list(self.wrt),
                "upstream": self.upstream}


@dataclass
class Verdict:
    """The judge's decision on one check: passed or not, why, and possibly a hint."""

    passed: bool
    message: str = ""
    hint: Optional[str] = None
    details: List[str] = field(default_factory=list)


@dataclass
class Mistake:
    """A known-wrong variant of an exercise, used to recognise a student's mistake.

    ``fn`` takes the same arguments as the exercise and computes the wrong answer in float64;
    when a failing output matches it, the report shows ``hint``. ``applies(case)`` may restrict
    the cases where the variant is informative.
    """

    name: str
    hint: str
    fn: Callable[..., Any]
    applies: Optional[Callable[[Case], bool]] = None


@dataclass
class Check:
    """One check of one exercise: a tier, cases (built lazily, seeded), a probe and a judge.

    ``judge(exercise, cases, outcomes) -> Verdict`` runs in trusted code. ``cases`` is a
    zero-argument callable returning the list of :class:`Case` (deterministic: fixed seeds),
    or the list itself. ``options`` are passed to the probe (e.g. ``forbid``).
    """

    name: str
    tier: str
    cases: Any
    judge: Callable[["Exercise", List[Case], List[dict]], Verdict]
    probe: str = "call"
    points: float = 1.0
    options: Dict[str, Any] = field(default_factory=dict)
    hidden: bool = False
    id: str = ""

    def __post_init__(self):
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {self.tier!r}")
        if self.probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {self.probe!r}")
        self._lock = threading.Lock()
        self._built: Optional[List[Case]] = None

    def get_cases(self) -> List[Case]:
        """The cases, built once (thread-safe: the grader judges submissions in threads)."""
        with self._lock:
            if self._built is None:
                built = self.cases() if callable(self.cases) else self.cases
                self._built = [c if isinstance(c, Case) else Case(**c) for c in built]
            return self._built

    def as_hidden(self, id: str) -> "Check":
        """A copy marked hidden, with a unique ``id`` (the bundle check scans for it)."""
        new = dataclasses.replace(self, hidden=True, id=id)
        return new


@dataclass
class Exercise:
    """One exercise of an assignment.

    name: the name the notebook defines and that ``check(name, obj)`` takes.
    kind: ``"function"`` (implement this), ``"answer"`` (predict-then-verify: a number),
        or ``"experiment"`` (open-ended: its result is checked for plausibility only).
    signature: e.g. ``"masked_softmax(scores, mask=None)"``; the notebook stub and the
        instructor's solution must have exactly this signature.
    reference: for functions, a trusted implementation (float64) used by the judges.
    mistakes: known-wrong variants, tried in order when a check fails.
    forbid: dotted names of library functions the exercise must not call (``rules`` tier).
    """

    name: str
    kind: str
    summary: str
    checks: List[Check]
    signature: str = ""
    reference: Optional[Callable[..., Any]] = None
    mistakes: List[Mistake] = field(default_factory=list)
    forbid: Sequence[str] = ()
    assignment: str = ""

    def __post_init__(self):
        if self.kind not in ("function", "answer", "experiment"):
            raise ValueError(f"kind must be function, answer or experiment, got {self.kind!r}")
        order = {t: i for i, t in enumerate(TIERS)}
        self.checks = sorted(self.checks, key=lambda c: order[c.tier])

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)


@dataclass
class Assignment:
    """The exercises of one chapter, in notebook order. ``name`` is the notebook's stem."""

    name: str
    title: str
    exercises: List[Exercise]

    def __post_init__(self):
        for ex in self.exercises:
            ex.assignment = self.name
            for i, c in enumerate(ex.checks):
                if not c.id:
                    c.id = f"{self.name}/{ex.name}/{i}"

    def exercise(self, name: str) -> Exercise:
        for ex in self.exercises:
            if ex.name == name:
                return ex
        raise KeyError(f"assignment {self.name} has no exercise {name!r}; it has "
                       f"{[e.name for e in self.exercises]}")


# --------------------------------------------------------------------------- registry
_ASSIGNMENTS: Dict[str, Assignment] = {}
_EXERCISES: Dict[str, Exercise] = {}
_LOADED = False
_LOAD_LOCK = threading.RLock()


def register(assignment: Assignment) -> Assignment:
    """Add an assignment to the registry. Exercise names must be unique course-wide."""
    with _LOAD_LOCK:
        if assignment.name in _ASSIGNMENTS and _ASSIGNMENTS[assignment.name] is not assignment:
            raise ValueError(f"assignment {assignment.name!r} is registered twice")
        for ex in assignment.exercises:
            other = _EXERCISES.get(ex.name)
            if other is not None and other is not ex:
                raise ValueError(f"exercise name {ex.name!r} is used by {other.assignment} and "
                                 f"{assignment.name}: check(name, ...) names must be unique")
        _ASSIGNMENTS[assignment.name] = assignment
        for ex in assignment.exercises:
            _EXERCISES[ex.name] = ex
    return assignment


def _load() -> None:
    global _LOADED
    with _LOAD_LOCK:
        if not _LOADED:
            from . import chapters
            chapters.load_all()
            _LOADED = True


def assignments() -> Dict[str, Assignment]:
    """name -> :class:`Assignment`, for every chapter with exercises."""
    _load()
    return dict(sorted(_ASSIGNMENTS.items()))


def all_exercises() -> Dict[str, Exercise]:
    """name -> :class:`Exercise`, over all assignments."""
    _load()
    return dict(_EXERCISES)


def get_assignment(name: str) -> Assignment:
    _load()
    if name not in _ASSIGNMENTS:
        raise KeyError(f"no assignment {name!r}; known: {sorted(_ASSIGNMENTS)}")
    return _ASSIGNMENTS[name]


def get_exercise(name: str) -> Exercise:
    """The exercise called ``name``: ``"masked_softmax"``, or qualified by its assignment,
    ``"03_scoring_functions/masked_softmax"``."""
    _load()
    if "/" in name:
        a, _, e = name.partition("/")
        return get_assignment(a).exercise(e)
    if name not in _EXERCISES:
        import difflib
        close = difflib.get_close_matches(name, list(_EXERCISES), n=3)
        extra = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"no exercise called {name!r}{extra}")
    return _EXERCISES[name]
