"""The rules tier read from the source (attention_course.grading.rules): no false alarm on any
reference solution, and the ways to hide a call to the library's version are found."""
from __future__ import annotations

from pathlib import Path

import pytest

from attention_course.checks import assignments
from attention_course.grading.instructor import load_hidden_checks
from attention_course.grading.rules import forbidden_uses

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = load_hidden_checks(ROOT / "instructor" / "hidden_checks")
# every watched check (rules and efficiency tiers) is also read from the source
RULES = [(a.name, ex.name, tuple(c.options.get("forbid", ())))
         for a in assignments().values() for ex in a.exercises
         for c in list(ex.checks) + HIDDEN.get(ex.name, []) if c.probe == "trace"]
MS = ("attention_lib.functional.masked_softmax",)


@pytest.mark.parametrize("assignment,symbol,forbid", RULES,
                         ids=[f"{s}-{i}" for i, (_, s, _) in enumerate(RULES)])
def test_reference_solutions_raise_no_alarm(assignment, symbol, forbid):
    source = (ROOT / "instructor" / "solutions" / f"ch{assignment}.py").read_text()
    assert forbidden_uses([(1, source)], symbol, forbid) == []


def test_there_are_rules_to_read():
    assert sum(bool(forbid) for _, _, forbid in RULES) >= 20


@pytest.mark.parametrize("cells", [
    # a module alias, used in a helper the exercise calls, from a worker thread
    ["from attention_lib import functional as AF\nimport threading",
     "def helper(s, m):\n    box = {}\n    t = threading.Thread(target=lambda: "
     "box.update(r=AF.masked_softmax(s, m)))\n    t.start()\n    t.join()\n"
     "    return box['r']",
     "def masked_softmax(scores, mask=None):\n    return helper(scores, mask)"],
    # imported under another name, through a module-level alias
    ["from attention_lib import masked_softmax as ms\nimpl = ms",
     "def masked_softmax(scores, mask=None):\n    return impl(scores, mask)"],
    # a computed attribute name
    ["import attention_lib as al\nf = getattr(al, 'masked_' + 'softmax')",
     "def masked_softmax(scores, mask=None):\n    return f(scores, mask)"],
    # the tracer switched off inside the answer
    ["import sys\nimport attention_lib",
     "def masked_softmax(scores, mask=None):\n    sys.setprofile(None)\n"
     "    return attention_lib.masked_softmax(scores, mask)"],
])
def test_hidden_calls_are_found(cells):
    assert forbidden_uses(list(enumerate(cells)), "masked_softmax", MS)


def test_the_library_elsewhere_is_allowed():
    cells = ["import torch\nfrom attention_lib import masked_softmax as lib_ms",
             "def masked_softmax(scores, mask=None):\n"
             "    s = scores if mask is None else scores.masked_fill(~mask, float('-inf'))\n"
             "    return torch.nan_to_num(torch.softmax(s, -1))",
             "def compare(s):\n    return lib_ms(s) - masked_softmax(s)"]
    assert forbidden_uses(list(enumerate(cells)), "masked_softmax", MS) == []
