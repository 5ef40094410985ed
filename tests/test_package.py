"""The package's public surface: every module's ``__all__`` is re-exported, without clashes."""
import importlib
import pkgutil

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
