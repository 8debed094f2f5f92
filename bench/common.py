"""A small timing harness shared by poolshift's benchmarks.

Each benchmark measures several *contenders* doing the same operation in the same run, so the figures
that matter are ratios between them, not absolute times (which depend on the machine). A contender is
timed in ``rounds`` rounds of ``ops`` operations; the per-operation time of each round is one sample, and
the report gives the median and the interquartile range (IQR) of the samples, which ignore the odd slow
round caused by the scheduler instead of averaging it in.

Usage from a benchmark module::

    harness = Harness("http", quick=args.quick)
    harness.measure_interleaved({"urllib": lambda: ..., "pooled": lambda: ...})
    targets = [Target.at_least("pooled >= 5x urllib", harness.paired_ratio("urllib", "pooled"), 5.0)]
    harness.report(baseline="urllib", targets=targets)  # prints a table, writes bench/results/http.json

Prefer :meth:`Harness.measure_interleaved` over :meth:`Harness.measure`: on a shared 2-core machine the
background load drifts over seconds, and measuring contender A for ten seconds and then B for ten seconds
lets that drift masquerade as a difference between A and B. Interleaved rounds (A, B, C, then B, C, A...)
expose every contender to the same drift, and :meth:`Harness.paired_ratio` compares rounds that ran side
by side, which cancels most of it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.placement import placement

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Linux's PM QoS interface: while a process keeps it open with a value written, no CPU enters an idle
#: state whose exit latency exceeds that many microseconds (tuned's latency-performance profile does this).
CPU_LATENCY_DEVICE = Path("/dev/cpu_dma_latency")
_cpu_latency_fd: int | None = None
_cpu_latency_refused: str | None = None


def hold_cpus_awake() -> None:
    """Keep idle CPUs polling instead of halting for the rest of this process (:func:`cpu_idle_state`).

    Every contender of a database or HTTP benchmark blocks on a socket several times per op. On a virtual
    machine whose idle CPUs halt at once (the ``haltpoll`` cpuidle driver with ``guest_halt_poll_ns=0``),
    each wake-up then goes through the hypervisor, which adds tens of microseconds per round trip and
    several-fold to every contender's CPU time, in phases that come and go (bench/README.md, "Reading the
    figures"): the ratios then measure the hypervisor, not the pools. A PM QoS request of 0 us makes the
    idle loop poll, the same for every contender. Needs write access to the device (root); otherwise the
    run goes on as the machine is, and the results say so.
    """
    global _cpu_latency_fd, _cpu_latency_refused  # noqa: PLW0603 - one request per process, released at exit
    if _cpu_latency_fd is not None:
        return
    try:
        fd = os.open(CPU_LATENCY_DEVICE, os.O_WRONLY)
    except OSError as error:
        _cpu_latency_refused = error.strerror or type(error).__name__
        return
    os.write(fd, struct.pack("i", 0))
    _cpu_latency_fd = fd


def cpu_idle_state() -> str:
    """What the results document records about :func:`hold_cpus_awake`."""
    if _cpu_latency_fd is not None:
        return "idle CPUs poll (PM QoS latency 0 us held)"
    if _cpu_latency_refused is not None:
        return f"idle CPUs as configured ({CPU_LATENCY_DEVICE}: {_cpu_latency_refused})"
    return "idle CPUs as configured"


@dataclass(frozen=True)
class Measurement:
    name: str
    ops: int
    rounds: int
    median_s: float
    q1_s: float
    q3_s: float
    #: Median client-side CPU time per op (this thread only): the part of the cost the pool's own Python
    #: code can change; the rest of median_s is waiting for the server and the network.
    cpu_s: float | None = None
    #: The fastest round's per-op time: what the machine gives when nothing else runs (a floor).
    min_s: float | None = None

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def ops_per_s(self) -> float:
        return 1.0 / self.median_s if self.median_s else float("inf")


def summarize(
    name: str, ops: int, samples: list[float], cpu_samples: list[float] | None = None
) -> Measurement:
    """Median and quartiles of per-operation times (``statistics.quantiles`` needs two samples)."""
    cpu = statistics.median(cpu_samples) if cpu_samples else None
    if len(samples) == 1:
        return Measurement(name, ops, 1, samples[0], samples[0], samples[0], cpu, samples[0])
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Measurement(name, ops, len(samples), median, q1, q3, cpu, min(samples))


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, with the figure measured in this run (recorded, never asserted)."""

    name: str
    target: str
    measured: float
    met: bool
    limit: str = ""

    @classmethod
    def at_least(cls, name: str, measured: float, threshold: float, limit: str = "") -> Target:
        met = measured >= threshold
        return cls(name, f">= {threshold:g}", round(measured, 4), met, "" if met else limit)

    @classmethod
    def at_most(cls, name: str, measured: float, threshold: float, limit: str = "") -> Target:
        met = measured <= threshold
        return cls(name, f"<= {threshold:g}", round(measured, 4), met, "" if met else limit)


