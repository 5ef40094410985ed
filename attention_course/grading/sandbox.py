"""Parent side of the sandbox: run one notebook in an isolated child process, collect outcomes.

**Isolation** (:func:`isolation`): on Linux the child runs under bubblewrap (``bwrap``) as an
unprivileged user of its own (uid 61000 + slot), in its own PID, network, IPC and UTS
namespaces, in a file system that holds only the system's libraries, the Python environment
(read-only), a copy of ``attention_lib`` (read-only), a stand-in ``attention_course`` that has
no checks, references or hidden inputs (:func:`runner_package`), and its own working folder.
It sees no instructor material, no other submission and no output folder, opens no network
connection, and everything it starts dies with it (the PID namespace ends when its first
process does); the runner also ends, after every cell, any process a cell left behind, so a
detached child or a fork bomb cannot take CPU from the next cell or from the notebook graded
beside it. Limits: address space, CPU time, file size, number of processes (per uid).
Without ``bwrap`` grading refuses to start unless the instructor passes ``isolate=False``
(``attention-grade --no-isolation``), which runs the same child as a plain subprocess with
only the in-process defences of :mod:`~attention_course.grading._child`.

The child gets only the *inputs* of the checks, never a reference or an expected output. The
parent enforces the wall-time limit (SIGKILL to the whole sandbox), drains the child's output
into a bounded buffer with a deadline (a flood or a pipe held open cannot stall it), and loads
what the child wrote with ``torch.load(weights_only=True)`` after validating sizes and
structure: garbage becomes a failed outcome, never an exception. The parent judges.
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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..checks.probe import MAX_NUMEL

__all__ = ["Limits", "RunResult", "run_in_sandbox", "validate_outcomes", "isolation",
           "runner_package", "IsolationUnavailable"]

# sys.argv[2] (the runner package's parent folder) goes first on sys.path: the child imports
# the stand-in attention_course from there, never the installed one with the checks.
_BOOT = (
    "import sys\n"
    "sys.path.insert(0, sys.argv[2])\n"
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
    nproc: int = 64  # processes and threads of the sandbox's uid (isolated runs only)

    def resolved(self) -> "Limits":
        return Limits(self.timeout, self.memory_mb,
                      self.cell_timeout or max(1.0, self.timeout / 4),
                      self.probe_timeout or max(1.0, self.timeout / 10),
                      self.fsize_mb, self.stdout_cap, self.nproc)


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
    """A minimal environment: nothing inherited but PATH and the locale. ``root`` is the
    sandbox folder as the child sees it."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / "work"), "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        # a fixed mmap threshold: every allocation of 64 KiB or more is its own mapping,
        # given back when freed, so a probe's peak resident memory is what it allocated
        "MALLOC_MMAP_THRESHOLD_": "65536", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(root / "tmp"),
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


# --------------------------------------------------------------------------- isolation
class IsolationUnavailable(RuntimeError):
    """No way to isolate a submission here (no bubblewrap): grading untrusted notebooks
    needs ``isolate=False`` (``--no-isolation``) said explicitly."""


#: What a submission loses when it is graded without isolation (printed by the command).
NO_ISOLATION_WARNING = (
    "grading WITHOUT isolation: each notebook runs as a plain subprocess of this user, with "
    "only Python-level defences (an audit hook and an import guard). A determined submission "
    "can read the instructor's files and other submissions, write outside its folder, open "
    "network connections and leave processes running. Use this only for trusted notebooks, "
    "or install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap).")

_RUNNER_FILES = {  # the stand-in attention_course: what a graded notebook may import
    "attention_course/__init__.py": None,
    "attention_course/checks/__init__.py": None,
    "attention_course/checks/probe.py": "checks/probe.py",
    "attention_course/grading/__init__.py": None,
    "attention_course/grading/_child.py": "grading/_child.py",
    "attention_course/exercise_tools.py": "exercise_tools.py",
}
_STAND_IN = {
    "attention_course/__init__.py":
        '"""Stand-in while grading: no checks here."""\nfrom .checks import check\n\n'
        '__all__ = ["check"]\n',
    "attention_course/checks/__init__.py":
        '"""Stand-in while grading: the grader runs the checks outside the sandbox."""\n\n\n'
        'def check(*args, **kwargs):\n    return None\n',
    "attention_course/grading/__init__.py": '"""Stand-in while grading."""\n',
}
_runner_lock = threading.Lock()
_runner_dir: Optional[Path] = None


def runner_package() -> Path:
    """A folder holding the stand-in ``attention_course`` a graded notebook imports.

    It has ``check`` (which does nothing), ``exercise_tools`` (what exercises study), and the
    child runner with its probe; no check specs, no references, no hidden inputs. Beside it, a
    copy of the ``attention_lib`` the grader itself imported, so that the notebook runs the
    same library however it was installed (editable, from a wheel, or from another
    checkout). Built once per process, read-only for the sandbox."""
    global _runner_dir
    with _runner_lock:
        if _runner_dir is None or not _runner_dir.is_dir():
            src = Path(__file__).resolve().parents[1]  # the real attention_course
            d = Path(tempfile.mkdtemp(prefix="attention-grade-runner-")).resolve()
            for rel, orig in _RUNNER_FILES.items():
                path = d / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_STAND_IN[rel] if orig is None else (src / orig).read_text())
            import attention_lib  # the library the grader runs, whatever installed it
            shutil.copytree(Path(attention_lib.__file__).resolve().parent, d / "attention_lib",
                            ignore=shutil.ignore_patterns("__pycache__"))
            for p in [d, *d.rglob("*")]:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            _runner_dir = d
        return _runner_dir


