"""PS101 and the exceptions that escape a None-returning helper, through the real CLI on real PostgreSQL.

A helper ``try: return psycopg2.connect(os.environ["APP_DSN"]) except psycopg2.OperationalError: return
None`` lets a missing variable (``KeyError``) or an invalid DSN (``psycopg2.ProgrammingError``) out of
``conn = helper()``, *before* the seed's ``try``: the seed's handlers never see them. After the rewrite the
helper runs inside the pooled block, inside that ``try``, where an ``except Exception: return "down"``
would turn the misconfiguration into a silent ``"down"``. Each case below migrates a small project with
``poolshift migrate --all``, then runs the legacy and the migrated copy in their own interpreters with the
database up, down, the variable missing and the DSN invalid: the answers must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.codemods.test_cli import poolshift
from testservers.postgres import PostgresServer

OPERATIONAL_ONLY = """\
import os

import psycopg2


def get_postgres_connection():
    try:
        return psycopg2.connect(os.environ["APP_DSN"])
    except psycopg2.OperationalError:
        return None
"""

CATCHES_EXCEPTION = OPERATIONAL_ONLY.replace("except psycopg2.OperationalError:", "except Exception:")


def _items(handler: str) -> str:
    return f"""\
import psycopg2

from app.db import get_postgres_connection


def count_items():
    conn = get_postgres_connection()
    if conn is None:
        return "down"
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM ps101_escape")
        return cur.fetchone()[0]
    except {handler}:
        return "down"
    finally:
        conn.close()
"""


# Runs in the project's own interpreter: count_items() under each APP_DSN (None: unset), by name.
RUN = """\
import json, os, sys

from app.items import count_items

answers = {}
for name, dsn in json.loads(sys.argv[1]).items():
    if dsn is None:
        os.environ.pop("APP_DSN", None)
    else:
        os.environ["APP_DSN"] = dsn
    try:
        answers[name] = count_items()
    except Exception as error:
        answers[name] = type(error).__name__
print(json.dumps(answers))
"""


def _write(root: Path, helper: str, items: str) -> Path:
    for relpath, text in {
        "pyproject.toml": "[tool.poolshift]\n",
        "app/__init__.py": "",
        "app/db.py": helper,
        "app/items.py": items,
    }.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _answers(root: Path, scenarios: dict[str, str | None]) -> dict[str, object]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "POSTGRES_", "PG", "DATABASE_URL", "APP_DSN"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(Path(__file__).resolve().parents[3])])
    completed = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(scenarios)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    answers: dict[str, object] = json.loads(completed.stdout)
    return answers


def _migrate(root: Path) -> list[dict[str, object]]:
    completed = poolshift("migrate", ".", "--all", "--format", "json", cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    sites: list[dict[str, object]] = json.loads(completed.stdout)["sites"]
    return [site for site in sites if site["rule"] == "PS101"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("helper", "handler", "rewritten", "misconfigured"),
    [
        # KeyError and ProgrammingError escape the helper; the seed's `except Exception` would catch them.
        (OPERATIONAL_ONLY, "Exception", False, ["KeyError", "ProgrammingError"]),
        (OPERATIONAL_ONLY, "psycopg2.Error", False, ["KeyError", "ProgrammingError"]),
        # The seed's handler catches nothing the helper lets escape: rewriting is safe.
        (OPERATIONAL_ONLY, "psycopg2.OperationalError", True, ["KeyError", "ProgrammingError"]),
        # Nothing escapes the helper: the misconfiguration was already "down" in the legacy code.
        (CATCHES_EXCEPTION, "Exception", True, ["down", "down"]),
    ],
    ids=["operational-helper-except-exception", "operational-helper-except-error", "same-class", "exception"],
)
def test_migrated_seed_fails_like_the_legacy_one_on_a_misconfiguration(
    postgres: PostgresServer,
    tmp_path: Path,
    helper: str,
    handler: str,
    rewritten: bool,
    misconfigured: list[str],
) -> None:
    postgres.query("CREATE TABLE IF NOT EXISTS ps101_escape (id int)")
    legacy = _write(tmp_path / "legacy", helper, _items(handler))
    migrated = _write(tmp_path / "migrated", helper, _items(handler))
    sites = _migrate(migrated)
    assert [site["status"] for site in sites] == ["migrated" if rewritten else "reported"], sites
    items = (migrated / "app/items.py").read_text(encoding="utf-8")
    assert ("get_pooled_connection(get_postgres_connection)" in items) is rewritten
    if not rewritten:
        assert sites[0]["reason"] == "helper-error-escapes"
        assert "it returns None only on psycopg2.OperationalError" in str(sites[0]["message"])

    down = postgres.dsn.replace(f"port={postgres.port}", "port=1")
    scenarios = {"up": postgres.dsn, "down": down, "missing": None, "bad dsn": "host=127.0.0.1 port"}
    before, after = _answers(legacy, scenarios), _answers(migrated, scenarios)
    assert after == before
    assert [before["up"], before["down"]] == [0, "down"]
    assert [before["missing"], before["bad dsn"]] == misconfigured
