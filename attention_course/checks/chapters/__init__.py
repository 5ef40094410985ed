"""The exercises of each chapter: one module per exercise notebook, ``chNN_<name>.py``.

Each module builds an :class:`~attention_course.checks.core.Assignment` named after its
notebook (``exercises/NN_<name>.ipynb``) and registers it. Modules are discovered by name,
so adding a chapter's exercises is adding a module here: no list to edit.
"""
from __future__ import annotations

import importlib
import pkgutil
import re

_PATTERN = re.compile(r"^ch\d\d_\w+$")


def module_names() -> list:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if _PATTERN.match(m.name))


def load_all() -> None:
    """Import every chapter module (each registers its assignment on import)."""
    for name in module_names():
        importlib.import_module(f"{__name__}.{name}")
