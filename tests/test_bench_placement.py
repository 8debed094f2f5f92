"""bench.placement.place_apart: the benchmark process on one CPU, a server's whole process tree on the others.

A real process tree stands in for the server (a shell with a child, which forks another child once the
pinning is done), and the pinning runs in a child interpreter, since it pins the process that calls it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The "server": a child that waits, and forks a late child once told to (a backend after the pinning).
SERVER = """
import os, subprocess, sys
early = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
print(early.pid, flush=True)
sys.stdin.readline()
late = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
print(late.pid, flush=True)
sys.stdin.readline()
early.stdin.close(); late.stdin.close(); early.wait(); late.wait()
"""

CLIENT = """
import os, sys
from bench.placement import place_apart, placement
place_apart(int(sys.argv[1]))
print(sorted(os.sched_getaffinity(0)), placement(), sep="|", flush=True)
"""


def _affinity(pid: int) -> list[int]:
    return sorted(os.sched_getaffinity(pid))


def _server() -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def _pin(server_pid: int, cpus: set[int] | None = None) -> tuple[list[int], str]:
    command = [sys.executable, "-c", CLIENT, str(server_pid)]
    if cpus is not None:
        command = ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus))), *command]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    allowed, text = output.strip().split("|")
    return [int(cpu) for cpu in allowed.strip("[]").split(",")], text


def _finish(server: subprocess.Popen[str]) -> None:
    """End of input: the server's remaining reads return at once, it ends its children and exits."""
    try:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs (CI's machine has two)")
def test_the_server_tree_and_what_it_forks_later_run_apart_from_the_client() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    server, early = _server()
    try:
        client_cpus, text = _pin(server.pid)
        assert client_cpus == [allowed[0]]
        assert _affinity(server.pid) == allowed[1:]
        assert _affinity(early) == allowed[1:]  # forked before the pinning: moved
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write("\n")
        server.stdin.flush()
        late = int(server.stdout.readline())
        assert _affinity(late) == allowed[1:]  # forked after it: inherits
        assert text.startswith(f"client pinned to CPU {allowed[0]}, server to CPU ")
    finally:
        _finish(server)


def test_with_one_cpu_nothing_is_pinned_and_the_results_say_so() -> None:
    one = min(os.sched_getaffinity(0))
    server, early = _server()
    try:
        before_early = _affinity(early)
        before = _affinity(server.pid)
        client_cpus, text = _pin(server.pid, {one})
        assert client_cpus == [one]
        assert _affinity(server.pid) == before
        assert _affinity(early) == before_early
        assert text == "client and server share the CPUs (only 1 allowed)"
    finally:
        _finish(server)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs (CI's machine has two)")
def test_a_server_it_may_not_move_is_left_whole_and_the_results_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The refusal is the kernel's for another user's process; this runs as root, so it is played here,
    # for the child the server forked, after the server itself was moved.
    from bench import placement

    allowed = sorted(os.sched_getaffinity(0))
    server, early = _server()
    real = os.sched_setaffinity

    def refusing(pid: int, cpus: Any) -> None:
        if pid == early:
            raise PermissionError(1, "Operation not permitted")
        real(pid, cpus)

    monkeypatch.setattr(os, "sched_setaffinity", refusing)
    try:
        placement.place_apart(server.pid)
        assert (
            placement.placement()
            == "client and server share the CPUs (pinning the server: Operation not permitted)"
        )
        assert _affinity(server.pid) == allowed  # moved back: all or nothing
        assert sorted(os.sched_getaffinity(0)) == allowed  # the client was never pinned
    finally:
        monkeypatch.setattr(placement, "_placement", None)
        _finish(server)