@contextmanager
def gc_paused() -> Iterator[None]:
    """A collection landing in one round would show up as noise in that round only."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Harness:
    """Times contenders and reports them relative to a baseline."""

    def __init__(self, name: str, *, quick: bool = False, ops: int = 200, rounds: int = 15) -> None:
        self.name = name
        self.quick = quick
        self.ops = max(ops // 10, 1) if quick else ops
        self.rounds = 5 if quick else rounds
        self.results: list[Measurement] = []
        self.samples: dict[str, list[float]] = {}  # per-op seconds of each round, in round order

    def measure(self, name: str, operation: Callable[[], object], *, warmup: int = 10) -> Measurement:
        """Run ``operation`` ``ops`` times per round, ``rounds`` rounds, after ``warmup`` untimed calls."""
        for _ in range(warmup):
            operation()
        samples: list[float] = []
        cpu_samples: list[float] = []
        with gc_paused():
            for _ in range(self.rounds):
                wall, cpu = _time_round(operation, self.ops)
                samples.append(wall)
                cpu_samples.append(cpu)
        return self._record(name, self.ops, samples, cpu_samples)

    def measure_interleaved(
        self,
        operations: Mapping[str, Callable[[], object]],
        *,
        ops: Mapping[str, int] | None = None,
        warmup: int = 10,
    ) -> list[Measurement]:
        """Time every contender in alternating rounds, so machine noise hits all of them alike.

        Round ``r`` runs the contenders in the given order rotated by ``r`` (A B C, B C A, C A B...), so
        none always runs right after the same neighbour. ``ops`` overrides the operations per round for
        slow contenders (full-mode counts; ``--quick`` divides them by 10 like the default).

        Rounds, not single operations, alternate: a database benchmark interleaved op by op makes
        every operation wake a different server process, which measures scheduler wake-ups instead.
        """
        names = list(operations)
        per_round = {name: self._scaled(ops.get(name)) if ops else self.ops for name in names}
        for name in names:
            for _ in range(warmup):
                operations[name]()
        samples: dict[str, list[float]] = {name: [] for name in names}
        cpu_samples: dict[str, list[float]] = {name: [] for name in names}
        with gc_paused():
            for round_index in range(self.rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    wall, cpu = _time_round(operations[name], per_round[name])
                    samples[name].append(wall)
                    cpu_samples[name].append(cpu)
        return [self._record(name, per_round[name], samples[name], cpu_samples[name]) for name in names]

    def _scaled(self, ops: int | None) -> int:
        if ops is None:
            return self.ops
        return max(ops // 10, 1) if self.quick else ops

    def _record(self, name: str, ops: int, samples: list[float], cpu_samples: list[float]) -> Measurement:
        result = summarize(name, ops, samples, cpu_samples)
        self.results = [r for r in self.results if r.name != name] + [result]
        self.samples[name] = samples
        return result

    def result(self, name: str) -> Measurement:
        return next(r for r in self.results if r.name == name)

    def paired_ratio(self, slower: str, faster: str) -> float:
        """Median over rounds of ``slower``'s time / ``faster``'s time in the *same* round (2.0 = twice as
        fast). With interleaved rounds this cancels drift that a ratio of medians would keep."""
        pairs = zip(self.samples[slower], self.samples[faster], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def ratios(self, baseline: str) -> dict[str, float]:
        """Speed of each contender relative to ``baseline`` (2.0 = twice as fast)."""
        base = next(r for r in self.results if r.name == baseline)
        return {r.name: base.median_s / r.median_s for r in self.results}

    def report(
        self,
        baseline: str,
        notes: dict[str, Any] | None = None,
        targets: list[Target] | None = None,
    ) -> dict[str, Any]:
        """Print a table and write ``bench/results/<name>.json``; returns the JSON document."""
        ratios = self.ratios(baseline)
        print(f"\n{self.name}: {self.rounds} rounds x {self.ops} ops, median (IQR) per op")
        for result in self.results:
            cpu = f"  cpu {result.cpu_s * 1e6:7.1f} us" if result.cpu_s is not None else ""
            cpu += f"  best {result.min_s * 1e6:7.1f} us" if result.min_s is not None else ""
            print(
                f"  {result.name:<40} {result.median_s * 1e6:9.1f} us  (IQR {result.iqr_s * 1e6:7.1f} us)"
                f"  {ratios[result.name]:7.2f}x vs {baseline}{cpu}"
            )
        print_targets(targets or [])
        document = {
            "benchmark": self.name,
            "quick": self.quick,
            "baseline": baseline,
            **environment(),
            "results": [
                {
                    **asdict(r),
                    "iqr_s": r.iqr_s,
                    "ops_per_s": r.ops_per_s,
                    "speedup_vs_baseline": ratios[r.name],
                    "samples_s": self.samples.get(r.name, []),
                }
                for r in self.results
            ],
            "notes": notes or {},
        }
        if targets is not None:
            document["targets"] = [asdict(t) for t in targets]
        write_document(self.name, document)
        return document


def write_document(name: str, document: dict[str, Any]) -> Path:
    """Write a results document that does not come from :meth:`Harness.report` (e.g. a load test)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def print_targets(targets: list[Target]) -> None:
    for t in targets:
        verdict = "met" if t.met else "NOT met"
        limit = f" -- {t.limit}" if t.limit else ""
        print(f"  target {t.name}: {t.target}, measured {t.measured:g}: {verdict}{limit}")


