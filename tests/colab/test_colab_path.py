"""The student's Colab path, rehearsed offline.

Builds a fresh virtualenv that holds only what Colab preinstalls and this course relies on
(torch, numpy, matplotlib, ipykernel, tqdm) -- no attention_lib. A chapter is then executed
on a kernel of that environment, unchanged: its first cell finds attention_lib missing and
runs ``%pip install "attention-lib @ git+<repository>@<branch>"`` with the URL from
``_config.yml``. Git is told (``url.<local>.insteadOf``) to fetch that URL from this checkout,
so the install goes through pip's real git path without a network. The chapter must then
run to the end without an error.

Slow (it builds an environment): run with ``make test-colab``; ``.ci/run`` does.
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTER = os.environ.get("COLAB_CHAPTER", "notebooks/02_attention_pooling.ipynb")
COLAB_PACKAGES = ["numpy", "matplotlib", "ipykernel", "tqdm"]


def _torch_pin() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.strip()
    raise AssertionError("requirements.txt pins no torch")


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("colab")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", _torch_pin()])  # first and alone, as always
    _run([py, "-m", "pip", "install", "-q", *COLAB_PACKAGES])
    probe = subprocess.run([py, "-c", "import attention_lib"], capture_output=True, cwd=base)
    assert probe.returncode != 0, "the fresh environment must not have attention_lib yet"
    # git: fetch the configured repository URL from this checkout instead of the network
    gitconfig = base / "gitconfig"
    url = CONFIG["repository"]["url"]
    gitconfig.write_text(f'[url "{ROOT.as_uri()}"]\n\tinsteadOf = {url}\n'
                         f'[safe]\n\tdirectory = *\n')
    # a kernel spec that runs the fresh environment's python
    kdir = base / "jupyter" / "kernels" / "colab-sim"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"],'
        ' "display_name": "colab-sim", "language": "python"}' % py)
    return {"python": py, "gitconfig": gitconfig, "jupyter_path": base / "jupyter"}


def test_branch_exists_locally():
    branch = CONFIG["repository"]["branch"]
    res = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", branch],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"this checkout has no branch {branch!r} to install from"


def test_chapter_runs_in_a_fresh_colab_like_environment(colab_env, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(colab_env["gitconfig"]))
    monkeypatch.setenv("JUPYTER_PATH", str(colab_env["jupyter_path"]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(ROOT / CHAPTER, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, kernel_name="colab-sim", timeout=600,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on failure
    setup_out = "".join(o.get("text", "") for o in nb.cells[[c.cell_type for c in nb.cells]
                                                            .index("code")].outputs)
    assert "error" not in setup_out.lower(), f"setup cell output: {setup_out}"
    res = _run([colab_env["python"], "-c",
                "import attention_lib, pathlib; print(attention_lib.__version__,"
                " pathlib.Path(attention_lib.__file__).parent)"], cwd=colab_env["python"].parents[2])
    version, where = res.stdout.split()
    sys.path.insert(0, str(ROOT))
    import attention_lib
    assert version == attention_lib.__version__
    assert "site-packages" in where, f"installed copy expected, imported from {where}"
    # the trained models chapters 1, 4 and 5 load are package data of the installed copy
    res = _run([colab_env["python"], "-c", "from attention_lib import pretrained; "
                "print(len(pretrained.available()), pretrained.load_results()['meta'] != {})"],
               cwd=colab_env["python"].parents[2])
    n, has_results = res.stdout.split()
    assert int(n) == len(attention_lib.pretrained.available()) and has_results == "True"
