"""The sandboxed child process: execute one submitted notebook, then probe its exercises.

Started by :mod:`attention_course.grading.sandbox` as
``python -I -c "...; main(SANDBOX)"`` with cwd ``SANDBOX/work``, a scrubbed environment,
and a new process group. Reads ``SANDBOX/config.json``, ``SANDBOX/cells.json`` (the code
cells) and ``SANDBOX/tasks.pt`` (the probes to run: inputs only, never expected outputs);
writes ``SANDBOX/out/<i>.pt`` (one list of outcomes per task, see
:mod:`attention_course.checks.probe`), ``SANDBOX/progress.json`` (where it is) and
``SANDBOX/done.json`` (cell errors, once finished).

Defences, in order: resource limits (file size, CPU time, no core dumps) before anything
else; every library the runner needs is imported and every function it uses is captured
before submitted code runs; then the address-space limit (what the libraries mapped plus
``memory_mb``), an import guard (only the standard
library, site-packages and ``attention_lib`` may be imported) and an audit hook (no writes
outside the sandbox, no reads of the instructor's or other students' files, no
subprocesses, sockets, ctypes, signals to other processes or raised limits). A soft
timeout (SIGALRM) interrupts a cell or probe that runs too long; the parent's hard timeout
kills the whole process group if that does not work. The runner ends with ``os._exit`` so
that no ``atexit`` handler of the submission runs after it.

The efficiency tier's probes (``trace``) run each case in a forked process. The kernel
counts that process's peak resident memory, all threads and all libraries included, and
the runner reports it (``rss_bytes``: the peak minus the resident size when the fork
started): memory a thread or numpy allocates is invisible to a tracer of torch calls, not
to the kernel.

Nothing here is trusted by the parent: it loads the outcomes with
``torch.load(weights_only=True)``, validates them, and judges them itself.
"""
from __future__ import annotations

import builtins
import functools
import json
import os
import resource
import signal
import sys
import time

# Captured before any submitted code runs.
_open = builtins.open
_exec = builtins.exec
_compile = builtins.compile
_replace = os.replace
_exit = os._exit
_write = os.write
_realpath = os.path.realpath
_getpid = os.getpid
_json_dumps = json.dumps
_perf = time.perf_counter
_setitimer = signal.setitimer
_signal = signal.signal
_fork = os.fork
_wait4 = os.wait4
_waitpid = os.waitpid
_kill = os.kill
_pipe = os.pipe
_read = os.read
_close = os.close
_os_open = os.open
_sleep = time.sleep
_monotonic = time.monotonic


