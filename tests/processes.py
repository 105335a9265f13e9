"""Processes seen through /proc (Linux): the fault tests and bench/soak.py watch workers with these;
and a forked child, for the tests that kill a training process."""
import os
import pathlib
import signal
import sys
import tempfile
import time
import traceback


def _stat(pid):
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields after the name


def children(pid):
    """The pids whose parent is ``pid``."""
    kids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat(stat.parent.name)[1]) == pid:
                kids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def alive(pid):
    """True while ``pid`` runs (a zombie is dead)."""
    try:
        return _stat(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def default_sigint():
    """A child's ``preexec_fn``: SIGINT at its default. A shell starts background jobs (``make test &``,
    ``nohup``) with SIGINT ignored, children inherit that, and the CLI rightly keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def forked(fn, *args, timeout=120):
    """``fn(*args)`` in a forked child: this process's imports are reused, so no interpreter starts (torch
    alone takes seconds). Returns (exit status, what the child printed); a child killed by signal N
    ends with -N, as ``subprocess`` reports it. Past ``timeout`` seconds the child is killed."""
    with tempfile.TemporaryFile() as out:
        pid = os.fork()
        if pid == 0:  # the child: everything it prints goes to ``out``; it never returns into pytest
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                fn(*args)
                code = 0
            except BaseException:  # noqa: BLE001 - reported through the exit status and the output
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + timeout
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError(f"forked child {pid} ran past {timeout} s")
            time.sleep(0.05)
        out.seek(0)
        return os.waitstatus_to_exitcode(done[1]), out.read().decode(errors="replace")
