"""The rules tier, read from the submitted source on the judge's side.

A check of the rules tier says "build it from torch operations, do not call the library's
version" (``forbid=`` of :func:`~attention_course.checks.kinds.trace_check`). Inside the
sandbox a tracer watches the call, but the submission shares that process and can blind it
(a worker thread, ``sys.setprofile(None)``). So the grader also reads the code: starting
from the exercise's function, it follows the notebook's own functions and module-level names
that the function uses, and reports any forbidden function it finds referenced there, however
it was imported or aliased (``AF.masked_softmax``, ``from attention_lib import
masked_softmax as ms``, ``getattr(AF, "masked_softmax")``).

The reading is conservative: only what the exercise's code can reach counts, so a notebook
may still use the library elsewhere (in another exercise that allows it, or in a plot).
"""
from __future__ import annotations

import ast
from typing import Dict, Iterable, List, Sequence, Set, Tuple

__all__ = ["forbidden_uses", "UNVERIFIABLE"]

#: Constructs that let code hide what it calls from both readings (a computed attribute name,
#: a thread the tracer does not follow, switching the tracer off, executing built strings).
#: Reachable from an exercise under the rules tier, they fail it: honest attention code never
#: needs them.
UNVERIFIABLE = ("getattr", "__import__", "importlib", "eval", "exec", "compile", "threading",
                "_thread", "concurrent", "multiprocessing", "setprofile", "settrace", "gc",
                "__dict__", "__getattribute__", "vars", "globals")


def _parse(cells: Sequence[Tuple[int, str]]) -> List[ast.stmt]:
    body: List[ast.stmt] = []
    for _, src in cells:
        try:
            body.extend(ast.parse(src).body)
        except (SyntaxError, ValueError):  # magics, broken cells: the runner reports them
            continue
    return body


def _bound_names(stmt: ast.stmt) -> Set[str]:
    """Names a top-level statement binds (def, class, assignment, import)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    names: Set[str] = set()
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for t in targets:
            names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _reachable(body: List[ast.stmt], start: str) -> List[ast.stmt]:
    """The top-level statements the definition of ``start`` can reach through names."""
    by_name: Dict[str, List[ast.stmt]] = {}
    for stmt in body:
        for name in _bound_names(stmt):
            by_name.setdefault(name, []).append(stmt)
    seen: Set[int] = set()
    out: List[ast.stmt] = []
    todo = [start]
    while todo:
        name = todo.pop()
        for stmt in by_name.get(name, []):
            if id(stmt) in seen or (name == start and isinstance(stmt, (ast.Import,
                                                                        ast.ImportFrom))):
                continue  # an import of the exercise's own name is shadowed by the answer
            seen.add(id(stmt))
            out.append(stmt)
            todo.extend(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name))
    return out


def _constant_getattr(node: ast.AST, stmt: ast.stmt) -> bool:
    """True when this ``getattr`` name is called with a literal attribute name."""
    for call in ast.walk(stmt):
        if isinstance(call, ast.Call) and call.func is node:
            return len(call.args) >= 2 and isinstance(call.args[1], ast.Constant)
    return False


def _leaf_matches(text: str, pattern: Tuple[str, str]) -> bool:
    kind, value = pattern
    return value in text if kind == "op" else text == value


def forbidden_uses(cells: Sequence[Tuple[int, str]], symbol: str,
                   forbid: Iterable[str] = ()) -> List[str]:
    """The ``forbid`` entries that the code reachable from ``symbol`` refers to, and the
    :data:`UNVERIFIABLE` constructs it uses (labelled ``"<name> (hides what the code
    calls)"``).

    ``forbid`` holds dotted names (``"attention_lib.functional.masked_softmax"``) or
    ``"op:<text>"`` (a torch function whose name contains ``<text>``).
    """
    patterns = []
    for entry in forbid:
        if entry.startswith("op:"):
            patterns.append((entry, ("op", entry[3:])))
        else:
            patterns.append((entry, ("name", entry.rsplit(".", 1)[-1])))
    found: List[str] = []
    for stmt in _reachable(_parse(cells), symbol):
        for node in ast.walk(stmt):
            name = node.id if isinstance(node, ast.Name) else (
                node.attr if isinstance(node, ast.Attribute) else None)
            if isinstance(node, ast.alias):
                name = node.name.split(".")[0]
            if name in UNVERIFIABLE and not (name == "getattr" and _constant_getattr(node,
                                                                                     stmt)):
                label = f"{name} (hides what the code calls)"
                if label not in found:
                    found.append(label)
            texts: List[str] = []
            if isinstance(node, ast.Attribute):
                texts.append(node.attr)
            elif isinstance(node, ast.alias):
                texts.append(node.name.rsplit(".", 1)[-1])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value.rsplit(".", 1)[-1])
            for entry, pat in patterns:
                if entry not in found and any(_leaf_matches(t, pat) for t in texts):
                    found.append(entry)
    return found