def _resident_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB, from /proc (0 if unreadable)."""
    try:
        fd = _os_open(f"/proc/{pid}/status", os.O_RDONLY)
        try:
            text = _read(fd, 16384).decode()
        finally:
            _close(fd)
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except Exception:
        pass
    return 0


def _warm_up(torch_fns) -> None:
    """Run the common torch kernels once, on tiny tensors, with functions captured before
    the submission ran. A forked process maps the code of a kernel the first time it runs
    one (tens of MiB for the BLAS kernels), which would otherwise count as the call's memory.
    """
    ones, matmul, softmax, exp, cumsum, cat, where, dtypes = torch_fns
    for dtype in dtypes:
        a, b = ones((2, 64, 16), dtype=dtype), ones((2, 16, 64), dtype=dtype)
        s = softmax(matmul(a, b), -1)
        c = cat([exp(s), cumsum(s, -1)], 1)
        where(c > 0, c, c)


def _reap_strays(alone: bool, forks: set) -> None:
    """In the isolated sandbox (its own PID namespace, where ``alone`` is true) end every
    process the submission started: a detached child that holds the output pipe, a fork
    bomb started through a path the audit hook never hears of. ``kill(-1)`` reaches every
    process of the namespace but the runner itself and the namespace's init (which reaps
    the orphans); the runner reaps its own children, and repeats until nothing is left to
    signal, so the next cell, and the notebook graded beside this one, do not share the CPU
    with them."""
    if not alone:
        return
    forks.add(-1)  # the audit hook lets the runner signal what ``forks`` names
    try:
        for _ in range(400):
            try:
                _kill(-1, signal.SIGKILL)
            except OSError:  # ESRCH: nothing left to signal
                return
            _sleep(0.002)
            while True:
                try:
                    pid, _status = _waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
    finally:
        forks.discard(-1)


def _forked_probe(probe, case, seconds: float, forks: set, torch_fns) -> dict:
    """Run ``probe([case])`` in a forked process; return its outcome with ``rss_bytes``,
    the peak resident memory the call added, as the kernel counted it.

    The fork first warms up the common kernels (:func:`_warm_up`) and says it is ready;
    the runner then reads the fork's resident size and lets it call; when it has ended, the
    runner reads its peak (``ru_maxrss``) from ``wait4``: neither number passes through code
    the submission can reach. The fork sends its outcome back through a pipe as
    ``torch.save`` bytes (judged by the parent like any other); the runner waits at most
    ``seconds`` + 2 s, then kills it.
    """
    import io

    import torch
    r, w = _pipe()
    go_r, go_w = _pipe()
    pid = _fork()
    if pid == 0:  # the fork: warm up, "ready", wait for "go", call, send, exit
        try:
            _close(r)
            _close(go_w)
            _warm_up(torch_fns)
            _write(w, b"r")
            _read(go_r, 1)
            _signal(signal.SIGALRM, _on_alarm)
            _setitimer(signal.ITIMER_REAL, max(seconds, 0.05))
            try:
                outcome = probe([case])[0]
            except _SoftTimeout:
                outcome = {"status": "timeout", "error": f"did not return within {seconds:g} s"}
            _setitimer(signal.ITIMER_REAL, 0)
            buf = io.BytesIO()
            torch.save(outcome, buf)
            data = buf.getvalue()
            while data:
                n = _write(w, data[:65536])
                data = data[n:]
        except BaseException:
            pass
        _exit(0)
    forks.add(pid)
    _close(w)
    _close(go_r)
    ready_by = _monotonic() + 10.0
    os.set_blocking(r, False)
    while True:  # wait for the warm-up's "r" (the fork writes nothing before it)
        try:
            first = _read(r, 1)
            break
        except BlockingIOError:
            if _monotonic() > ready_by:
                first = b""
                break
            _sleep(0.001)
    start_kib = _resident_kib(pid)
    _write(go_w, b"g")
    _close(go_w)
    chunks, deadline, status, usage = [], _monotonic() + seconds + 2.0, None, None
    if first not in (b"r", b""):
        chunks.append(first)
    while True:
        try:
            chunk = _read(r, 65536)
            if chunk:
                chunks.append(chunk)
                continue
            if status is not None:
                break
        except BlockingIOError:
            pass
        if status is None:
            done, st, ru = _wait4(pid, os.WNOHANG)
            if done:
                status, usage = st, ru
                continue
        if _monotonic() > deadline:
            try:
                _kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if status is None:
                _, status, usage = _wait4(pid, 0)
            break
        _sleep(0.002)
    _close(r)
    forks.discard(pid)
    try:
        outcome = dict(torch.load(io.BytesIO(b"".join(chunks)), weights_only=True))
        outcome["rss_bytes"] = max(0, int(usage.ru_maxrss) - start_kib) * 1024
        return outcome
    except Exception:
        sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        why = (f"killed by signal {sig} (memory or time limit?)" if sig else
               "did not return within the time limit" if _monotonic() > deadline else
               "ended without an answer")
        return {"status": "error" if sig or _monotonic() <= deadline else "timeout",
                "error": f"the call {why}"}


class _SoftTimeout(BaseException):
    """Raised by SIGALRM inside a cell or a probe that ran past its time."""


def _on_alarm(signum, frame):
    raise _SoftTimeout()


def _vm_size() -> int:
    """This process's virtual memory size in bytes (0 where /proc is missing)."""
    try:
        with _open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _limit_memory(cfg: dict) -> None:
    """Address space = what the libraries already mapped + ``memory_mb``. Set after the
    imports: a CUDA build of torch maps gigabytes before the submission allocates anything."""
    mb = int(cfg.get("memory_mb", 0))
    if mb > 0:
        limit = _vm_size() + mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _set_limits(cfg: dict) -> None:
    fsize = int(cfg.get("fsize_mb", 256)) * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = int(cfg.get("cpu_s", 0))
    if cpu > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    nproc = int(cfg.get("nproc", 0))
    if nproc > 0:  # counts the sandbox uid's processes and threads
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


