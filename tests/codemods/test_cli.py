"""The real CLI (``python -m codemods``) as a subprocess, on a temporary multi-file git work tree.

Uses the real PS201 (sqlite3.connect) and PS301 (urlopen) rules; what matters here is the engine around
them: phases, diffs, exit codes, ignores, bad files, permissions, idempotence.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codemods.rules import all_rules

PYPROJECT = """\
[project]
name = "shop"
version = "1"

[tool.poolshift]
exclude = ["tests/**"]

[[tool.poolshift.phases]]
name = "api"
paths = ["app/api/**"]

[[tool.poolshift.phases]]
name = "rest"
paths = ["app/**"]
"""

SQLITE_USER = "import sqlite3\n\n\ndef open_db(path):\n    return sqlite3.connect(path)\n"
URLOPEN_USER = (
    "import urllib.request\n\n\ndef fetch(url):\n    return urllib.request.urlopen(url, timeout=3).read()\n"
)

LATIN1_USER = "# -*- coding: latin-1 -*-\nimport sqlite3\nNAME = 'caf\xe9.db'\nsqlite3.connect(NAME)\n"

TREE: dict[str, bytes] = {
    "pyproject.toml": PYPROJECT.encode(),
    ".gitignore": b"app/generated/\n",
    "app/__init__.py": b"",
    "app/api/__init__.py": b"",
    "app/api/handlers.py": SQLITE_USER.encode(),
    "app/api/crlf.py": SQLITE_USER.replace("\n", "\r\n").encode(),
    "app/api/client.py": URLOPEN_USER.encode(),
    "app/store.py": (
        b"from sqlite3 import connect\nimport sqlite3\n\n\ndef main(path):\n    return connect(path)\n\n\n"
        b"def scratch():\n    return sqlite3.connect(':memory:')\n"
    ),
    "app/latin.py": LATIN1_USER.encode("latin-1"),
    "app/plain.py": b"def nothing_to_do():\n    return 42\n",
    "app/generated/gen.py": SQLITE_USER.encode(),
    "tests/test_store.py": SQLITE_USER.encode(),
}
#: Enough candidate files for the runner to use its process pool (it runs small sets in-process).
MANY_JOBS = {f"app/jobs/job{i}.py": SQLITE_USER.encode() for i in range(8)}
GIT = [
    "git",
    "-c",
    "user.name=poolshift",
    "-c",
    "user.email=poolshift@example.invalid",
    "-c",
    "core.autocrlf=false",
]


def make_tree(root: Path, extra: dict[str, bytes] | None = None, *, git: bool = True) -> Path:
    for relpath, data in {**TREE, **(extra or {})}.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if git:
        subprocess.run([*GIT, "init", "-q", str(root)], check=True)
        subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
        subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "legacy"], check=True)
    return root


def poolshift(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "codemods", *args],
        cwd=cwd,
        capture_output=True,
        env=env,
        check=False,
        timeout=120,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """The project's files; the result cache (``.poolshift_cache/``) is poolshift's, not the project's."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not {".git", ".poolshift_cache"} & set(path.relative_to(root).parts)
    }


def scan_json(root: Path, *extra: str) -> dict[str, Any]:
    completed = poolshift("scan", ".", "--format", "json", *extra, cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "shop")


def test_scan_inventories_sites_with_phases_and_respects_ignores(tree: Path) -> None:
    before = snapshot(tree)
    report = scan_json(tree)
    assert snapshot(tree) == before, "scan must not write anything"
    assert report["version"] == 2
    paths = {site["path"] for site in report["sites"]}
    assert "app/generated/gen.py" not in paths  # .gitignore'd
    assert "tests/test_store.py" not in paths  # excluded by the plan
    by_key = {(s["path"], s["line"]): s for s in report["sites"]}
    assert by_key[("app/api/handlers.py", 5)]["phase"] == "api"
    assert by_key[("app/api/handlers.py", 5)]["status"] == "migratable"
    assert by_key[("app/api/client.py", 5)]["rule"] == "PS301"
    memory = by_key[("app/store.py", 10)]
    assert (memory["status"], memory["reason"], memory["phase"]) == ("reported", "memory-database", "rest")
    assert report["totals"]["by_phase"]["api"] == 3
    assert report["totals"]["by_rule"]["PS201"] == len([s for s in report["sites"] if s["rule"] == "PS201"])
    assert report["errors"] == []


