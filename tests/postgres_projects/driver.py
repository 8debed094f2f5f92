"""End-to-end proof on real-shaped projects: each legacy project passes its own suite identically before and
after ``poolshift migrate --all``, and after migration stays within the pool bound of server connections.

For one project the driver copies it to a temporary git repository (``tests.parity.driver.prepare_copy``),
gives it its own role and database on a real PostgreSQL server, runs its suite (the legacy run), runs the
real ``poolshift`` command line with ``migrate <copy> --all``, checks that every connect site was routed to
``db_utils`` (the report says migrated; no call to ``psycopg2.connect`` is left in the app's code unless the
report names it), runs the suite again on a fresh database and compares per-test outcomes.

Server connections are counted per role from the server log (``log_connections`` plus
``log_disconnections``), so the count is exact and costs no sampling:
``opened`` is every session the run started, ``peak`` the most that were alive at once.

Run it with ``python -m tests.postgres_projects.driver [PROJECT ...]`` (it starts its own server), or through
``tests/test_postgres_projects.py`` in the default pytest run.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.parity.driver import ParityFailure, _outcomes, compare, prepare_copy
from tests.parity.driver import SuiteRun as ParitySuiteRun
from testservers.postgres import PostgresServer, start_postgres

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: The pool settings of every run; a migrated project may hold at most POOL_BOUND server connections.
POOL_SETTINGS = {"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "2"}
POOL_BOUND = int(POOL_SETTINGS["DB_POOL_SIZE"]) + int(POOL_SETTINGS["DB_MAX_OVERFLOW"])
#: The rule that rewrites psycopg2.connect call sites (or reports them with a reason).
CONNECT_RULE = "PS100"
#: The rule that rewrites a legacy helper's call site into ``with get_pooled_connection(helper)``.
POOLED_RULE = "PS101"
#: Inherited variables that could point a project somewhere else than the database the driver gives it.
_FOREIGN_ENV_PREFIXES = ("DB_", "POSTGRES_", "PG", "DATABASE_URL", "TEST_DATABASE_URL")


@dataclass(frozen=True)
class Project:
    """One fixture project under tests/postgres_projects/ and what its migration must achieve."""

    name: str
    #: The app's own package (relative to the project root): where no unreported connect may remain.
    package: str
    #: Minimum number of migrated sites per rule in the report.
    migrated: dict[str, int]


#: Each project and the migrated sites its report must show; what each one proves is in README.md here.
PROJECTS = {
    project.name: project
    for project in (
        Project("helpdesk", "helpdesk", {CONNECT_RULE: 1, POOLED_RULE: 3}),
        Project("inventory", "inventory", {CONNECT_RULE: 1, POOLED_RULE: 2}),
        Project("ledger", "ledger", {CONNECT_RULE: 1, POOLED_RULE: 6}),
        Project("shortlinks", "shortlinks", {CONNECT_RULE: 6}),
        Project("salesreports", "salesreports", {CONNECT_RULE: 1, POOLED_RULE: 2}),
        Project("tenants", "tenants", {CONNECT_RULE: 1, POOLED_RULE: 6}),
        Project("catalog", "catalog", {CONNECT_RULE: 1, POOLED_RULE: 2, "PS103": 2}),
    )
}


class ProjectFailure(ParityFailure):
    """The migrated project behaves differently, was not fully migrated, or was not pooled."""


@dataclass
class ConnectionUse:
    """Server sessions of one role during one run, read from the server log."""

    opened: int = 0
    peak: int = 0


@dataclass
class SuiteRun(ParitySuiteRun):
    """The parity session's run (outcomes, sessions opened) plus the peak and the suite's output."""

    peak: int = 0
    output: str = field(repr=False, default="")

    @property
    def failing(self) -> list[str]:
        return [test for test, outcome in self.outcomes.items() if outcome != "passed"]


@dataclass
class Result:
    project: Project
    legacy: SuiteRun
    migrated: SuiteRun
    migrated_sites: dict[str, int]
    reported_sites: list[dict[str, object]]

    def summary(self) -> str:
        before, after = self.legacy, self.migrated
        return (
            f"{self.project.name:<13} {len(before.outcomes)} tests identical; sites migrated "
            f"{_counts(self.migrated_sites)}; server connections of the role: legacy peak {before.peak}, "
            f"opened {before.connections_opened}; migrated peak {after.peak}, opened "
            f"{after.connections_opened} (bound {POOL_BOUND}); reported {_counts(self.reported_reasons)}"
        )

    @property
    def reported_reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for site in self.reported_sites:
            key = f"{site['rule']} {site['reason']}"
            counts[key] = counts.get(key, 0) + 1
        return counts


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in sorted(counts.items())) or "none"


# -- the project's role and database -------------------------------------------------------------------


@dataclass
class Sandbox:
    """A role of its own (CREATEDB, disconnections logged) owning a database of its own."""

    server: PostgresServer
    role: str
    password: str = field(repr=False)

    @classmethod
    def create(cls, server: PostgresServer, name: str) -> Sandbox:
        sandbox = cls(server, f"proj_{name}", "pw-" + secrets.token_hex(8))
        server.query(f"DROP ROLE IF EXISTS {sandbox.role}")
        server.query(f"CREATE ROLE {sandbox.role} LOGIN CREATEDB PASSWORD '{sandbox.password}'")
        log_disconnections(server)
        return sandbox

    @property
    def url(self) -> str:
        """libpq URL of the project's database, handed to its suite as TEST_DATABASE_URL."""
        return f"postgresql://{self.role}:{self.password}@{self.server.host}:{self.server.port}/{self.role}"

    def fresh_database(self) -> None:
        """Drop whatever the role owns (a previous run's tables, leftover tenant databases), start empty."""
        self.drop_databases()
        self.server.query(f"CREATE DATABASE {self.role} OWNER {self.role}")

    def drop_databases(self) -> None:
        owned = self.server.query(
            "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %s",
            (self.role,),
        )
        for (name,) in owned:
            self.server.query(f'DROP DATABASE "{name}" WITH (FORCE)')

    def remove(self) -> None:
        self.drop_databases()
        self.server.query(f"DROP ROLE IF EXISTS {self.role}")