def isolation() -> Optional[str]:
    """None when submissions can be isolated here (bubblewrap works), else why not."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    try:
        probe = subprocess.run(_bwrap_prefix(None, uid=_UID_BASE) + ["/bin/true"],
                               capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap could not start: {e}"
    if probe.returncode != 0:
        return "bwrap cannot create namespaces here: " + \
            probe.stderr.decode(errors="replace").strip()[:200]
    return None


_UID_BASE = 61000
_uid_lock = threading.Lock()
_uids_in_use: set = set()


def _take_uid() -> int:
    """One unprivileged uid per sandbox running at the same time: the process limit
    (RLIMIT_NPROC) counts per uid, so two sandboxes must not share one."""
    with _uid_lock:
        uid = _UID_BASE
        while uid in _uids_in_use:
            uid += 1
        _uids_in_use.add(uid)
        return uid


def _give_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _read_only_dirs(runner: Optional[Path]) -> List[Tuple[str, str]]:
    """(source, destination) pairs mounted read-only: the system's libraries, Python, the
    installed packages, attention_lib, and the runner (on top of any installed
    attention_course, so the real one is never visible)."""
    import site
    import sysconfig

    pairs = []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc/fonts",
              "/etc/ld.so.cache", "/etc/alternatives"):
        if os.path.exists(d):
            pairs.append((d, d))
    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    paths |= {v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib",
                                                                    "purelib", "platlib")}
    paths |= set(getattr(site, "getsitepackages", lambda: [])())
    for p in sorted(p for p in paths if p and os.path.isdir(p)):
        real = os.path.realpath(p)
        if not any(real == q or real.startswith(q + os.sep) for q, _ in pairs):
            pairs.append((real, real))
    if runner is not None:
        pairs.append((str(runner), "/opt/attention-grade"))
        course = Path(__file__).resolve().parents[1]  # an installed attention_course
        if any(str(course).startswith(q + os.sep) for q, _ in pairs):
            pairs.append((str(runner / "attention_course"), str(course)))
    return pairs


def _bwrap_prefix(root: Optional[Path], *, uid: int,
                  runner: Optional[Path] = None) -> List[str]:
    """The bubblewrap command line up to the program to run."""
    cmd = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session",
           "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made = {"/", "/proc", "/dev", "/tmp"}

    def parents(dest: str) -> None:  # 0755 folders up to a mount point, so uid can pass
        for anc in reversed(Path(dest).parents):
            a = str(anc)
            if a not in made:
                cmd.extend(["--perms", "0755", "--dir", a])
                made.add(a)

    for src, dest in _read_only_dirs(runner):
        parents(dest)
        cmd.extend(["--ro-bind", src, dest])
        made.add(dest)
    if root is not None:
        parents("/sandbox")
        cmd.extend(["--bind", str(root), "/sandbox", "--chdir", "/sandbox/work"])
    if os.geteuid() == 0:  # drop to an unprivileged uid of the sandbox's own, no capabilities
        cmd.extend(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"])
    else:  # a user namespace: the same uid outside, nobody inside
        cmd[1:1] = ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return cmd


def _chown_tree(root: Path, uid: int) -> None:
    for p in [root, *root.rglob("*")]:
        os.chown(p, uid, uid)


# --------------------------------------------------------------------------- running
def run_in_sandbox(cells: Sequence, tasks_blob: bytes, n_tasks: int, limits: Limits, *,
                   deny_read: Sequence[str] = (), keep: bool = False,
                   python: Optional[str] = None, isolate: bool = True) -> RunResult:
    """Execute ``cells`` ([(cell number, source), ...]) and probe ``tasks`` in a child process.

    ``tasks_blob`` is ``torch.save(tasks)`` (inputs only). With ``isolate`` (the default) the
    child runs under bubblewrap (see the module docstring); ``deny_read`` lists paths the
    in-process defences also refuse (solutions, hidden checks, other submissions, the output
    folder), which matters only without isolation: isolated, they are not there at all.
    """
    lim = limits.resolved()
    root = Path(tempfile.mkdtemp(prefix="attention-grade-")).resolve()
    os.chmod(root, 0o700)
    for sub in ("work", "tmp", "out"):
        (root / sub).mkdir()
    runner = runner_package()
    inside = Path("/sandbox") if isolate else root  # the sandbox folder, as the child sees it
    (root / "config.json").write_text(json.dumps({
        "memory_mb": lim.memory_mb, "fsize_mb": lim.fsize_mb,
        "cpu_s": int(lim.timeout) + 10, "cell_timeout": lim.cell_timeout,
        "probe_timeout": lim.probe_timeout, "stdout_cap": lim.stdout_cap,
        "nproc": lim.nproc if isolate else 0, "own_pid_namespace": isolate,
        "deny_read": [str(Path(p).resolve()) for p in deny_read]}))
    (root / "cells.json").write_text(json.dumps([[int(n), str(s)] for n, s in cells]))
    (root / "tasks.pt").write_bytes(tasks_blob)
    uid = _take_uid() if isolate else None
    runner_inside = "/opt/attention-grade" if isolate else str(runner)
    cmd = [python or sys.executable, "-I", "-c", _BOOT, str(inside), runner_inside]
    if isolate:
        if os.geteuid() == 0:
            _chown_tree(root, uid)
        cmd = _bwrap_prefix(root, uid=uid, runner=runner) + cmd
    start = time.perf_counter()
    result = RunResult(outcomes=[None] * n_tasks)
    try:
        proc = subprocess.Popen(cmd, cwd=root / "work", env=_env(inside),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
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
            drain.join(timeout=5)  # a pipe some leftover holds open cannot stall the grader
            try:
                proc.stdout.close()
            except OSError:
                pass
    finally:
        if uid is not None:
            _give_uid(uid)
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