def test_scan_text_and_markdown_formats(tree: Path) -> None:
    text = poolshift("scan", ".", cwd=tree).stdout.decode()
    assert "app/store.py:10:12: PS201 [reported: memory-database]" in text
    markdown = poolshift("scan", ".", "--format", "markdown", cwd=tree).stdout.decode()
    assert "| Location | Rule | Phase | Status | Reason | Message |" in markdown
    assert "`app/store.py:10:12`" in markdown


def test_parallel_and_serial_runs_report_identically(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop", MANY_JOBS, git=False)
    assert scan_json(root, "-j", "1") == scan_json(root, "-j", "3")


def test_migrate_phase_touches_only_that_phase(tree: Path) -> None:
    before = snapshot(tree)
    completed = poolshift("migrate", ".", "--phase", "1", cwd=tree)
    assert completed.returncode == 0, completed.stderr.decode()
    after = snapshot(tree)
    changed = {path for path in before if before[path] != after[path]}
    assert changed == {"app/api/handlers.py", "app/api/crlf.py", "app/api/client.py"}
    assert b"db_utils.sqlite.connect(path)" in after["app/api/handlers.py"]
    assert after["app/api/crlf.py"].count(b"\r\n") == after["app/api/crlf.py"].count(b"\n")
    # By name too, and a phase that is done stays done.
    assert poolshift("migrate", ".", "--phase", "api", cwd=tree).returncode == 0
    assert snapshot(tree) == after


def test_migrate_requires_a_phase_choice_when_the_plan_has_several(tree: Path) -> None:
    completed = poolshift("migrate", ".", cwd=tree)
    assert completed.returncode == 2
    assert b"--phase" in completed.stderr
    bad = poolshift("migrate", ".", "--phase", "nope", cwd=tree)
    assert bad.returncode == 2
    assert b"unknown phase 'nope'" in bad.stderr


def test_diff_applied_with_git_apply_equals_in_place_migrate(tmp_path: Path) -> None:
    in_place = make_tree(tmp_path / "in_place")
    patched = make_tree(tmp_path / "patched")
    diff = poolshift("migrate", ".", "--all", "--diff", cwd=patched)
    assert diff.returncode == 0, diff.stderr.decode()
    assert diff.stdout.startswith(b"diff --git a/")
    assert snapshot(patched) == snapshot(in_place), "--diff must not write"
    subprocess.run([*GIT, "-C", str(patched), "apply", "-"], input=diff.stdout, check=True)
    assert poolshift("migrate", ".", "--all", cwd=in_place).returncode == 0
    assert snapshot(patched) == snapshot(in_place)
    assert "caf\xe9".encode("latin-1") in snapshot(in_place)["app/latin.py"]


def test_check_exit_codes_follow_the_phases(tree: Path) -> None:
    assert poolshift("check", ".", cwd=tree).returncode == 1
    assert poolshift("check", ".", "--phase", "1", cwd=tree).returncode == 1
    assert poolshift("migrate", ".", "--phase", "1", cwd=tree).returncode == 0
    assert poolshift("check", ".", "--phase", "api", cwd=tree).returncode == 0
    assert poolshift("check", ".", "--phase", "2", cwd=tree).returncode == 1
    assert poolshift("migrate", ".", "--all", cwd=tree).returncode == 0
    final = poolshift("check", ".", cwd=tree)
    assert final.returncode == 0, final.stdout.decode()


def test_check_fails_with_2_when_a_file_cannot_be_analysed(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "shop", {"app/broken.py": b"import sqlite3\ndef f(:\n    sqlite3.connect('x')\n"}
    )
    poolshift("migrate", ".", "--all", cwd=root)
    assert poolshift("check", ".", cwd=root).returncode == 2


def test_bad_file_is_reported_and_untouched_while_others_are_migrated(tmp_path: Path) -> None:
    broken = b"import sqlite3\r\ndef f(:\n    sqlite3.connect('x')\n"
    root = make_tree(
        tmp_path / "shop", {"app/broken.py": broken, "app/mixed.py": b"import sqlite3\r\nx = 1\n"}
    )
    completed = poolshift("migrate", ".", "--all", "--format", "json", cwd=root)
    assert completed.returncode == 1, completed.stderr.decode()
    report = json.loads(completed.stdout)
    errors = {error["path"]: error["error"] for error in report["errors"]}
    assert errors == {"app/broken.py": "mixed-line-endings", "app/mixed.py": "mixed-line-endings"}
    assert (root / "app/broken.py").read_bytes() == broken
    assert (
        b"db_utils.sqlite.connect" in (root / "app/store.py").read_bytes()
        or b"db_utils.sqlite import" in (root / "app/store.py").read_bytes()
    )
    assert b"db_utils.sqlite.connect" in (root / "app/api/handlers.py").read_bytes()


def test_syntax_error_is_reported_with_its_code(tmp_path: Path) -> None:
    broken = b"import sqlite3\ndef f(:\n    sqlite3.connect('x')\n"
    root = make_tree(tmp_path / "shop", {"app/broken.py": broken})
    report = scan_json(root)
    assert [(e["path"], e["error"]) for e in report["errors"]] == [("app/broken.py", "syntax-error")]
    text = poolshift("migrate", ".", "--all", cwd=root).stdout.decode()
    assert "app/broken.py: error [syntax-error]" in text
    assert (root / "app/broken.py").read_bytes() == broken


def test_atomic_write_keeps_permission_bits_and_leaves_no_temp_files(tree: Path) -> None:
    target = tree / "app/api/handlers.py"
    target.chmod(0o750)
    assert poolshift("migrate", ".", "--phase", "1", cwd=tree).returncode == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert b"db_utils.sqlite" in target.read_bytes()
    assert not list(tree.rglob("*poolshift-tmp*"))


def test_second_migrate_changes_nothing(tree: Path) -> None:
    assert poolshift("migrate", ".", "--all", cwd=tree).returncode == 0
    first = snapshot(tree)
    second = poolshift("migrate", ".", "--all", cwd=tree)
    assert second.returncode == 0
    assert snapshot(tree) == first
    assert b"0 file(s) rewritten" in second.stderr


def test_shadowing_db_utils_is_detected_and_blocks_migrate(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop", {"db_utils/__init__.py": b"def helper():\n    pass\n"})
    scan = poolshift("scan", ".", cwd=root)
    assert scan.returncode == 0
    assert b"WARNING" in scan.stderr
    assert b"db_utils/__init__.py" in scan.stderr
    assert (
        "db_utils/__init__.py"
        in json.loads(poolshift("scan", ".", "--format", "json", cwd=root).stdout)["warnings"][0]
    )
    before = snapshot(root)
    refused = poolshift("migrate", ".", "--all", cwd=root)
    assert refused.returncode == 2
    assert snapshot(root) == before
    allowed = poolshift("migrate", ".", "--all", "--allow-shadowed-db-utils", cwd=root)
    assert allowed.returncode == 0
    assert snapshot(root) != before


def test_gitignore_is_respected_without_git_too(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop", git=False)
    paths = {site["path"] for site in scan_json(root)["sites"]}
    assert "app/generated/gen.py" not in paths
    assert "app/api/handlers.py" in paths


def test_virtualenvs_and_build_dirs_are_skipped(tmp_path: Path) -> None:
    extra = {
        "env/pyvenv.cfg": b"home = /usr\n",
        "env/lib/site.py": SQLITE_USER.encode(),
        "build/lib/app.py": SQLITE_USER.encode(),
        ".venv/x.py": SQLITE_USER.encode(),
    }
    root = make_tree(tmp_path / "shop", extra, git=False)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    paths = {site["path"] for site in scan_json(root)["sites"]}
    assert not {p for p in paths if p.startswith(("env/", "build/", ".venv/"))}
    assert "app/api/handlers.py" in paths


def test_select_and_ignore(tree: Path) -> None:
    only_http = {s["rule"] for s in scan_json(tree, "--select", "PS301")["sites"]}
    assert only_http == {"PS301"}
    no_http = {s["rule"] for s in scan_json(tree, "--ignore", "PS301")["sites"]}
    assert "PS301" not in no_http
    assert "PS201" in no_http
    unknown = poolshift("scan", ".", "--select", "PS999", cwd=tree)
    assert unknown.returncode == 2
    assert b"unknown rule" in unknown.stderr


def test_status_shows_progress_per_phase(tree: Path) -> None:
    def rows() -> dict[str, dict[str, Any]]:
        completed = poolshift("status", ".", "--format", "json", cwd=tree)
        assert completed.returncode == 0, completed.stderr.decode()
        return {row["phase"]: row for row in json.loads(completed.stdout)["phases"]}

    start = rows()
    assert (start["api"]["migrated"], start["api"]["remaining"], start["api"]["state"]) == (
        0,
        3,
        "not started",
    )
    poolshift("migrate", ".", "--phase", "api", cwd=tree)
    after = rows()
    assert (after["api"]["migrated"], after["api"]["remaining"], after["api"]["state"]) == (3, 0, "done")
    assert after["rest"]["remaining"] == start["rest"]["remaining"]
    assert after["rest"]["reported"] == 1
    assert "cleanup" in after
    text = poolshift("status", ".", cwd=tree).stdout.decode()
    assert text.splitlines()[0].split() == [
        "PHASE",
        "MIGRATED",
        "REMAINING",
        "REPORTED",
        "SUPPRESSED",
        "ERRORS",
        "STATE",
    ]


def test_status_counts_suppressed_sites_per_phase_and_in_total(tmp_path: Path) -> None:
    kept = SQLITE_USER + "\n\ndef kept(path):\n    return sqlite3.connect(path)  # poolshift: ignore[PS201]\n"
    root = make_tree(tmp_path / "shop", {"app/api/handlers.py": kept.encode(), "app/kept.py": kept.encode()})
    completed = poolshift("status", ".", "--format", "json", cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    data = json.loads(completed.stdout)
    rows = {row["phase"]: row for row in data["phases"]}
    assert (rows["api"]["suppressed"], rows["rest"]["suppressed"], rows["cleanup"]["suppressed"]) == (1, 1, 0)
    total = data["total"]
    for column in ("migrated", "remaining", "reported", "suppressed", "errors"):
        assert total[column] == sum(row[column] for row in data["phases"]), column
    assert total["suppressed"] == 2
    # A suppressed site is not work left: once the rest is migrated, the phase is done.
    assert poolshift("migrate", ".", "--phase", "api", cwd=root).returncode == 0
    text = poolshift("status", ".", cwd=root).stdout.decode().splitlines()
    api = next(line.split() for line in text if line.startswith("api "))
    assert api == ["api", "3", "0", "0", "1", "0", "done"]
    assert text[-2].split()[:6] == ["total", "3", str(total["remaining"] - 3), "1", "2", "0"]
    markdown = poolshift("status", ".", "--format", "markdown", cwd=root).stdout.decode()
    assert "| Suppressed |" in markdown
    assert "| total | 3 |" in markdown


def test_status_counts_migrated_calls_however_the_file_nests_and_only_calls_into_db_utils(
    tmp_path: Path,
) -> None:
    literals = " ".join(['"x"'] * 5000)  # Python compiles this; LibCST's parser gives up near 3,000
    migrated = (
        "import db_utils\nfrom db_utils.sqlite import connect as pooled\n\n"
        f"BANNER = {literals}\n\n\ndef run(op):\n    pooled('a.db').close()\n"
        "    return db_utils.execute_with_pool(op)\n"
    )
    lookalike = (
        "# db_utils is not imported here: these calls are the module's own\n"
        "def connect(path):\n    return path\n\n\ndef execute_with_pool(op):\n    return op(connect('a'))\n"
    )
    root = tmp_path / "shop"
    for relpath, text in {"app/migrated.py": migrated, "app/lookalike.py": lookalike}.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    for attempt in ("cold", "warm"):  # the second run answers from the recorded stat facts
        completed = poolshift("status", ".", "--format", "json", cwd=root)
        assert completed.returncode == 0, (attempt, completed.stderr.decode())
        assert json.loads(completed.stdout)["total"]["migrated"] == 2, attempt


def test_help_documents_exit_codes(tmp_path: Path) -> None:
    for command in ("check", "migrate"):
        completed = poolshift(command, "--help", cwd=tmp_path)
        assert completed.returncode == 0
        assert b"exit codes:" in completed.stdout
        assert b"1 migratable sites remain" in completed.stdout
    top = poolshift("--help", cwd=tmp_path).stdout
    assert b"explain  0 text printed; 2 no rule or reason code" in top


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    completed = poolshift("scan", str(tmp_path / "nope"), cwd=tmp_path)
    assert completed.returncode == 2
    assert b"no such file or directory" in completed.stderr


def test_bad_plan_is_a_clear_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop", {"pyproject.toml": b"[tool.poolshift]\nphases = 3\n"}, git=False)
    completed = poolshift("scan", ".", cwd=root)
    assert completed.returncode == 2
    assert b"phases must be an array of tables" in completed.stderr


@pytest.mark.skipif("PS901" not in all_rules(), reason="the cleanup rule PS901 is not in the tree yet")
def test_cleanup_is_blocked_while_the_helper_is_used_then_allowed(tmp_path: Path) -> None:
    helper = (
        b'"""Database access."""\n\nimport os\n\nimport psycopg2\n\n\ndef get_postgres_connection():\n'
        b"    try:\n        return psycopg2.connect(host=os.environ.get('POSTGRES_HOST', 'localhost'))\n"
        b"    except psycopg2.Error:\n        return None\n"
    )
    user = (
        b"from app.db import get_postgres_connection\n\n\ndef rows():\n    conn = get_postgres_connection()\n"
    )
    root = make_tree(tmp_path / "shop", {"app/db.py": helper, "app/api/pg.py": user})
    blocked = poolshift("migrate", ".", "--phase", "cleanup", "--format", "json", cwd=root)
    assert blocked.returncode == 0, blocked.stderr.decode()
    assert (root / "app/db.py").read_bytes() == helper
    cleanup_sites = [s for s in json.loads(blocked.stdout)["sites"] if s["rule"] == "PS901"]
    assert cleanup_sites
    assert all(site["status"] == "reported" for site in cleanup_sites)
    (root / "app/api/pg.py").write_bytes(b"def rows():\n    return []\n")
    allowed = poolshift("migrate", ".", "--phase", "cleanup", cwd=root)
    assert allowed.returncode == 0, allowed.stderr.decode()
    assert b"def get_postgres_connection" not in (root / "app/db.py").read_bytes()


def test_python_dash_m_and_console_script_agree(tree: Path) -> None:
    script = shutil.which("poolshift")
    if script is None:
        pytest.skip("the poolshift console script is not installed in this environment")
    via_script = subprocess.run(
        [script, "scan", ".", "--format", "json"], cwd=tree, capture_output=True, check=False
    )
    assert via_script.returncode == 0
    assert json.loads(via_script.stdout) == scan_json(tree)
