"""Developer and CI sessions. `nox` with no arguments runs the default sessions (the README's test command).

Sessions:
- lint:   ruff (lint + format check) and mypy: strict on db_utils, codemods, bench and testservers; tests
          without the annotation requirements (pyproject.toml's [tool.mypy]).
- tests:  the pytest suite; starts its own PostgreSQL/HTTP servers on 127.0.0.1.
- parity: the legacy example app's suite passes identically before and after every migration phase.
- faults: PostgreSQL (and SQLite) under faults: restart, backend kills, a hung server, exhaustion, fork,
          dropped handles, leaks; prints the table of the README's reliability section.
- bench_quick: every benchmark at smoke-test size (CI): proves they run, prints figures, edits nothing.
- bench:  the full benchmark run (about 15 minutes): rewrites the README's figures and chart.
- demo:   the quick start: migrate a copy of the bundled example app and show what changed (no server).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.sessions = ["lint", "tests", "parity", "faults", "bench_quick"]
nox.options.error_on_missing_interpreters = True


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev,bench]")  # mypy follows bench/'s imports of its peers (matplotlib...)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")  # what and how strictly: [tool.mypy] in pyproject.toml


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    # tests/faults has its own session (with its table); running it here too would double its time.
    session.run("pytest", "--ignore=tests/faults", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run poolshift on a temporary copy of examples/legacy_app: scan, migrate every phase, show the diff,
    a suppressed call, and imports that `ruff check --select I` still finds sorted."""
    session.install(".", "ruff")
    workdir = Path(tempfile.mkdtemp(prefix="poolshift-demo-"))
    target = workdir / "legacy_app"
    shutil.copytree(ROOT / "examples" / "legacy_app", target, ignore=shutil.ignore_patterns("__pycache__"))
    session.chdir(target)
    session.run("git", "init", "-q", external=True)
    session.run("git", "add", "-A", external=True)
    env = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid"}
    session.run("git", "commit", "-qm", "legacy", external=True, env=env)
    session.run("poolshift", "scan", ".")
    session.run("poolshift", "migrate", ".", "--all")
    session.run("git", "--no-pager", "diff", "--stat", external=True)
    # Three files in full: the helper's own connect pooled (PS100), an idiomatic rewrite on the helper's
    # pool (PS101: products.product_count; the scan says why the others are not, users.user_count's
    # `except Exception` for one), and a drop-in (PS201).
    shown = ["legacy_app/db.py", "legacy_app/api/products.py", "legacy_app/cache.py"]
    session.run("git", "--no-pager", "diff", "--", *shown, external=True)
    session.run("poolshift", "check", ".", success_codes=[0, 1])
    # The deliberate `# poolshift: ignore[PS301]` in jobs/sync_prices.py: kept, reported as suppressed.
    session.run("poolshift", "scan", "legacy_app/jobs/sync_prices.py")
    # The imports poolshift added are where isort and ruff put them.
    session.run("ruff", "check", "--isolated", "--select", "I", "legacy_app")
    session.log(f"migrated copy left in {target} (the original examples/legacy_app is untouched)")
    if os.environ.get("CI"):
        shutil.rmtree(workdir, ignore_errors=True)


@nox.session
def parity(session: nox.Session) -> None:
    """Prove behavior parity on examples/legacy_app: its suite passes identically after every phase."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "tests.parity.driver", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """Every fault scenario in tests/faults (each with a fixed budget), then their table."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/faults", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Full benchmark run: figures and ratios against peers; updates the README table and chart."""
    session.install("-e", ".[dev,bench]")
    session.run("python", "-m", "bench.run_all", *session.posargs)


@nox.session
def bench_quick(session: nox.Session) -> None:
    """Every benchmark at smoke-test size: they must run end to end; no figure here is a measurement."""
    session.install("-e", ".[dev,bench]")
    session.run("python", "-m", "bench.run_all", "--quick", *session.posargs)
