"""Per-file limits: size, time and memory, so one hostile file costs a bounded share of a run.

A generated 5 MB module or 500 nested calls can make a parser or a code generator take minutes and
gigabytes; the engine refuses such a file (it is reported and left byte-for-byte untouched) instead of
letting it hold up or kill the run. Size is checked before anything is parsed; time is a CPU-time timer
signal in the process that transforms the file (CPU time, not wall time: on a loaded machine a file gets
the same budget of work, so the same files are refused whatever else runs); memory is an address-space
limit on the worker processes (never on the process the user started, whose own allocations are not ours
to cap).
"""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

__all__ = ["DEFAULT_LIMITS", "FileTimeout", "Limits", "cap_memory", "time_limit"]


@dataclass(frozen=True)
class Limits:
    """The per-file guards; 0 turns one off. Defaults and advice: migration_guide/README.md#limits."""

    #: A file larger than this is reported ``file-too-large`` without being parsed.
    max_bytes: int = 2 * 1024 * 1024
    #: Parsing, analysing and rewriting one file for more CPU seconds than this is stopped: ``timeout``.
    time_s: float = 60.0
    #: Address space of each worker process; a file that needs more is reported ``memory-limit``.
    memory_bytes: int = 4 * 1024 * 1024 * 1024


DEFAULT_LIMITS = Limits()


class FileTimeout(Exception):
    """Raised inside the transform when its time is up."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`FileTimeout` in this thread after ``seconds`` of CPU time (no-op off the main thread
    or for 0).

    A timer signal interrupts Python code wherever it is; native code (LibCST's parser) is interrupted as
    soon as it returns to Python, which the size limit keeps short. The timer counts the process's CPU
    time (``ITIMER_PROF``), not wall time: transforming a file never waits on anything, and a wall-clock
    limit refused ordinary files on a machine busy with other work.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise FileTimeout(f"over the {seconds:g} s limit per file")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def cap_memory(limit_bytes: int) -> None:
    """Limit this process's address space (used as a worker initializer); a MemoryError then says so."""
    if limit_bytes <= 0:
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
