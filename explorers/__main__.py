"""Recompute every explorer's data into book/explorers/ (``make explorers``).

    python -m explorers            # all of them
    python -m explorers 07 15      # only those whose name starts with 07 or 15
    python -m explorers --out DIR  # somewhere else (the tests compare with the committed ones)
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

import explorers
from explorers import OUT, registry, save


def load_all() -> dict:
    for mod in pkgutil.iter_modules(explorers.__path__):
        if mod.name.startswith("ch"):
            importlib.import_module(f"explorers.{mod.name}")
    return registry()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="compute only names starting with these")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    written = 0
    for name, compute in sorted(load_all().items()):
        if args.prefixes and not name.startswith(tuple(args.prefixes)):
            continue
        path = save(compute(), args.out / f"{name}.json")
        print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB")
        written += 1
    print(f"{written} explorer data files written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
