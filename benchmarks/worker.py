"""Running one measurement in a fresh process, so that one configuration's peak memory never hides another's; child
processes that end with the benchmark that started them; partial results written whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_GRACE_S = 10.0  # a child told to stop (SIGTERM) gets this long to remove its lock and temporary files


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when this process dies, however it dies (SIGKILL
    included), so that an hours-long ``orbit-lite train`` never outlives the benchmark that wanted its numbers; None
    off Linux. The signal follows the thread that starts the child: start children from the main thread."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    # Looked up and built here: between fork and exec the child only calls (other threads' locks are not its to take).
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    option, sig = ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM)
    parent = os.getpid()

    def arm() -> None:
        prctl(option, sig)
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def run_child(
    command: list[str], *, capture_output: bool = False, timeout: float | None = None, **popen: Any
) -> subprocess.CompletedProcess:
    """``subprocess.run`` for long children: the child dies with this process (see :func:`die_with_parent`), and
    when this process is interrupted (Ctrl-C, a SIGTERM made an exception by :func:`end_children_on_signals`, a
    timeout) the child is asked to stop, then killed if it has not within a grace period, before the exception goes
    on."""
    if capture_output:
        popen.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with subprocess.Popen(command, preexec_fn=die_with_parent(), **popen) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except BaseException:
            _end(child)
            raise
    return subprocess.CompletedProcess(command, child.returncode, out, err)


def _end(child: subprocess.Popen) -> None:
    child.terminate()  # orbit-lite's commands unwind on SIGTERM: their locks and temporary files go with them
    try:
        child.wait(_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    finally:  # also when a second Ctrl-C cuts the grace period short
        child.kill()
        child.wait()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def end_children_on_signals() -> None:
    """Make SIGTERM and SIGHUP (``kill``, ``timeout``, a closed terminal) unwind this process like Ctrl-C, so that
    :func:`run_child` ends its child and temporary folders are removed. A signal someone chose to ignore (``nohup``)
    stays ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _exit_on_signal)


def run_worker(command: list[str], label: dict[str, Any]) -> dict[str, Any]:
    """Run ``command`` (a benchmark's ``--worker`` mode, printing one JSON line last) and return that JSON; a worker
    that fails (out of memory, a crash) gives ``label`` with the error instead of stopping the benchmark."""
    done = run_child(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {**label, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def claim_save_path(path: str | None) -> None:
    """Refuse a ``--save`` path that already exists: the partial saves replace the file again and again, which is
    only right for a file this run wrote."""
    import os

    if path and os.path.lexists(path):
        raise SystemExit(f"--save {path} exists: choose a new path, or move the old file aside")


def save_partial(path: str | None, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` (when given) through a fresh temporary name in the same folder, so that a run cut
    short by a time limit leaves every finished result and never a half-written file."""
    if not path:
        return
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
