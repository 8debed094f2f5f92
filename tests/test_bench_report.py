"""bench.report.markdown: the README block says how each benchmark ran and what each contender's code cost."""

from __future__ import annotations

from typing import Any

from bench.report import markdown

MACHINE = {"date": "2026-11-29 05:35 UTC", "cpu": "Xeon", "cores": 2, "python": "3.11.7", "postgres": "15.18",
           "packages": {}, "cpu idle": "idle CPUs poll (PM QoS latency 0 us held)"}  # fmt: skip


def _row(name: str, median_s: float, cpu_s: float | None, speedup: float) -> dict[str, Any]:
    return {"name": name, "median_s": median_s, "iqr_s": 1e-6, "cpu_s": cpu_s, "speedup_vs_baseline": speedup}


def test_a_timed_benchmark_shows_client_cpu_and_a_pinned_one_says_where_it_ran() -> None:
    postgres = {
        "benchmark": "postgres",
        "baseline": "connect",
        "placement": "client pinned to CPU 0, server to CPU 1",
        "results": [_row("connect", 4.8e-3, 2.2e-3, 1.0), _row("limit", 37.6e-6, 17.8e-6, 127.07)],
    }
    load = {"benchmark": "load", "baseline": "connect", "results": [_row("shim", 19.5e-3, None, 16.1)]}
    block = markdown([postgres, load], MACHINE).splitlines()
    assert block[0].endswith(
        "idle CPUs poll (PM QoS latency 0 us held); postgres: client pinned to CPU 0, server to CPU 1."
    )
    assert "| postgres | median per op | IQR | client CPU per op | speed vs connect |" in block
    assert "| limit | 37.6 µs | 1.0 µs | 17.8 µs | 127.07x |" in block
    assert "| load | median per op | IQR | speed vs connect |" in block  # nothing measured CPU: no column
    assert "| shim | 19.50 ms | 1.0 µs | 16.10x |" in block
