"""A small timing harness shared by poolshift's benchmarks.

Each benchmark measures several *contenders* doing the same operation in the same run, so the figures
that matter are ratios between them, not absolute times (which depend on the machine). A contender is
timed in ``rounds`` rounds of ``ops`` operations; the per-operation time of each round is one sample, and
the report gives the median and the interquartile range (IQR) of the samples, which ignore the odd slow
round caused by the scheduler instead of averaging it in.

Usage from a benchmark module::

    harness = Harness("http", quick=args.quick)
    harness.measure("urllib", lambda: ...)
    harness.report(baseline="urllib")     # prints a table, writes bench/results/http.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Measurement:
    name: str
    ops: int
    rounds: int
    median_s: float
    q1_s: float
    q3_s: float

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def ops_per_s(self) -> float:
        return 1.0 / self.median_s if self.median_s else float("inf")


def summarize(name: str, ops: int, samples: list[float]) -> Measurement:
    """Median and quartiles of per-operation times (``statistics.quantiles`` needs two samples)."""
    if len(samples) == 1:
        return Measurement(name, ops, 1, samples[0], samples[0], samples[0])
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Measurement(name, ops, len(samples), median, q1, q3)


class Harness:
    """Times contenders and reports them relative to a baseline."""

    def __init__(self, name: str, *, quick: bool = False, ops: int = 200, rounds: int = 15) -> None:
        self.name = name
        self.quick = quick
        self.ops = max(ops // 10, 1) if quick else ops
        self.rounds = 5 if quick else rounds
        self.results: list[Measurement] = []

    def measure(self, name: str, operation: Callable[[], object], *, warmup: int = 10) -> Measurement:
        """Run ``operation`` ``ops`` times per round, ``rounds`` rounds, after ``warmup`` untimed calls."""
        for _ in range(warmup):
            operation()
        samples = []
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection landing in one round would show up as noise in that round only
        try:
            for _ in range(self.rounds):
                start = time.perf_counter()
                for _ in range(self.ops):
                    operation()
                samples.append((time.perf_counter() - start) / self.ops)
        finally:
            if gc_was_enabled:
                gc.enable()
        result = summarize(name, self.ops, samples)
        self.results.append(result)
        return result

    def ratios(self, baseline: str) -> dict[str, float]:
        """Speed of each contender relative to ``baseline`` (2.0 = twice as fast)."""
        base = next(r for r in self.results if r.name == baseline)
        return {r.name: base.median_s / r.median_s for r in self.results}

    def report(self, baseline: str, notes: dict[str, Any] | None = None) -> dict[str, Any]:
        """Print a table and write ``bench/results/<name>.json``; returns the JSON document."""
        ratios = self.ratios(baseline)
        print(f"\n{self.name}: {self.rounds} rounds x {self.ops} ops, median (IQR) per op")
        for result in self.results:
            print(
                f"  {result.name:<28} {result.median_s * 1e6:9.1f} us  (IQR {result.iqr_s * 1e6:7.1f} us)"
                f"  {ratios[result.name]:6.2f}x vs {baseline}"
            )
        document = {
            "benchmark": self.name,
            "quick": self.quick,
            "baseline": baseline,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "results": [
                {
                    **asdict(r),
                    "iqr_s": r.iqr_s,
                    "ops_per_s": r.ops_per_s,
                    "speedup_vs_baseline": ratios[r.name],
                }
                for r in self.results
            ],
            "notes": notes or {},
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{self.name}.json").write_text(json.dumps(document, indent=2) + "\n")
        return document


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options every benchmark accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test, not a measurement")
    return parser.parse_args(argv)
