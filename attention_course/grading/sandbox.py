"""Parent side of the sandbox: run one notebook in a limited child process, collect outcomes.

The child (:mod:`attention_course.grading._child`) gets a fresh temporary directory, a scrubbed
environment (no solutions path, no PYTHONPATH, CPU only, one thread), its own process group,
and only the *inputs* of the checks. The parent enforces the wall-time limit (SIGKILL to the
whole group), drains the child's output into a bounded buffer (a flood cannot fill a disk or
a pipe), and loads what the child wrote with ``torch.load(weights_only=True)`` after
validating sizes and structure: garbage becomes a failed outcome, never an exception.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..checks.probe import MAX_NUMEL

__all__ = ["Limits", "RunResult", "run_in_sandbox", "validate_outcomes"]

_BOOT = (
    "import sys\n"
    "try:\n"
    "    import attention_lib\n"
    "except ImportError:\n"
    "    sys.path.insert(0, sys.argv[2])\n"
    "from attention_course.grading._child import main\n"
    "main(sys.argv[1])\n"
)
_MAX_RESULT_BYTES = 32 * 2**20
_STATUSES = {"ok", "error", "missing", "not_callable", "timeout"}


@dataclass
class Limits:
    """Per-submission limits. ``cell_timeout`` and ``probe_timeout`` are soft (the child
    interrupts itself and goes on); ``timeout`` is hard (the process group is killed).
    ``memory_mb`` is what the notebook may allocate on top of the libraries the child has
    loaded (the address-space limit is set after the imports)."""

    timeout: float = 120.0
    memory_mb: int = 4096
    cell_timeout: Optional[float] = None  # default: timeout / 4
    probe_timeout: Optional[float] = None  # default: timeout / 10
    fsize_mb: int = 256
    stdout_cap: int = 200_000

    def resolved(self) -> "Limits":
        return Limits(self.timeout, self.memory_mb,
                      self.cell_timeout or max(1.0, self.timeout / 4),
                      self.probe_timeout or max(1.0, self.timeout / 10),
                      self.fsize_mb, self.stdout_cap)


@dataclass
class RunResult:
    """What came back from one child process."""

    outcomes: List[Optional[list]]
    cell_errors: List[dict] = field(default_factory=list)
    finished: bool = False
    timed_out: bool = False
    returncode: Optional[int] = None
    progress: Dict[str, Any] = field(default_factory=dict)
    output_head: str = ""
    output_tail: str = ""
    output_bytes: int = 0
    seconds: float = 0.0


class _Drain(threading.Thread):
    """Reads a pipe to EOF, keeping the first and last ``keep`` bytes."""

    def __init__(self, pipe, keep: int = 16_384):
        super().__init__(daemon=True)
        self.pipe, self.keep = pipe, keep
        self.head = bytearray()
        self.tail = collections.deque()
        self.tail_len = 0
        self.total = 0

    def run(self):
        try:
            while True:
                chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else \
                    self.pipe.read(65536)
                if not chunk:
                    break
                self.total += len(chunk)
                if len(self.head) < self.keep:
                    take = self.keep - len(self.head)
                    self.head += chunk[:take]
                    chunk = chunk[take:]
                if chunk:
                    self.tail.append(chunk)
                    self.tail_len += len(chunk)
                    while self.tail_len - len(self.tail[0]) >= self.keep:
                        self.tail_len -= len(self.tail.popleft())
        except (OSError, ValueError):
            pass

    def text(self):
        tail = b"".join(self.tail)[-self.keep:]
        dec = lambda b: bytes(b).decode("utf-8", errors="replace")  # noqa: E731
        return dec(self.head), dec(tail)


def _env(root: Path) -> Dict[str, str]:
    """A minimal environment: nothing inherited but PATH and the locale."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / "work"), "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(root / "tmp"),
        "CUDA_VISIBLE_DEVICES": "", "ATTENTION_DEVICE": "cpu", "ATTENTION_GRADING": "1",
    }


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_json(path: Path, limit: int = 1_000_000) -> dict:
    try:
        if path.stat().st_size > limit:
            return {}
        obj = json.loads(path.read_text(errors="replace"))
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- validation
def _valid(v: Any, depth: int = 0) -> Any:
    """``v`` if it is plain data of bounded size (see probe.sanitize), else a marker."""
    if v is None or isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, str):
        return v[:4000]
    if isinstance(v, torch.Tensor):
        if type(v) is torch.Tensor and v.layout == torch.strided and v.numel() <= MAX_NUMEL \
                and not v.requires_grad:
            return v
        return {"__type__": "invalid tensor"}
    if depth > 6:
        return {"__type__": "invalid (too deep)"}
    if isinstance(v, dict):
        if len(v) > 64 or not all(isinstance(k, str) for k in v):
            return {"__type__": "invalid dict"}
        return {k[:200]: _valid(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_valid(x, depth + 1) for x in v[:64]]
    return {"__type__": "invalid"}


def validate_outcomes(obj: Any) -> list:
    """A list of outcome dicts, whatever the child wrote (garbage -> error outcomes)."""
    if not isinstance(obj, list) or not obj or len(obj) > 256:
        return [{"status": "error", "error": "the submission produced an unreadable result"}]
    out = []
    for oc in obj:
        if not isinstance(oc, dict) or oc.get("status") not in _STATUSES:
            out.append({"status": "error", "error": "the submission produced an unreadable "
                                                    "result"})
            continue
        oc = _valid(oc)
        if not isinstance(oc.get("error", ""), str):
            oc["error"] = "error"
        out.append(oc)
    return out


def _load(path: Path) -> Optional[list]:
    if not path.exists():
        return None
    try:
        if path.stat().st_size > _MAX_RESULT_BYTES:
            return [{"status": "error", "error": "the result is too large"}]
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything the child might have written
        return [{"status": "error", "error": f"the submission produced an unreadable result "
                                             f"({type(e).__name__})"}]
    return validate_outcomes(obj)


# --------------------------------------------------------------------------- running
def run_in_sandbox(cells: Sequence, tasks_blob: bytes, n_tasks: int, limits: Limits, *,
                   deny_read: Sequence[str] = (), keep: bool = False,
                   python: Optional[str] = None) -> RunResult:
    """Execute ``cells`` ([(cell number, source), ...]) and probe ``tasks`` in a child process.

    ``tasks_blob`` is ``torch.save(tasks)`` (inputs only). ``deny_read`` lists paths the child
    may not read (solutions, hidden checks, other submissions, the output folder).
    """
    lim = limits.resolved()
    root = Path(tempfile.mkdtemp(prefix="attention-grade-")).resolve()
    os.chmod(root, 0o700)
    for sub in ("work", "tmp", "out"):
        (root / sub).mkdir()
    (root / "config.json").write_text(json.dumps({
        "memory_mb": lim.memory_mb, "fsize_mb": lim.fsize_mb,
        "cpu_s": int(lim.timeout) + 10, "cell_timeout": lim.cell_timeout,
        "probe_timeout": lim.probe_timeout, "stdout_cap": lim.stdout_cap,
        "deny_read": [str(Path(p).resolve()) for p in deny_read]}))
    (root / "cells.json").write_text(json.dumps([[int(n), str(s)] for n, s in cells]))
    (root / "tasks.pt").write_bytes(tasks_blob)
    lib_root = str(Path(__file__).resolve().parents[2])
    cmd = [python or sys.executable, "-I", "-c", _BOOT, str(root), lib_root]
    start = time.perf_counter()
    result = RunResult(outcomes=[None] * n_tasks)
    proc = subprocess.Popen(cmd, cwd=root / "work", env=_env(root), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True)
    drain = _Drain(proc.stdout)
    drain.start()
    try:
        proc.wait(timeout=lim.timeout)
    except subprocess.TimeoutExpired:
        result.timed_out = True
        _kill_group(proc.pid)
        proc.wait()
    finally:
        _kill_group(proc.pid)  # strays: anything the submission left running
        drain.join(timeout=5)
        try:
            proc.stdout.close()
        except OSError:
            pass
    result.seconds = time.perf_counter() - start
    result.returncode = proc.returncode
    result.output_head, result.output_tail = drain.text()
    result.output_bytes = drain.total
    result.progress = _read_json(root / "progress.json")
    done = _read_json(root / "done.json")
    result.finished = bool(done) and result.progress.get("phase") == "done" and \
        proc.returncode == 0
    errs = done.get("errors") if isinstance(done.get("errors"), list) else []
    result.cell_errors = [e for e in errs if isinstance(e, dict)][:50]
    for i in range(n_tasks):
        result.outcomes[i] = _load(root / "out" / f"{i}.pt")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        result.progress["sandbox"] = str(root)
    return result
