"""Behavior parity: a legacy app's own test suite passes identically before and after each migration phase.

The driver copies the app to a temporary git repository, runs its suite (the baseline), then for each phase
of the app's ``[tool.poolshift]`` plan runs ``poolshift migrate --phase N`` followed by the suite again, and
finally the cleanup phase. Per-test outcomes are compared with the baseline at every step; the first
difference fails the run and prints which tests changed, at which phase, and that phase's diff.

It also checks what pooling *must* change: the connections the suite opens on the server drop from one per
call to at most the pool's bound, and ``poolshift check`` finds no migratable site left, every reported site
carrying a reason code.

Run it with ``nox -s parity`` or ``python -m tests.parity.driver``. ``--poolshift`` replaces the command
used to run poolshift, which is how the test suite proves that a deliberately broken rule is caught.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_APP = ROOT / "examples" / "legacy_app"
#: DB_POOL_SIZE + DB_MAX_OVERFLOW defaults: the most connections a migrated app may open to one database.
POOL_BOUND = 10 + 20
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "parity",
    "GIT_AUTHOR_EMAIL": "parity@example.invalid",
    "GIT_COMMITTER_NAME": "parity",
    "GIT_COMMITTER_EMAIL": "parity@example.invalid",
}


class ParityFailure(Exception):
    """The migrated app behaves differently from the legacy app (or pooling did not take effect)."""


@dataclass
class SuiteRun:
    """One run of the app's test suite: per-test outcome and connections opened on the server."""

    label: str
    outcomes: dict[str, str]
    connections_opened: int | None

    @property
    def passed(self) -> int:
        return sum(outcome == "passed" for outcome in self.outcomes.values())

    @property
    def not_passed(self) -> int:
        return len(self.outcomes) - self.passed


@dataclass
class Step:
    phase: str
    migrated: int = 0
    reported: int = 0
    suite: SuiteRun | None = None
    reasons: dict[str, int] = field(default_factory=dict)