class _Sandbox:
    def __init__(self, root: str, cfg: dict):
        self.root = _realpath(root)
        self.cfg = cfg
        self.deny_read = [_realpath(p) for p in cfg.get("deny_read", []) if p]
        self.forks: set = set()  # pids of the runner's probe forks, while they run

    # ------------------------------------------------------------------ files written by us
    def write_json(self, name: str, obj) -> None:
        path = os.path.join(self.root, name)
        tmp = path + ".tmp"
        with _open(tmp, "w") as f:
            f.write(_json_dumps(obj))
        _replace(tmp, path)

    def progress(self, **kw) -> None:
        try:
            self.write_json("progress.json", kw)
        except Exception:
            pass

    # ------------------------------------------------------------------ the audit hook
    def _inside(self, path) -> bool:
        try:
            if isinstance(path, int):
                return True  # an already-open descriptor
            p = os.fsdecode(path)
            if p in ("/dev/null",):
                return True
            real = _realpath(p)
            return real == self.root or real.startswith(self.root + os.sep)
        except Exception:
            return False

    def _denied(self, path) -> bool:
        try:
            if isinstance(path, int):
                return False
            real = _realpath(os.fsdecode(path))
            if real.startswith("/proc/") and real.split("/")[2].isdigit() and \
                    real.split("/")[2] != str(_getpid()) and \
                    int(real.split("/")[2]) not in self.forks:
                return True  # other processes (e.g. the grader's memory or command line)
            return any(real == d or real.startswith(d + os.sep) for d in self.deny_read)
        except Exception:
            return False

    def install_audit_hook(self) -> None:
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        blocked = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "os.fork", "os.forkpty", "pty.spawn", "socket.connect", "socket.bind",
                   "socket.sendto", "socket.sendmsg", "ctypes.dlopen", "ctypes.dlsym",
                   "resource.setrlimit", "resource.prlimit", "webbrowser.open",
                   "os.setuid", "os.setgid", "os.chroot"}
        path_events = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,),
                       "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,),
                       "os.utime": (0,), "os.rename": (0, 1), "os.link": (0, 1),
                       "os.symlink": (1,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
                       "shutil.copytree": (1,), "shutil.move": (1,), "os.mkfifo": (0,),
                       "os.mknod": (0,)}
        read_events = {"os.listdir", "os.scandir", "glob.glob", "os.chdir"}
        me = _getpid()
        forks = self.forks
        runner_code = _forked_probe.__code__

        def hook(event, args):
            if event == "open":
                path, mode, flags = (list(args) + [None, None, None])[:3]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & write_flags)
                if writing and not self._inside(path):
                    raise PermissionError(f"grading sandbox: writing {path!r} is not allowed "
                                          f"(only the working directory)")
                if self._denied(path):
                    raise PermissionError(f"grading sandbox: reading {path!r} is not allowed")
            elif event == "os.fork" and sys._getframe(1).f_code is runner_code:
                return  # the runner's own fork for an efficiency probe
            elif event in blocked:
                raise PermissionError(f"grading sandbox: {event} is not allowed")
            elif event in path_events:
                for i in path_events[event]:
                    if i < len(args) and args[i] is not None and not self._inside(args[i]):
                        raise PermissionError(f"grading sandbox: {event} outside the working "
                                              f"directory is not allowed")
            elif event in read_events:
                if args and args[0] is not None and self._denied(args[0]):
                    raise PermissionError(f"grading sandbox: {event} of {args[0]!r} is not "
                                          f"allowed")
            elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
                if event == "os.kill" and args and (args[0] in (0, me) or args[0] in forks):
                    return
                raise PermissionError(f"grading sandbox: {event} is not allowed")

        sys.addaudithook(hook)


