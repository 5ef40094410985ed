"""utils (seeding, device choice, importing d2l offline) and plot (heatmaps, curves)."""
from __future__ import annotations

import importlib
import os
import random
import sys

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from attention_lib import plot, utils


# --------------------------------------------------------------------------- seeding
def _draw(gen: torch.Generator):
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
            torch.rand(3, generator=gen).tolist())


@pytest.fixture
def restore_rng(monkeypatch):
    """seed_everything changes global state: put it back after the test."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    det, bench = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    yield
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(th)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det, bench


def test_seed_everything_reproducible(restore_rng):
    first = _draw(utils.seed_everything(7))
    second = _draw(utils.seed_everything(7))
    assert first == second
    other = _draw(utils.seed_everything(8))
    assert all(a != b for a, b in zip(first, other))


def test_seed_everything_generator_and_flags(restore_rng):
    gen = utils.seed_everything(3)
    assert isinstance(gen, torch.Generator)
    assert torch.equal(torch.rand(5, generator=gen),
                       torch.rand(5, generator=torch.Generator().manual_seed(3)))
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["PYTHONHASHSEED"] == "3"


# --------------------------------------------------------------------------- devices
def test_get_device_env_forces_cpu(monkeypatch):
    monkeypatch.setenv("ATTENTION_DEVICE", "cpu")
    assert utils.get_device() == torch.device("cpu")
    assert utils.get_device("cuda") == torch.device("cpu")


def test_get_device_env_any_device(monkeypatch):
    monkeypatch.setenv("ATTENTION_DEVICE", "meta")
    assert utils.get_device() == torch.device("meta")


def test_get_device_default(monkeypatch):
    monkeypatch.delenv("ATTENTION_DEVICE", raising=False)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert utils.get_device().type == want
    assert utils.get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_env_cuda_without_cuda_fails(monkeypatch):
    monkeypatch.setenv("ATTENTION_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="ATTENTION_DEVICE=cuda but CUDA is not available"):
        utils.get_device()


# --------------------------------------------------------------------------- d2l
def test_import_d2l_gives_the_attention_api():
    d2l = utils.import_d2l()
    assert d2l.__name__ == "d2l.torch"
    for name in ("masked_softmax", "AdditiveAttention", "DotProductAttention",
                 "MultiHeadAttention", "PositionalEncoding"):
        assert callable(getattr(d2l, name))
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert torch.allclose(d2l.masked_softmax(x.clone(), torch.tensor([2])),
                          torch.tensor([[[1 / (1 + np.e), np.e / (1 + np.e), 0.0]]]))
    assert utils.import_d2l() is d2l  # cached, not re-imported


def test_torchvision_placeholder_raises_on_use():
    utils.import_d2l()
    tv = sys.modules["torchvision"]
    if not getattr(tv, "__attention_lib_placeholder__", False):
        pytest.skip("the real torchvision is installed")
    from torchvision import transforms  # the submodule resolves ...
    with pytest.raises(ImportError, match=r"torchvision\.transforms\.ToTensor is a placeholder: "
                                          r"torchvision is not installed"):
        transforms.ToTensor  # noqa: B018 ... but using anything in it fails, naming what is missing
    with pytest.raises(ImportError, match=r"torchvision\.datasets\.FashionMNIST"):
        importlib.import_module("torchvision.datasets").FashionMNIST  # noqa: B018
    with pytest.raises(ImportError, match=r"torchvision\.read_image"):
        tv.read_image  # noqa: B018
    with pytest.raises(AttributeError):  # dunder look-ups stay AttributeError (hasattr works)
        tv.__wrapped__  # noqa: B018


# --------------------------------------------------------------------------- heatmaps
def _heat_axes(fig):
    """The heatmap panels (the colour bar is an extra axes without an image)."""
    return [ax for ax in fig.axes if ax.images]


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("shape,panels", [((4, 5), 1), ((3, 4, 5), 3), ((2, 3, 4, 5), 6)])
@pytest.mark.parametrize("colorbar", [True, False])
def test_show_heatmaps_panels(shape, panels, colorbar):
    w = torch.rand(*shape)
    fig = plot.show_heatmaps(w, colorbar=colorbar, titles=[f"h{i}" for i in range(panels)])
    assert isinstance(fig, Figure)
    heat = _heat_axes(fig)
    assert len(heat) == panels
    assert len(fig.axes) == panels + (1 if colorbar else 0)
    assert [ax.get_title() for ax in heat] == [f"h{i}" for i in range(panels)]
    # every panel shows its own map, row-major
    flat = w.reshape(-1, 4, 5).numpy()
    for ax, m in zip(heat, flat):
        np.testing.assert_allclose(ax.images[0].get_array(), m, rtol=1e-6)


def test_show_heatmaps_tick_labels():
    """Axes are shared: token labels on the left column (queries) and bottom row (keys)."""
    rows, cols = ["the", "cat", "sat"], ["le", "chat", "s'est", "assis"]
    fig = plot.show_heatmaps(torch.rand(2, 2, 3, 4), row_labels=rows, col_labels=cols,
                             xlabel="French", ylabel="English")
    heat = _heat_axes(fig)
    grid = [heat[0:2], heat[2:4]]
    for i in range(2):
        assert [t.get_text() for t in grid[i][0].get_yticklabels()] == rows
        assert [t.get_text() for t in grid[1][i].get_xticklabels()] == cols
        assert grid[i][0].get_ylabel() == "English" and grid[i][1].get_ylabel() == ""
        assert grid[1][i].get_xlabel() == "French" and grid[0][i].get_xlabel() == ""
    for ax in heat:  # the ticks sit on the cells
        assert list(ax.get_xticks()) == [0, 1, 2, 3] and list(ax.get_yticks()) == [0, 1, 2]


def test_show_heatmaps_shared_colour_scale():
    w = torch.tensor([[[0.0, 0.5]], [[0.25, 1.0]]])
    fig = plot.show_heatmaps(w)
    for ax in _heat_axes(fig):
        assert ax.images[0].get_clim() == (0.0, 1.0)


def test_show_heatmaps_accepts_grad_and_half_tensors():
    w = torch.rand(3, 4, dtype=torch.bfloat16, requires_grad=True)
    fig = plot.show_heatmaps(w)
    np.testing.assert_allclose(_heat_axes(fig)[0].images[0].get_array(),
                               w.detach().float().numpy())


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(row_labels=["a", "b"]), r"row_labels has 2 entries but the maps have 3 rows"),
    (dict(col_labels=["a", "b", "c", "d", "e"]),
     r"col_labels has 5 entries but the maps have 4 columns"),
])
def test_show_heatmaps_rejects_mismatched_labels(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        plot.show_heatmaps(torch.rand(2, 3, 4), **kwargs)


def test_show_heatmaps_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        plot.show_heatmaps(torch.rand(5))


# --------------------------------------------------------------------------- curves
def test_plot_curves_lines_and_legend():
    fig = plot.plot_curves({"train": [3.0, 2.0, 1.5], "valid": ([0, 2, 4], [3.5, 2.5, 2.0])},
                           xlabel="epoch", ylabel="loss", logy=True)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["train", "valid"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(lines[1].get_xdata(), [0, 2, 4])
    np.testing.assert_allclose(lines[1].get_ydata(), [3.5, 2.5, 2.0])
    assert ax.get_legend() is not None and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"


def test_plot_curves_on_given_axes():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    out = plot.plot_curves({"only": torch.tensor([1.0, 2.0])}, ax=ax)
    assert out is fig and len(ax.get_lines()) == 1 and ax.get_legend() is None
