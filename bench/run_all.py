"""Run every benchmark, then aggregate: ``python -m bench.run_all [--quick] [--only NAME ...]``.

Each benchmark runs in its own subprocess (a fresh interpreter: no pool, cache or imported module from one
benchmark can flatter the next). A full run rewrites the README's benchmark block and the chart; a quick
run (CI's smoke test) only prints and writes bench/results/last-run.json, so CI never edits the checkout.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import add_idle_option, add_placement_option, cpu_idle_state, hold_cpus_awake

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("postgres", "load", "sqlite", "http", "codemod")
PACKAGES = ("SQLAlchemy", "psycopg2-binary", "psycopg", "psycopg-pool", "DBUtils", "urllib3", "libcst")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _postgres_version() -> str:
    sys.path.insert(0, str(ROOT))
    from testservers.postgres import find_bindir

    try:
        output = subprocess.run(
            [str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError, RuntimeError):  # the version is decoration only
        return "?"
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
    match = re.search(r"\(PostgreSQL\) (\S+)", output)
    return match.group(1) if match else output.strip()


def machine_info() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": _postgres_version(),
        "packages": versions,
        "cpu idle": cpu_idle_state(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (CI); leaves the README alone")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only these benchmarks")
    add_idle_option(parser)
    add_placement_option(parser)
    args = parser.parse_args(argv)
    if not args.let_cpus_idle:
        hold_cpus_awake()  # for the whole run, each benchmark's subprocess included (it holds its own too)
    failures = []
    for name in args.only or BENCHMARKS:
        script = ROOT / "bench" / f"bench_{name}.py"
        print(f"\n=== bench_{name}{' (quick)' if args.quick else ''}", flush=True)
        options = [
            *(["--quick"] if args.quick else []),
            *(["--let-cpus-idle"] if args.let_cpus_idle else []),
            *(["--unpinned"] if args.unpinned else []),
        ]
        command = [sys.executable, str(script), *options]
        if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            failures.append(name)
    from bench.report import write_report

    write_report(machine_info(), readme=not args.quick and not args.only)
    if failures:
        print(f"benchmarks that crashed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
