"""Client and server on separate CPUs for a benchmark whose every op is a round trip to a local server.

Left to the scheduler, each server process (a PostgreSQL backend per connection) is woken either on the
client's CPU or on the other one, and keeps that habit for a while: on the client's CPU a round trip is a
plain hand-over when the client blocks; on the other CPU it is a cross-CPU wake-up, which costs more.
Which contender's connection gets which placement changes from run to run, and it moves a contender's
time by more than the differences the op-cost targets judge (bench/README.md, "Reading the figures":
the same code measured 1.04x and 1.34x the limit in two runs minutes apart). Interleaved rounds cannot
cancel that, because the placement follows the connection, not the moment.

Pinning the benchmark process to one CPU and the server (the postmaster and everything it has forked or
will fork) to the others gives every contender the same placement in every run: every round trip crosses
CPUs, as it does when the database runs on another machine. ``--unpinned`` leaves placement to the
scheduler, to see what pinning changes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_placement: str | None = None


def place_apart(server_pid: int) -> None:
    """Pin this process to its first allowed CPU and ``server_pid``'s process tree to the other ones.

    Call it before the benchmark starts threads of its own (they inherit the calling thread's CPU set) and
    after the server is up (its running processes are moved; the ones it forks later inherit). Needs at
    least two CPUs and the right to move the server's processes (root, or the same user); otherwise the
    run goes on unpinned, and :func:`placement` says why.
    """
    global _placement  # noqa: PLW0603 - one placement per benchmark process, recorded in its results
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        _placement = f"client and server share the CPUs (only {len(allowed)} allowed)"
        return
    client, server = {allowed[0]}, set(allowed[1:])
    moved: list[int] = []
    try:
        for pid in (server_pid, *_descendants(server_pid)):
            try:
                os.sched_setaffinity(pid, server)
            except ProcessLookupError:  # exited meanwhile (a finished backend)
                continue
            moved.append(pid)
    except PermissionError as error:
        for pid in moved:  # all or nothing: a half-pinned server would place some backends apart
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, allowed)
        _placement = f"client and server share the CPUs (pinning the server: {error.strerror})"
        return
    os.sched_setaffinity(0, client)
    _placement = f"client pinned to CPU {allowed[0]}, server to CPU {_cpu_list(server)}"


def placement() -> str:
    """What the results document records about :func:`place_apart` (empty when it was not called)."""
    return _placement or ""


def _descendants(root: int) -> list[int]:
    """Every live process whose chain of parents leads to ``root`` (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while listed
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(text.split(" ", 1)[0]))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _cpu_list(cpus: set[int]) -> str:
    ordered = sorted(cpus)
    if len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))