# -- connection counting -------------------------------------------------------------------------------


def log_disconnections(server: PostgresServer) -> None:
    """Make the server log every session's end: the peak is computed from these lines.

    It cannot be set per role (it is fixed at connection start), so it is set server-wide; it only adds
    log lines. The reload is asynchronous: wait until a new session sees it.
    """
    if server.query("SHOW log_disconnections") == [("on",)]:
        return
    server.query("ALTER SYSTEM SET log_disconnections = on")
    server.query("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 60
    while server.query("SHOW log_disconnections") != [("on",)]:
        if time.monotonic() > deadline:
            raise ProjectFailure("the server did not apply log_disconnections = on after a reload")


_AUTHORIZED = re.compile(r"\[(\d+)\] LOG:  connection authorized: user=(\S+)")
# A session ends with its disconnection line, or with a FATAL error after authorization (a database that
# does not exist, a terminated backend): such a session never logs its disconnection.
_ENDED = re.compile(r"\[(\d+)\] (?:LOG:  disconnection: |FATAL:  )")


class ServerLog:
    """Reads the server log from a mark on, and counts one role's sessions in what was written since."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def sessions(self, since: int, role: str) -> ConnectionUse:
        with self.path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        use, alive = ConnectionUse(), set()
        for line in text.splitlines():
            if (started := _AUTHORIZED.search(line)) and started[2] == role:
                alive.add(started[1])
                use.opened += 1
                use.peak = max(use.peak, len(alive))
            elif ended := _ENDED.search(line):
                alive.discard(ended[1])  # another role's, or from before the mark: never counted
        return use


# -- one run of the project's suite ---------------------------------------------------------------------


def _suite_env(sandbox: Sandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES) or k == "PG_BINDIR"}
    return {**env, **POOL_SETTINGS, "TEST_DATABASE_URL": sandbox.url, "PYTHONDONTWRITEBYTECODE": "1"}


def run_suite(app_dir: Path, sandbox: Sandbox, label: str, scratch: Path) -> SuiteRun:
    """One pytest subprocess on a fresh database; per-test outcomes and the role's server sessions."""
    sandbox.fresh_database()
    log = ServerLog(sandbox.server.tmpdir / "postgres.log")
    mark = log.mark()
    junit = scratch / f"{label}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    result = subprocess.run(
        cmd, cwd=app_dir, env=_suite_env(sandbox), capture_output=True, text=True, check=False, timeout=300
    )
    output = result.stdout + result.stderr
    if not junit.exists():
        raise ProjectFailure(f"the suite did not run ({label}):\n{output}")
    # Drop the databases first: DROP DATABASE returns once their backends have exited, and a backend logs
    # its disconnection before it exits, so every line of this run is in the log we read.
    sandbox.drop_databases()
    use = log.sessions(mark, sandbox.role)
    return SuiteRun(label, _outcomes(junit), use.opened, peak=use.peak, output=output)


# -- the migration --------------------------------------------------------------------------------------


def poolshift_command() -> list[str]:
    """The installed console script (the real CLI), else the same entry point through the interpreter."""
    script = Path(sys.executable).with_name("poolshift")
    return [str(script)] if script.exists() else [sys.executable, "-m", "codemods"]