def environment() -> dict[str, Any]:
    """The fields every results document starts with (``placement`` only where the benchmark pinned)."""
    fields = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu idle": cpu_idle_state()}
    if placement():
        fields["placement"] = placement()
    return fields


def _time_round(operation: Callable[[], object], ops: int) -> tuple[float, float]:
    """Per-op wall and thread-CPU seconds of one round."""
    cpu_start = time.thread_time()
    start = time.perf_counter()
    for _ in range(ops):
        operation()
    wall = time.perf_counter() - start
    return wall / ops, (time.thread_time() - cpu_start) / ops


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options every benchmark accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test, not a measurement")
    add_idle_option(parser)
    add_placement_option(parser)
    arguments = parser.parse_args(argv)
    if not arguments.let_cpus_idle:
        hold_cpus_awake()
    return arguments


def add_placement_option(parser: argparse.ArgumentParser) -> None:
    """``--unpinned``: leave client and server placement to the scheduler (see bench/placement.py)."""
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="do not pin the client and a local server to separate CPUs (bench/placement.py): to see what "
        "pinning changes",
    )


def add_idle_option(parser: argparse.ArgumentParser) -> None:
    """``--let-cpus-idle``: measure with the machine's own idle policy (see :func:`hold_cpus_awake`)."""
    parser.add_argument(
        "--let-cpus-idle",
        action="store_true",
        help="do not hold idle CPUs polling (bench/README.md, 'Reading the figures'): to see what it changes",
    )
