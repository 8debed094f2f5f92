"""A pooled SQLite connection dropped without close() is returned, and the leak is not hidden.

CI runs ``python -W error::ResourceWarning`` to find leaks. There the warning is raised inside
``__del__``; it must surface the way CPython reports any exception in ``__del__`` ("Exception ignored
in: ...", through sys.unraisablehook), after the connection went back to the pool (and its writes were
checkpointed). Run in a subprocess: the interpreter's own warning filters and unraisable hook are what
is under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import gc, json, sys
import db_utils
from db_utils import sqlite as pooled

db = sys.argv[1]
conn = pooled.connect(db)
conn.execute("CREATE TABLE t (name TEXT)")
conn.execute("INSERT INTO t VALUES ('dropped')")
conn.commit()
del conn
gc.collect()
print("after drop", file=sys.stderr, flush=True)
again = pooled.connect(db)
rows = again.execute("SELECT name FROM t").fetchall()
again.close()
figures = db_utils.pool_status()["sqlite"]["databases"][db]
print(json.dumps({"rows": rows, "figures": figures}))
"""


def run_dropping(db: Path, *options: str) -> tuple[dict[str, Any], str]:
    """Run the script with interpreter ``options``: what it printed (rows and pool figures), and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQLITE_POOL_", "PYTHONWARNINGS"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, *options, "-c", _SCRIPT, str(db)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def assert_returned_and_reused(result: dict[str, Any]) -> None:
    figures = result["figures"]
    assert result["rows"] == [["dropped"]]
    assert (figures["connections_created"], figures["checkouts"], figures["reuses"]) == (1, 2, 1)
    assert (figures["checkins"], figures["checked_out"], figures["discarded_dirty"]) == (2, 0, 0)
    assert figures["checkpoints"] == 1  # the dropped lease wrote: its return still checkpointed


def test_warning_as_error_is_reported_after_the_connection_is_returned(tmp_path: Path) -> None:
    result, stderr = run_dropping(tmp_path / "leak.db", "-W", "error::ResourceWarning")
    assert_returned_and_reused(result)
    reported, _, after = stderr.partition("after drop")
    assert "Exception ignored in" in reported
    assert "__del__" in reported
    assert "ResourceWarning: pooled SQLite connection to" in reported
    assert "garbage-collected without close(); returned to the pool" in reported
    assert "Traceback" in reported
    assert "Exception ignored" not in after


def test_default_filters_stay_silent(tmp_path: Path) -> None:
    result, stderr = run_dropping(tmp_path / "quiet.db")
    assert_returned_and_reused(result)
    assert stderr == "after drop\n"


@pytest.mark.parametrize("action", ["default", "always"])
def test_a_shown_warning_is_a_warning_not_an_exception(tmp_path: Path, action: str) -> None:
    result, stderr = run_dropping(tmp_path / "shown.db", "-W", f"{action}::ResourceWarning")
    assert_returned_and_reused(result)
    assert "ResourceWarning: pooled SQLite connection to" in stderr
    assert "Exception ignored" not in stderr
