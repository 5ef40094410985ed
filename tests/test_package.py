"""The package's public surface: every module's ``__all__`` is re-exported, without clashes."""
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import attention_lib as al


def test_every_public_name_resolves():
    missing = [n for n in al.__all__ if not hasattr(al, n)]
    assert not missing, f"__all__ names that do not resolve: {missing}"


def test_modules_are_reexported_without_clashes():
    seen = {}
    for info in pkgutil.iter_modules(al.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        mod = importlib.import_module(f"attention_lib.{info.name}")
        assert hasattr(mod, "__all__"), f"attention_lib.{info.name} has no __all__"
        for name in mod.__all__:
            obj = getattr(mod, name)
            if name in seen:
                assert seen[name][1] is obj, (f"{name} means different things in "
                                              f"{seen[name][0]} and {info.name}")
            seen[name] = (info.name, obj)
            assert getattr(al, name) is obj, f"attention_lib.{name} is not {info.name}.{name}"


def test_efficient_modules_are_reexported_without_clashes():
    """attention_lib.efficient star-exports its family modules: no name may mean two things
    (a later star import would silently replace an earlier one)."""
    import attention_lib.efficient as eff
    seen = {}
    for info in pkgutil.iter_modules(eff.__path__):
        mod = importlib.import_module(f"attention_lib.efficient.{info.name}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            assert name not in seen or seen[name][1] is obj, (
                f"{name} means different things in efficient.{seen[name][0]} and {info.name}")
            seen[name] = (info.name, obj)
    missing = [n for n in eff.__all__ if not hasattr(eff, n)]
    assert not missing, missing
    assert len(eff.__all__) == len(set(eff.__all__))
    for name in ("clustered", "sinkhorn", "lowrank", "zoo"):  # modules, not shadowed by functions
        assert getattr(eff, name).__name__ == f"attention_lib.efficient.{name}"


def test_the_library_imports_no_course_tooling():
    """attention_lib is for readers: importing it loads neither the checks nor the grader,
    and no module of it imports the tooling package."""
    code = ("import sys, attention_lib; "
            "print(sorted(m for m in sys.modules if m.startswith('attention_course')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out
    lib = Path(al.__file__).parent
    offenders = [str(p.relative_to(lib)) for p in lib.rglob("*.py")
                 if re.search(r"^\s*(from|import) attention_course", p.read_text(), re.M)]
    assert offenders == [], offenders