class _ImportGuard:
    """A meta path finder that refuses modules from outside the allowed roots (e.g. the
    instructor's solutions, even if their folder ends up on sys.path)."""

    def __init__(self, allowed):
        self.allowed = [_realpath(a) for a in allowed if a]

    def _ok(self, path) -> bool:
        if not path or path in ("built-in", "frozen"):
            return True
        real = _realpath(path)
        return any(real == a or real.startswith(a + os.sep) for a in self.allowed)

    def find_spec(self, name, path=None, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(name, path, target)
            except Exception:
                continue
            if spec is None:
                continue
            places = [spec.origin] if spec.origin else []
            places += list(spec.submodule_search_locations or [])
            if places and not all(self._ok(p) for p in places if p):
                raise ImportError(f"grading sandbox: importing {name!r} is not allowed")
            return None  # allowed: let the normal machinery import it
        return None


class _BoundedStream:
    """sys.stdout / sys.stderr replacement: forwards the first ``cap`` bytes, drops the rest."""

    def __init__(self, fd: int, cap: int):
        self.fd, self.cap, self.written, self.dropped = fd, cap, 0, 0
        self.encoding = "utf-8"

    def write(self, s) -> int:
        data = str(s).encode("utf-8", errors="replace")
        room = self.cap - self.written
        if room > 0:
            try:
                _write(self.fd, data[:room])
            except OSError:
                pass
        self.written += min(len(data), max(room, 0))
        self.dropped += max(len(data) - max(room, 0), 0)
        return len(s) if isinstance(s, str) else len(data)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        return self.fd


class _FakeShell:
    """What ``get_ipython()`` returns while grading: magics and shell commands do nothing."""

    def __init__(self, ns):
        self.ns = ns

    def run_line_magic(self, name, line, *a, **k):
        if name in ("time", "timeit"):
            return eval(_compile(line, "<magic>", "eval"), self.ns)  # noqa: S307
        print(f"[grader] %{name} skipped while grading")

    def run_cell_magic(self, name, line, cell, *a, **k):
        if name in ("time", "timeit", "capture"):
            _exec(_compile(cell, "<cell magic>", "exec"), self.ns)
            return None
        print(f"[grader] %%{name} cell skipped while grading")

    def system(self, cmd, *a, **k):
        print("[grader] shell commands are not run while grading")

    getoutput = system

    def __getattr__(self, name):
        return lambda *a, **k: None


def _transformer():
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        tm = TransformerManager()
        return tm.transform_cell
    except Exception:  # no IPython: comment out magics and shell lines
        import re
        pat = re.compile(r"^(\s*)([%!].*)$", re.M)
        return lambda src: pat.sub(r"\1pass  # \2", src)


def _first_line(src: str) -> str:
    for line in src.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            return s[:50]
    return ""


def main(root: str) -> None:
    with _open(os.path.join(root, "config.json")) as f:
        cfg = json.load(f)
    _set_limits(cfg)
    box = _Sandbox(root, cfg)
    box.progress(phase="startup")

    # ---- everything the runner needs, imported before the submission can interfere
    import torch

    import attention_lib
    from attention_course.checks import probe as probe_mod
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # pragma: no cover
        plt = None
    transform = _transformer()
    torch.set_num_threads(1)
    with probe_mod._Tracer(None):  # warm up: import what tracing needs, now
        torch.ones(2).softmax(-1)
    torch_save = torch.save
    run_probe = probe_mod.run_probe
    torch_fns = (torch.ones, torch.matmul, torch.softmax, torch.exp, torch.cumsum, torch.cat,
                 torch.where, (torch.float64, torch.float32))

    with _open(os.path.join(root, "cells.json")) as f:
        cells = json.load(f)
    tasks = torch.load(os.path.join(root, "tasks.pt"), weights_only=True)
    watches = [probe_mod.resolve_forbidden(t.get("options", {}).get("forbid", ()))
               if t["probe"] == "trace" else None for t in tasks]
    os.makedirs(os.path.join(root, "out"), exist_ok=True)
    for name in ("tasks.pt", "cells.json", "config.json"):  # the submission never reads them
        os.remove(os.path.join(root, name))
    cell_timeout = float(cfg.get("cell_timeout", 30))
    alone = bool(cfg.get("own_pid_namespace")) and _getpid() != 1
    probe_timeout = float(cfg.get("probe_timeout", 10))

    # ---- lock down
    _limit_memory(cfg)
    import site
    import sysconfig
    allowed = [sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib",
                                                      "platlib")]
    allowed += list(getattr(site, "getsitepackages", lambda: [])())
    import attention_course
    allowed += [os.path.dirname(attention_lib.__file__),
                os.path.dirname(attention_course.__file__), root]
    sys.meta_path.insert(0, _ImportGuard(allowed))
    box.install_audit_hook()
    out_stream = _BoundedStream(1, int(cfg.get("stdout_cap", 200_000)))
    sys.stdout = sys.stderr = out_stream
    _signal(signal.SIGALRM, _on_alarm)
    os.chdir(os.path.join(root, "work"))

    ns = {"__name__": "__main__", "__builtins__": builtins}
    ns["get_ipython"] = lambda: _FakeShell(ns)
    errors = []

    def timed(seconds, fn, *args):
        _signal(signal.SIGALRM, _on_alarm)
        _setitimer(signal.ITIMER_REAL, max(seconds, 0.05))
        try:
            return fn(*args)
        finally:
            _setitimer(signal.ITIMER_REAL, 0)

    # ---- 1. execute the notebook, cell by cell; a failing cell does not stop the others
    for number, src in cells:
        box.progress(phase="cell", cell=number, first_line=_first_line(src))
        try:
            code = _compile(transform(src), f"<cell {number}>", "exec")
        except SyntaxError as e:
            errors.append({"cell": number, "error": f"SyntaxError: {e.msg} (line {e.lineno})",
                           "first_line": _first_line(src)})
            continue
        except BaseException as e:  # noqa: BLE001
            errors.append({"cell": number, "error": f"{type(e).__name__}: {str(e)[:200]}",
                           "first_line": _first_line(src)})
            continue
        try:
            timed(cell_timeout, _exec, code, ns)
        except _SoftTimeout:
            errors.append({"cell": number, "error": f"interrupted after {cell_timeout:g} s "
                                                    f"(the time limit of one cell)",
                           "first_line": _first_line(src)})
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, ...
            try:
                msg = str(e)[:200]
            except BaseException:
                msg = ""
            errors.append({"cell": number, "error": f"{type(e).__name__}: {msg}".rstrip(": "),
                           "first_line": _first_line(src)})
        _reap_strays(alone, box.forks)
        if plt is not None:
            try:
                plt.close("all")
            except BaseException:
                pass

    # ---- 2. probe every exercise with the tasks' inputs
    hung = {}
    for i, task in enumerate(tasks):
        symbol = task["symbol"]
        box.progress(phase="probe", symbol=symbol, task=i)
        cases = task["cases"]
        if symbol in hung:
            outcomes = [{"status": "timeout", "error": f"skipped: an earlier call of `{symbol}` "
                                                       f"did not return within {hung[symbol]:g} s"}
                        for _ in cases]
        else:
            missing = symbol not in ns
            obj = ns.get(symbol)
            try:
                # bind this task's values now: a probe that outlives its timeout keeps running
                probe = functools.partial(run_probe, obj, task["probe"],
                                          options=task.get("options"), missing=missing,
                                          watch=watches[i])
                if task["probe"] == "trace" and not missing:
                    outcomes = [_forked_probe(probe, c, probe_timeout, box.forks, torch_fns)
                                for c in cases]
                else:
                    outcomes = timed(probe_timeout, functools.partial(probe, cases))
            except _SoftTimeout:
                hung[symbol] = probe_timeout
                outcomes = [{"status": "timeout", "error": f"did not return within "
                                                           f"{probe_timeout:g} s"}
                            for _ in cases]
            except BaseException as e:  # noqa: BLE001
                outcomes = [{"status": "error", "error": f"{type(e).__name__}: {str(e)[:200]}"}
                            for _ in cases]
        path = os.path.join(root, "out", f"{i}.pt")
        try:
            torch_save(outcomes, path + ".tmp")
            _replace(path + ".tmp", path)
        except BaseException as e:  # noqa: BLE001 - e.g. an output that cannot be saved
            try:
                torch_save([{"status": "error", "error": f"result could not be saved "
                                                         f"({type(e).__name__})"}], path)
            except BaseException:
                pass

    box.progress(phase="done")
    box.write_json("done.json", {"errors": errors[:50], "n_errors": len(errors),
                                 "stdout_dropped": out_stream.dropped})
    _exit(0)
