"""Processes seen through /proc (Linux): the fault tests and bench/soak.py watch workers with these."""
import pathlib
import signal


def _stat(pid):
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields after the name


def descendants(pid):
    """The pids below ``pid``: its children, theirs (a pool's workers are the fork server's), ..."""
    parents = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(_stat(stat.parent.name)[1])
        except (OSError, IndexError, ValueError):
            continue
    below, frontier = [], {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier}
        below += sorted(frontier)
    return below


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
