"""Per-file limits: size, time and memory, so one hostile file costs a bounded share of a run.

A generated 5 MB module or 500 nested calls can make a parser or a code generator take minutes and
gigabytes; the engine refuses such a file (it is reported and left byte-for-byte untouched) instead of
letting it hold up or kill the run. Size is checked before anything is parsed; time is a CPU-time timer
signal in the process that transforms the file (CPU time, not wall time: on a loaded machine a file gets
the same budget of work, so the same files are refused whatever else runs); memory is an address-space
limit on the worker processes (never on the process the user started, whose own allocations are not ours
to cap).

Depth is the fourth guard. LibCST parses, analyses and renders a tree recursively, so a file nested a few
hundred levels (150 nested lists, 1000 chained ``+``, thousands of adjacent string literals) exhausts the
interpreter's default recursion limit although Python compiles it. That work runs in a thread of its own
with a large stack and a raised recursion limit (:func:`run_deep`), so such a file is simply migrated; a
file deeper still ends as a ``RecursionError`` (or LibCST's parser gives up), which :func:`nesting_depth`
attributes to the input or to a bug (see ``DEEP_NESTING``).

Both are predicted from CPython's tree before LibCST sees a file (:func:`measure`, :class:`Shape`): a
file whose tree is so large that LibCST would not get through it within the time limit is refused
at once (``timeout``) instead of burning its budget, and the read-only shortcut that judges calls
without LibCST (:mod:`codemods.detached`) is only taken where LibCST surely succeeds
(:func:`libcst_surely_succeeds`), so ``scan`` and ``check`` predict what ``migrate`` does.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import io
import resource
import signal
import sys
import threading
import tokenize
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Generic, TypeVar

__all__ = [
    "DEEP_NESTING",
    "DEFAULT_LIMITS",
    "FileTimeout",
    "Limits",
    "Shape",
    "cap_memory",
    "libcst_surely_succeeds",
    "measure",
    "nesting_depth",
    "predicted_timeout",
    "run_deep",
    "time_limit",
]

T = TypeVar("T")

#: The recursion limit while LibCST works on a file (:func:`run_deep`); enough for every input whose
#: depth LibCST's own parser accepts (it refuses a few thousand levels).
RECURSION_LIMIT = 20_000
#: The stack of that thread. CPython 3.11 spends well under 1 KiB of C stack per unit of recursion depth
#: (measured: a property recursing into itself, the deepest C path, overflows 16 MiB near 30,000 levels),
#: so this stack holds RECURSION_LIMIT with a wide margin: the limit raises RecursionError long before the
#: stack could overflow. It is address space, reserved per file being transformed, within the memory cap.
STACK_BYTES = 64 * 1024 * 1024
#: A RecursionError (or LibCST's parser refusing a file Python compiles) counts as the input's limit
#: (``too-deeply-nested``) when the file nests at least this deep (:func:`nesting_depth`); on a shallower
#: file it is a bug (``rule-crashed`` / ``internal-error``). Hand-written code nests a few dozen levels,
#: and a shallower file cannot exhaust RECURSION_LIMIT through LibCST (some ten frames per level).
DEEP_NESTING = 100
#: What LibCST and the rules get through per CPU second, in nodes of CPython's tree of a file (their cost
#: grows linearly with that count once nothing nests deep; the shape of the code moves it within a
#: factor of about two). SLOWEST: every rule on the file, on a loaded machine; a file that fits the time
#: limit even at that rate may be judged without LibCST. FASTEST: about what the rules a large file
#: needs reach on a 2-core CI machine (20,000 ``x = 1;`` statements, 80,000 nodes: 31 s; a 2 MB literal
#: dict, 177,000 nodes: over 60 s); a file over the time limit at that rate is refused without being
#: tried, since trying would only burn the limit (raising the time limit raises the bound with it).
SLOWEST_NODES_PER_S = 1_000
FASTEST_NODES_PER_S = 2_500


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


@dataclass(frozen=True)
class Shape:
    """What LibCST's work on a file will be like, told by CPython's tree of it (see :func:`measure`)."""

    #: How deep LibCST's tree goes (see :func:`measure`).
    depth: int
    #: Nodes of CPython's tree: LibCST's cost grows with it.
    nodes: int


def measure(text: str, tree: ast.Module | None = None) -> Shape:
    """The :class:`Shape` of ``text`` (``tree`` is CPython's parse of it, when the caller has it), measured
    without recursion; ``Shape(0, 0)`` when Python rejects the text.

    The depth is CPython's tree's, except where LibCST nests what CPython keeps flat: a chain of ``and``
    / ``or`` counts one level per operator, and a run of adjacent string literals (implicit
    concatenation, one constant for CPython) one level per literal.
    """
    if tree is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return Shape(0, 0)
    deepest = nodes = 0
    strings: list[ast.expr] = []
    pending: list[tuple[ast.AST, int]] = [(tree, 0)]
    while pending:
        node, depth = pending.pop()
        nodes += 1
        if isinstance(node, ast.BoolOp):
            depth += len(node.values) - 2
        elif isinstance(node, ast.JoinedStr) or (
            isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))
        ):
            strings.append(node)
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return Shape(max(deepest, _longest_string_run(text, strings, deepest)), nodes)


def nesting_depth(text: str) -> int:
    """How deep LibCST's tree of ``text`` goes (0 when Python rejects it): :func:`measure`'s depth."""
    return measure(text).depth


def libcst_surely_succeeds(shape: Shape, limits: Limits) -> bool:
    """Whether LibCST surely gets through a file of this shape: shallower than DEEP_NESTING (far from
    any recursion limit) and small enough to fit the time limit even at SLOWEST_NODES_PER_S."""
    return shape.depth < DEEP_NESTING and (
        limits.time_s <= 0 or shape.nodes <= limits.time_s * SLOWEST_NODES_PER_S
    )


def predicted_timeout(shape: Shape, time_s: float) -> str | None:
    """Why a file of this shape is not worth trying within ``time_s`` CPU seconds (None: try it).

    LibCST would run out of time on such a file after burning its whole budget; it is reported
    ``timeout`` at once instead. Below the bound the file is tried and the timer decides.
    """
    if time_s <= 0 or shape.nodes <= time_s * FASTEST_NODES_PER_S:
        return None
    return (
        f"predicted: {shape.nodes} syntax nodes, more than LibCST gets through in the {time_s:g} s limit "
        f"per file (at most {FASTEST_NODES_PER_S} a second); not tried"
    )


def _longest_string_run(text: str, strings: list[ast.expr], shorter_than: int) -> int:
    """The most string literals written next to each other (``"a" "b"``) among ``strings`` (CPython's
    string nodes of ``text``), f-strings counting as one; a run not longer than ``shorter_than`` (a depth
    the caller has already) may be left out.

    A run of k literals holds at least 2k quotes, so only a node with that many is tokenized: ordinary
    literals are never looked at twice, and the file is never tokenized whole.
    """
    lines = text.split("\n")
    encoded: dict[int, bytes] = {}  # ast's columns count UTF-8 bytes; a long line is encoded once

    def line_bytes(number: int) -> bytes:
        if number not in encoded:
            encoded[number] = lines[number - 1].encode()
        return encoded[number]

    longest = 0
    for node in strings:
        line, col, end_line, end_col = node.lineno, node.col_offset, node.end_lineno, node.end_col_offset
        if end_line is None or end_col is None:
            continue
        quotes_needed = 2 * max(shorter_than, longest, 1)
        if line == end_line and end_col - col < quotes_needed:
            continue  # too short to hold that many quotes
        if line == end_line:
            segment = line_bytes(line)[col:end_col].decode(errors="replace")
        else:
            first = line_bytes(line)[col:].decode(errors="replace")
            last = line_bytes(end_line)[:end_col].decode(errors="replace")
            segment = "\n".join([first, *lines[line : end_line - 1], last])
        if segment.count("'") + segment.count('"') >= quotes_needed:
            longest = max(longest, _string_run_of(f"({segment})"))
    return longest


def _string_run_of(text: str) -> int:
    """The most string literals written next to each other in ``text``, f-strings counting as one."""
    skipped = {tokenize.NL, tokenize.COMMENT, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    starts = {getattr(tokenize, "FSTRING_START", -1)}  # Python 3.12 tokenizes f-strings in parts
    ends = {getattr(tokenize, "FSTRING_END", -1)}
    longest = run = inside = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in starts:
                inside += 1
            elif token.type in ends:
                inside -= 1
                if not inside:
                    run += 1
            elif inside:
                continue
            elif token.type == tokenize.STRING:
                run += 1
            elif token.type not in skipped:
                run = 0
            longest = max(longest, run)
    except (tokenize.TokenError, SyntaxError):
        pass
    return longest


def run_deep(function: Callable[[], T]) -> T:
    """``function()`` in a thread with a STACK_BYTES stack and RECURSION_LIMIT, so deep inputs fit.

    Its result or exception is this call's. The recursion limit is the interpreter's (there is no
    per-thread one): it is raised while such a thread runs and restored when the last one ends; the
    calling thread waits meanwhile. The per-file timer (:func:`time_limit`) signals the main thread, which
    is waiting here: its FileTimeout is then raised in the working thread too (between two bytecodes, as a
    signal would have been) before it is raised here, so no work outlives its file. Where no such thread
    can be started, ``function`` runs in this thread with the limits it has.
    """
    call = _DeepCall(function)
    try:
        if not call.start():
            return function()
        call.thread.join()
    except FileTimeout:  # the timer may fire while the thread starts, too
        call.cancel()
        raise
    return call.result()


class _DeepCall(Generic[T]):
    """One :func:`run_deep` call: its thread, its outcome, and the way in for a timeout."""

    def __init__(self, function: Callable[[], T]) -> None:
        self.function = function
        self.thread = threading.Thread(target=self._work, name="poolshift-deep", daemon=True)
        self.outcome: list[tuple[bool, object]] = []
        self._lock = threading.Lock()  # a timeout is only raised in the thread while the function runs
        self._running = False
        self._cancelled = False

    def start(self) -> bool:
        with _THREAD_SETUP:
            previous = threading.stack_size()
            try:
                threading.stack_size(STACK_BYTES)
                self.thread.start()
            except (RuntimeError, MemoryError, ValueError):
                return False  # no room for the stack (a small memory cap): run with the usual limits
            finally:
                threading.stack_size(previous)
        return True

    def _work(self) -> None:
        # The timer's SIGPROF (and a Ctrl-C) must reach the main thread: delivered here, they would not
        # wake the main thread's wait, and handlers only ever run there.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FOR_MAIN_THREAD)
        with _RECURSION.raised(RECURSION_LIMIT):
            try:
                with self._lock:
                    if self._cancelled:
                        raise FileTimeout("cancelled before it started")
                    self._running = True
                try:
                    value: object = self.function()
                finally:
                    with self._lock:
                        self._running = False
                self.outcome.append((True, value))
            except BaseException as exc:  # handed to the caller: every failure is the file's to report
                self.outcome.append((False, exc))

    def cancel(self) -> None:
        """Stop the thread (its time is up) and wait for it."""
        with self._lock:
            self._cancelled = True
            if self._running and self.thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread.ident), ctypes.py_object(FileTimeout)
                )
        if self.thread.ident is not None:  # else it never started, or it sees ``_cancelled`` first thing
            self.thread.join()

    def result(self) -> T:
        succeeded, value = self.outcome[0]
        if not succeeded:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]


class _SharedLimit:
    """The interpreter's recursion limit, raised while at least one deep thread runs (counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0

    @contextlib.contextmanager
    def raised(self, limit: int) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = sys.getrecursionlimit()
                sys.setrecursionlimit(max(limit, self._saved))
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    sys.setrecursionlimit(self._saved)


_FOR_MAIN_THREAD = {signal.SIGPROF, signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
_THREAD_SETUP = threading.Lock()  # threading.stack_size is process-wide: set, start, restore as one step
_RECURSION = _SharedLimit()
