"""Redraw every diagram into book/figures/ (``make figures``).

    python -m diagrams            # all of them
    python -m diagrams 04 07      # only those whose name starts with 04 or 07
    python -m diagrams --out DIR  # somewhere else (the tests compare with the committed ones)
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

import diagrams
from diagrams.style import OUT, registry, save


def load_all() -> dict:
    for mod in pkgutil.iter_modules(diagrams.__path__):
        if mod.name.startswith("ch"):
            importlib.import_module(f"diagrams.{mod.name}")
    return registry()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="draw only names starting with these")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    drawn = 0
    for name, draw in sorted(load_all().items()):
        if args.prefixes and not name.startswith(tuple(args.prefixes)):
            continue
        save(draw(), args.out / f"{name}.svg")
        drawn += 1
    print(f"{drawn} diagrams written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
