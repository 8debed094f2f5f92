"""SQLite under a hard crash: a writer killed with SIGKILL mid-transaction (issue 11's SQLite scenario).

Two processes share one file through ``db_utils.sqlite.connect``: this test process (the survivor, with a
pooled connection that stays open across the crash) and a child (the victim) that commits a few rows,
then opens a large transaction that spills pages to disk and says so through its stdout pipe. The test
kills it with ``kill -9`` only after that message, never after a sleep. Afterwards: ``PRAGMA
integrity_check`` is ``ok``, every acknowledged write is there and no uncommitted one is, and the
survivor's next write succeeds on its pooled connection within the busy timeout.

Run in both journal modes: WAL (what the pool switches a file to) and the rollback journal
(``SQLITE_POOL_WAL=0``), where the kill leaves a hot journal the survivor must roll back.

:func:`kill9_scenario` returns the row of the faults table; the test prints it (``pytest -s``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from db_utils import sqlite as pooled

pytestmark = pytest.mark.usefixtures("sqlite_pools")

BUSY_TIMEOUT_S = 10.0  # the bound on one write: SQLite's busy timeout (the connect() timeout)
SURVIVOR_WRITES = 20  # before the crash, and again after it
VICTIM_COMMITS = 10
VICTIM_UNCOMMITTED = 5000  # with a 10-page cache, enough to spill pages before the commit that never comes

VICTIM = """
import sys
from db_utils.sqlite import connect

path, commits, uncommitted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = connect(path, timeout=float(sys.argv[4]))
for n in range(commits):
    conn.execute("INSERT INTO writes (writer, n, payload) VALUES ('victim', ?, 'x')", (n,))
    conn.commit()
    print(f"committed {n}", flush=True)
conn.execute("PRAGMA cache_size = 10")  # a small cache: the big transaction writes pages out early
conn.execute("BEGIN IMMEDIATE")
conn.executemany(
    "INSERT INTO writes (writer, n, payload) VALUES ('uncommitted', ?, zeroblob(400))",
    ((n,) for n in range(uncommitted)),
)
print("inside", flush=True)
sys.stdin.read()  # hold the transaction open until killed
"""


class Survivor:
    """The other process's writes, each timed and acknowledged (or counted as an error)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acknowledged: list[int] = []
        self.errors: list[str] = []
        self.latencies: list[float] = []

    def write(self, n: int) -> None:
        started = time.monotonic()
        try:
            conn = pooled.connect(self.path, timeout=BUSY_TIMEOUT_S)
            try:
                conn.execute("INSERT INTO writes (writer, n, payload) VALUES ('survivor', ?, 'x')", (n,))
                conn.commit()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            self.acknowledged.append(n)
        self.latencies.append(time.monotonic() - started)


def start_victim(path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """The child, once it is inside its transaction; the row numbers it acknowledged as committed."""
    victim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            VICTIM,
            str(path),
            str(VICTIM_COMMITS),
            str(VICTIM_UNCOMMITTED),
            str(BUSY_TIMEOUT_S),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout is not None
    committed = []
    for line in victim.stdout:  # blocks until the child speaks; EOF if it died first
        if line.startswith("committed "):
            committed.append(int(line.split()[1]))
        elif line.strip() == "inside":
            return victim, committed
    raise AssertionError(f"the victim exited (status {victim.wait()}) before its transaction was open")


def rows(path: Path, writer: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute("SELECT n FROM writes WHERE writer = ? ORDER BY n", (writer,))]
    finally:
        conn.close()


def kill9_scenario(path: Path, journal: str) -> dict[str, Any]:
    """Run the scenario on a new database at ``path``; the faults table's row (asserted by the test)."""
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE writes (writer TEXT NOT NULL, n INTEGER NOT NULL, payload BLOB)")
    setup.commit()
    setup.close()
    survivor = Survivor(path)
    for n in range(SURVIVOR_WRITES):
        survivor.write(n)
    size_before = _size(path)
    victim, victim_acknowledged = start_victim(path)
    os.kill(victim.pid, signal.SIGKILL)
    status = victim.wait()
    # What the dead transaction left on disk: WAL frames, or pages written into the file itself with
    # a hot rollback journal beside it.
    left_behind = {
        "wal": _size(Path(f"{path}-wal")),
        "journal": _size(Path(f"{path}-journal")),
        "file_growth": _size(path) - size_before,
    }
    after_crash = len(survivor.latencies)
    for n in range(SURVIVOR_WRITES, 2 * SURVIVOR_WRITES):
        survivor.write(n)
    check = pooled.connect(path, timeout=BUSY_TIMEOUT_S)
    integrity = check.execute("PRAGMA integrity_check").fetchall()
    check.close()
    figures = pooled.pool_figures()["databases"][f"{path} [timeout={BUSY_TIMEOUT_S!r}]"]
    missing = len(set(survivor.acknowledged) - set(rows(path, "survivor")))
    missing += len(set(victim_acknowledged) - set(rows(path, "victim")))
    return {
        "scenario": f"sqlite: kill -9 of a writer mid-transaction ({journal})",
        "calls": len(survivor.latencies) + VICTIM_COMMITS,
        "successes": len(survivor.acknowledged) + len(victim_acknowledged),
        "errors": len(survivor.errors) + VICTIM_COMMITS - len(victim_acknowledged),
        "acknowledged_missing": missing,
        "max_latency_s": round(max(survivor.latencies[after_crash:]), 3),
        "bound_s": BUSY_TIMEOUT_S,
        "leaked_connections": figures["checked_out"],
        # Not columns of the table; what the test asserts besides them.
        "victim_status": status,
        "left_behind": left_behind,
        "integrity_check": [row[0] for row in integrity],
        "uncommitted_visible": len(rows(path, "uncommitted")),
        "survivor_errors": survivor.errors,
        "survivor_connections_created": figures["connections_created"],
        "journal_mode": journal_mode(path),
    }


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_kill_9_mid_transaction_leaves_a_sound_database(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, journal: str, fault_report: Any
) -> None:
    if journal == "delete":
        clean_env.setenv("SQLITE_POOL_WAL", "0")  # the child inherits it: neither process switches
    row = kill9_scenario(tmp_path / "shared.db", journal)
    fault_report(row)
    assert row["journal_mode"] == journal
    assert row["victim_status"] == -signal.SIGKILL
    # The transaction really had written pages when it died (about 2 MB of rows).
    left = row["left_behind"]
    assert (left["wal"] if journal == "wal" else left["file_growth"]) > 100_000
    if journal == "delete":
        assert left["journal"] > 0  # a hot journal, for the survivor to roll back
    assert row["integrity_check"] == ["ok"]
    assert row["uncommitted_visible"] == 0
    assert row["acknowledged_missing"] == 0
    assert row["survivor_errors"] == []
    assert row["errors"] == 0
    assert row["successes"] == row["calls"] == 2 * SURVIVOR_WRITES + VICTIM_COMMITS
    assert row["max_latency_s"] <= row["bound_s"]
    assert row["leaked_connections"] == 0
    # The survivor's pooled connection outlived the crash and served the next write: no reconnect.
    assert row["survivor_connections_created"] == 1