def migrate(app_dir: Path) -> dict[str, object]:
    cmd = [*poolshift_command(), "migrate", str(app_dir), "--all", "--format", "json"]
    result = subprocess.run(cmd, cwd=app_dir, capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise ProjectFailure(
            f"poolshift migrate --all exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _connect_calls(source: str) -> Iterator[int]:
    """Lines calling ``psycopg2.connect`` through any import style (module alias or imported function)."""
    tree = ast.parse(source)
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name for alias in node.names if alias.name == "psycopg2"}
        elif isinstance(node, ast.ImportFrom) and node.module == "psycopg2":
            functions |= {alias.asname or alias.name for alias in node.names if alias.name == "connect"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id in functions) or (
            isinstance(func, ast.Attribute)
            and func.attr == "connect"
            and isinstance(func.value, ast.Name)
            and func.value.id in modules
        ):
            yield node.lineno


def check_routed(
    project: Project, app_dir: Path, report: dict[str, object]
) -> tuple[dict[str, int], list[dict[str, object]]]:
    """The report migrated what the project needs, and every connect call left is one the report names."""
    sites: list[dict[str, object]] = report["sites"]  # type: ignore[assignment]
    migrated: dict[str, int] = {}
    for site in sites:
        if site["status"] == "migrated":
            migrated[str(site["rule"])] = migrated.get(str(site["rule"]), 0) + 1
    reported = [site for site in sites if site["status"] == "reported"]
    if any(migrated.get(rule, 0) < n for rule, n in project.migrated.items()):
        shown = "".join(
            f"\n  {s['path']}:{s['line']} {s['rule']} {s['reason']}: {s['message']}" for s in reported
        )
        raise ProjectFailure(
            f"expected migrated sites {_counts(project.migrated)}, the report has {_counts(migrated)}; "
            f"reported:{shown or ' none'}"
        )
    left = []
    for path in sorted((app_dir / project.package).rglob("*.py")):
        relative = path.relative_to(app_dir).as_posix()
        calls = list(_connect_calls(path.read_text()))
        # A site the connect rule reported was left alone on purpose (lines may have moved: count them).
        named = sum(1 for s in reported if s["rule"] == CONNECT_RULE and s["path"] == relative)
        if len(calls) > named:
            left += [f"{relative}:{line}" for line in calls]
    if left:
        raise ProjectFailure(f"psycopg2.connect calls left in app code and not reported: {left}")
    return migrated, reported


# -- the whole proof for one project --------------------------------------------------------------------


def run_project(project: Project, server: PostgresServer, workdir: Path) -> Result:
    """Legacy run, migration, migrated run, comparison; raises ProjectFailure at the first problem."""
    app_dir = prepare_copy(HERE / project.name, workdir)
    scratch = workdir / "runs"
    scratch.mkdir()
    sandbox = Sandbox.create(server, project.name)
    try:
        legacy = run_suite(app_dir, sandbox, "legacy", scratch)
        if not legacy.outcomes or legacy.failing:
            raise ProjectFailure(f"the legacy suite does not pass: {legacy.failing}\n{legacy.output}")
        try:
            migrated_sites, reported = check_routed(project, app_dir, migrate(app_dir))
            migrated = run_suite(app_dir, sandbox, "migrated", scratch)
        except ProjectFailure as failure:
            raise ProjectFailure(f"{_legacy_line(legacy)}\n{failure}") from None
    finally:
        sandbox.remove()
    result = Result(project, legacy, migrated, migrated_sites, reported)
    changes = compare(legacy, migrated)
    if changes:
        diff = subprocess.run(
            ["git", "--no-pager", "diff"], cwd=app_dir, capture_output=True, text=True, check=False
        ).stdout
        raise ProjectFailure(
            "test outcomes changed after migration:\n  "
            + "\n  ".join(changes)
            + f"\n\nthe migrated suite's output (end):\n{_tail(migrated.output)}\n\nthe migration:\n{diff}"
        )
    check_pooled(result)
    return result


def _tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _legacy_line(legacy: SuiteRun) -> str:
    return (
        f"legacy run: {len(legacy.outcomes)} tests passed; server connections of the role: peak "
        f"{legacy.peak}, opened {legacy.connections_opened}"
    )


def check_pooled(result: Result) -> None:
    """At most the bound at once after migration; the legacy run opened more than that, and more overall."""
    before, after = result.legacy, result.migrated
    assert before.connections_opened is not None
    assert after.connections_opened is not None
    if after.peak > POOL_BOUND:
        raise ProjectFailure(f"migrated run held {after.peak} server connections at once, bound {POOL_BOUND}")
    if before.connections_opened <= POOL_BOUND:
        raise ProjectFailure(
            f"the legacy run opened only {before.connections_opened} connections, no more than the bound "
            f"{POOL_BOUND}: this project proves nothing about pooling"
        )
    if after.connections_opened >= before.connections_opened:
        raise ProjectFailure(
            f"pooling saved nothing: legacy opened {before.connections_opened} connections, migrated "
            f"{after.connections_opened} (bound {POOL_BOUND})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "projects", nargs="*", metavar="PROJECT", help=f"default: all of {', '.join(PROJECTS)}"
    )
    args = parser.parse_args(argv)
    unknown = set(args.projects) - PROJECTS.keys()
    if unknown:
        parser.error(f"unknown projects: {', '.join(sorted(unknown))}")
    failed = 0
    with start_postgres(max_connections=100) as server:
        for name in args.projects or PROJECTS:
            with tempfile.TemporaryDirectory(prefix=f"poolshift-{name}-") as tmp:
                try:
                    print(run_project(PROJECTS[name], server, Path(tmp)).summary())
                except ProjectFailure as failure:
                    failed += 1
                    print(f"{name}: FAILED: {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