def _git(workdir: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=workdir,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def prepare_copy(app: Path, workdir: Path) -> Path:
    """Copy the app into a fresh git repository (git gives us each phase's diff for free)."""
    target = workdir / app.name
    shutil.copytree(app, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "commit", "-qm", "legacy")
    return target


def _outcomes(junit_xml: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in {"failure", "error", "skipped"}:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                break
        outcomes[test_id] = outcome
    return outcomes


def run_suite(app_dir: Path, label: str, scratch: Path) -> SuiteRun:
    """Run the app's own tests in a subprocess and collect per-test outcomes."""
    junit = scratch / f"{label}.xml"
    stats = scratch / f"{label}.json"
    env = {**os.environ, "POOLSHIFT_ROOT": str(ROOT), "PARITY_STATS_FILE": str(stats)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    result = subprocess.run(cmd, cwd=app_dir, env=env, capture_output=True, text=True, check=False)
    if not junit.exists():
        raise ParityFailure(f"the suite did not run at step {label!r}:\n{result.stdout}\n{result.stderr}")
    connections = json.loads(stats.read_text())["connections_opened"] if stats.exists() else None
    return SuiteRun(label, _outcomes(junit), connections)


def run_poolshift(poolshift: Sequence[str], app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*poolshift, *args], cwd=app_dir, capture_output=True, text=True, check=False)


def phase_names(app_dir: Path) -> list[str]:
    plan = tomllib.loads((app_dir / "pyproject.toml").read_text()).get("tool", {}).get("poolshift", {})
    return [phase["name"] for phase in plan.get("phases", [])] + ["cleanup"]


def migrate_phase(poolshift: Sequence[str], app_dir: Path, number: int, name: str) -> Step:
    result = run_poolshift(poolshift, app_dir, "migrate", ".", "--phase", str(number), "--format", "json")
    if result.returncode != 0:
        raise ParityFailure(
            f"poolshift migrate --phase {number} failed ({result.returncode}):\n{result.stderr}"
        )
    report = json.loads(result.stdout)
    step = Step(name)
    for site in report["sites"]:
        if site["status"] == "migrated":
            step.migrated += 1
        elif site["status"] == "reported":
            step.reported += 1
            step.reasons[site["reason"]] = step.reasons.get(site["reason"], 0) + 1
    return step


def compare(baseline: SuiteRun, run: SuiteRun) -> list[str]:
    """Every test whose outcome differs from the baseline (including tests that appeared or vanished)."""
    changes = []
    for test_id in sorted(baseline.outcomes.keys() | run.outcomes.keys()):
        before = baseline.outcomes.get(test_id, "absent")
        after = run.outcomes.get(test_id, "absent")
        if before != after:
            changes.append(f"{test_id}: {before} -> {after}")
    return changes


def check_final_state(poolshift: Sequence[str], app_dir: Path) -> None:
    check = run_poolshift(poolshift, app_dir, "check", ".")
    if check.returncode != 0:
        raise ParityFailure(
            f"poolshift check still finds work after every phase:\n{check.stdout}{check.stderr}"
        )
    scan = json.loads(run_poolshift(poolshift, app_dir, "scan", ".", "--format", "json").stdout)
    unexplained = [s for s in scan["sites"] if s["status"] == "reported" and not s["reason"]]
    if unexplained:
        raise ParityFailure(f"reported sites without a reason code: {unexplained}")


def check_pooling(baseline: SuiteRun, final: SuiteRun) -> None:
    if baseline.connections_opened is None or final.connections_opened is None:
        raise ParityFailure("the app's suite did not report the connections it opened (PARITY_STATS_FILE)")
    if final.connections_opened > POOL_BOUND:
        raise ParityFailure(
            f"after migration the suite opened {final.connections_opened} connections, more than the pool "
            f"bound of {POOL_BOUND}"
        )
    if final.connections_opened >= baseline.connections_opened:
        raise ParityFailure(
            f"pooling saved nothing: {baseline.connections_opened} connections before, "
            f"{final.connections_opened} after"
        )


def print_table(baseline: SuiteRun, steps: list[Step]) -> None:
    rows = [("step", "sites migrated", "sites reported", "tests passed", "connections opened")]
    rows.append(
        (
            "baseline",
            "-",
            "-",
            f"{baseline.passed}/{len(baseline.outcomes)}",
            str(baseline.connections_opened),
        )
    )
    for step in steps:
        assert step.suite is not None
        suite = step.suite
        rows.append(
            (
                step.phase,
                str(step.migrated),
                str(step.reported),
                f"{suite.passed}/{len(suite.outcomes)}",
                str(suite.connections_opened),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    reasons: dict[str, int] = {}
    for step in steps:
        for reason, count in step.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    if reasons:
        print(
            "reported by reason: "
            + ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        )


def run_parity(app: Path, poolshift: Sequence[str], workdir: Path) -> list[Step]:
    """The whole proof; raises ParityFailure at the first difference."""
    app_dir = prepare_copy(app, workdir)
    scratch = workdir / "runs"
    scratch.mkdir()
    baseline = run_suite(app_dir, "baseline", scratch)
    if baseline.not_passed:
        failing = [t for t, o in baseline.outcomes.items() if o != "passed"]
        raise ParityFailure(f"the legacy suite does not pass before migration: {failing}")
    steps: list[Step] = []
    for number, name in enumerate(phase_names(app_dir), start=1):
        step = migrate_phase(poolshift, app_dir, number, name)
        step.suite = run_suite(app_dir, f"phase-{number}", scratch)
        steps.append(step)
        changes = compare(baseline, step.suite)
        if changes:
            diff = _git(app_dir, "--no-pager", "diff")
            raise ParityFailure(
                f"behavior changed in phase {number} ({name}):\n  " + "\n  ".join(changes) + f"\n\n{diff}"
            )
        _git(app_dir, "add", "-A")
        _git(app_dir, "commit", "-qm", f"phase {number}: {name}", "--allow-empty")
    print_table(baseline, steps)
    check_final_state(poolshift, app_dir)
    assert steps[-1].suite is not None
    check_pooling(baseline, steps[-1].suite)
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=DEFAULT_APP, help="the legacy app (default: the example)")
    parser.add_argument(
        "--poolshift",
        default=f"{shlex.quote(sys.executable)} -m codemods",
        help="command that runs poolshift",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="poolshift-parity-") as tmp:
        try:
            run_parity(args.app.resolve(), shlex.split(args.poolshift), Path(tmp))
        except ParityFailure as failure:
            print(f"PARITY FAILED: {failure}", file=sys.stderr)
            return 1
    print("parity: every phase kept every test outcome identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
