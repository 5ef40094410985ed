"""The data behind the site's interactive figures (the explorers), computed by the library.

Each module ``chNN_*.py`` registers one explorer with :func:`explorer`: a function that runs
``attention_lib`` (or reads a committed benchmark result) and returns plain JSON data.
``python -m explorers`` (``make explorers``) writes ``book/explorers/<name>.json``; the site's
extension (``book/_ext/course_site.py``) serves each file to the page as a small script, and
``book/_ext/static/explorers/<kind>.js`` draws it. ``tests/test_explorer_data.py`` checks
every committed file against a fresh run, ``tests/test_explorer_<name>.py`` against the
library or an independent computation; ``tests/site/test_explorers.py`` and
``tests/site/test_browser_<name>.py`` move each explorer's controls in Chromium and compare
what is drawn with the JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

OUT = Path(__file__).resolve().parents[1] / "book" / "explorers"

_REGISTRY: dict[str, Callable[[], dict]] = {}


def explorer(name: str):
    """Register ``fn`` as the data of the explorer ``book/explorers/<name>.json``."""
    def register(fn: Callable[[], dict]):
        if name in _REGISTRY:
            raise ValueError(f"explorer name {name!r} is used twice")
        _REGISTRY[name] = fn
        return fn
    return register


def registry() -> dict[str, Callable[[], dict]]:
    return dict(_REGISTRY)


def rounded(x, digits: int = 4):
    """``x`` (numbers, tensors, arrays, nested lists and dicts) as JSON-ready Python values,
    floats rounded to ``digits`` significant digits so that the files stay small and
    byte-identical from run to run. NaN and infinities are refused: JSON has no word for
    them."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"explorer data must be finite, got {x}")
        return 0.0 if x == 0 else float(f"{x:.{digits}g}")
    raise TypeError(f"explorer data: cannot write a {type(x).__name__}")


def dumps(data: dict) -> str:
    """The committed text of one explorer's data: sorted keys, no spaces, one final newline."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def save(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(data))
    return path


def load(name: str, folder: Path = OUT) -> dict:
    return json.loads((folder / f"{name}.json").read_text())
