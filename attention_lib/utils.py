"""Small helpers every chapter uses: seeding, device choice, importing d2l offline."""
from __future__ import annotations

import importlib
import os
import random
import sys
import types
import warnings

import numpy as np
import torch

__all__ = ["seed_everything", "get_device", "import_d2l", "progress"]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a ``torch.Generator`` seeded alike.

    Pass the returned generator to functions that take one, so that randomness stays
    explicit. Also makes cuDNN deterministic.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    os.environ["PYTHONHASHSEED"] = str(seed)
    return torch.Generator().manual_seed(seed)


def get_device(prefer: str = "cuda") -> torch.device:
    """``cuda`` when available (and preferred), else ``cpu``.

    ``ATTENTION_DEVICE=cpu`` in the environment forces a device (the GPU runner sets
    ``cuda`` and fails if it is missing).
    """
    forced = os.environ.get("ATTENTION_DEVICE")
    if forced:
        if forced.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"ATTENTION_DEVICE={forced} but CUDA is not available")
        return torch.device(forced)
    if prefer.startswith("cuda") and torch.cuda.is_available():
        return torch.device(prefer)
    return torch.device("cpu")


def import_d2l():
    """Import ``d2l.torch`` even where torchvision is missing; return the module.

    ``d2l.torch`` imports torchvision at the top for its image chapters. Attention code
    never needs it, and on CPU-only machines without a torchvision build the import would
    fail. When the real torchvision is missing, a placeholder module is registered first;
    any use of it raises ``ImportError`` naming the missing package. d2l's data loaders
    download from the internet: this course never calls them.
    """
    try:
        importlib.import_module("torchvision")
    except ImportError:
        _install_torchvision_placeholder()
    return importlib.import_module("d2l.torch")


class _Missing(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in {"transforms", "datasets", "models", "io", "ops"}:
            return _module(f"{self.__name__}.{name}")
        raise ImportError(f"{self.__name__}.{name} is a placeholder: torchvision is not "
                          f"installed (attention_lib.utils.import_d2l registered it so that "
                          f"d2l.torch imports)")


def _module(name: str) -> types.ModuleType:
    if name not in sys.modules:
        mod = _Missing(name)
        mod.__path__ = []  # a package, so `import torchvision.transforms` resolves
        mod.__attention_lib_placeholder__ = True
        sys.modules[name] = mod
    return sys.modules[name]


def _install_torchvision_placeholder() -> None:
    root = _module("torchvision")
    for sub in ("transforms", "datasets", "models", "io", "ops"):
        setattr(root, sub, _module(f"torchvision.{sub}"))


def progress(iterable, *, desc: str = "", enabled: bool = True, **kwargs):
    """``iterable`` with a progress bar for a person running a notebook or a script.

    A notebook bar when ipywidgets is installed, else a text bar (``tqdm.auto``'s warning
    about the missing widgets is silenced). No bar with ``enabled=False``, nor when the
    environment sets ``TQDM_DISABLE=1``, as ``make notebooks`` and ``make test-notebooks``
    do, so that the committed outputs of the book hold no progress bars.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
    if not enabled:
        kwargs["disable"] = True
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, desc=desc, **kwargs)
