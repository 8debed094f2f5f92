"""A monorepo through the real CLI: paths under different configurations run once per configuration.

pre-commit hands poolshift the staged files of every package at once; like ruff, poolshift groups them by
their closest configuration, runs each group with its own settings and root, prints one report (paths
relative to the current directory) and exits with the worst group's code. Two packages in one git work
tree, each with its own configuration file and its own idea of phases and excludes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.codemods.test_cli import GIT, SQLITE_USER, URLOPEN_USER, poolshift, snapshot

#: Package A: a pyproject.toml with the table, excluding its tests; one phase.
PACKAGE_A = """\
[project]
name = "a"

[tool.poolshift]
exclude = ["tests/**"]
"""
#: Package B: a poolshift.toml with two phases; PS301 ignored.
PACKAGE_B = """\
ignore = ["PS301"]

[[phases]]
name = "jobs"
paths = ["svc/jobs/**"]

[[phases]]
name = "rest"
paths = ["svc/**"]
"""
BROKEN = "import sqlite3\n\ndef f(:\n    return sqlite3.connect('x')\n"


def _commit(root: Path) -> None:
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "legacy"], check=True)


def write_monorepo(root: Path) -> Path:
    write_monorepo_files(root)
    _commit(root)
    return root


def write_monorepo_files(root: Path) -> None:
    files = {
        "a/pyproject.toml": PACKAGE_A,
        "a/app/__init__.py": "",
        "a/app/store.py": SQLITE_USER,
        "a/tests/test_store.py": SQLITE_USER,
        "b/poolshift.toml": PACKAGE_B,
        "b/svc/__init__.py": "",
        "b/svc/jobs/sync.py": SQLITE_USER,
        "b/svc/net.py": URLOPEN_USER + SQLITE_USER.replace("import sqlite3\n", "import sqlite3\n\n"),
        "tools/release.py": SQLITE_USER,  # under no package's configuration: the defaults
    }
    for relpath, text in files.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)


STAGED = ("a/app/store.py", "a/tests/test_store.py", "b/svc/jobs/sync.py", "b/svc/net.py", "tools/release.py")


@pytest.fixture
def monorepo(tmp_path: Path) -> Path:
    return write_monorepo(tmp_path / "mono")


def _sites(completed: subprocess.CompletedProcess[bytes]) -> dict[str, tuple[str, str, str]]:
    report = json.loads(completed.stdout)
    return {s["path"]: (s["rule"], s["phase"], s["status"]) for s in report["sites"]}


def test_files_of_two_packages_are_judged_each_by_its_own_configuration(monorepo: Path) -> None:
    completed = poolshift("scan", *STAGED, "--format", "json", "-v", cwd=monorepo)
    assert completed.returncode == 0, completed.stderr.decode()
    assert _sites(completed) == {
        "a/app/store.py": ("PS201", "all", "migratable"),  # a's tests/** exclude keeps its test out
        "b/svc/jobs/sync.py": ("PS201", "jobs", "migratable"),  # b's phases
        "b/svc/net.py": ("PS201", "rest", "migratable"),  # b ignores PS301: the urlopen call is not listed
        "tools/release.py": ("PS201", "all", "migratable"),  # no configuration: the defaults
    }
    stderr = completed.stderr.decode()
    assert f"configuration: {monorepo / 'a' / 'pyproject.toml'} (the closest)" in stderr
    assert f"configuration: {monorepo / 'b' / 'poolshift.toml'} (the closest)" in stderr
    assert f"project root: {monorepo / 'b'}" in stderr


def test_check_exits_with_the_worst_group_s_code(monorepo: Path) -> None:
    assert poolshift("check", "a/app/store.py", "b/svc/net.py", cwd=monorepo).returncode == 1
    (monorepo / "b" / "svc" / "broken.py").write_text(BROKEN)  # b cannot analyse a file: an error (2)
    completed = poolshift("check", "a/app/store.py", "b/svc/broken.py", "--format", "json", cwd=monorepo)
    assert completed.returncode == 2
    report = json.loads(completed.stdout)
    assert [error["path"] for error in report["errors"]] == ["b/svc/broken.py"]
    assert [site["path"] for site in report["sites"]] == ["a/app/store.py"]
    # a alone is clean once migrated: the worst group decides, not the first or the last.
    assert poolshift("migrate", "a/app/store.py", cwd=monorepo).returncode == 0
    assert poolshift("check", "a/app/store.py", "b/svc/jobs/sync.py", cwd=monorepo).returncode == 1
    assert poolshift("check", "a/app/store.py", "tools/release.py", cwd=monorepo).returncode == 1


def test_migrate_rewrites_each_package_with_its_settings_and_refuses_as_a_whole(monorepo: Path) -> None:
    before = snapshot(monorepo)
    # b has two phases: without --phase or --all it must be refused, and then nothing is written in a either.
    refused = poolshift("migrate", "a/app/store.py", "b/svc/net.py", cwd=monorepo)
    assert refused.returncode == 2
    assert b"choose --phase N or --all" in refused.stderr
    assert snapshot(monorepo) == before
    unknown = poolshift("migrate", "a/app/store.py", "b/svc/net.py", "--phase", "jobs", cwd=monorepo)
    assert unknown.returncode == 2  # a has no phase "jobs": bad arguments, nothing written
    assert snapshot(monorepo) == before
    patch = poolshift("migrate", *STAGED, "--all", "--diff", cwd=monorepo)
    assert patch.returncode == 0, patch.stderr.decode()
    assert snapshot(monorepo) == before
    done = poolshift("migrate", *STAGED, "--all", "--format", "json", cwd=monorepo)
    assert done.returncode == 0, done.stderr.decode()
    assert {path: status for path, (_, _, status) in _sites(done).items()} == dict.fromkeys(
        ("a/app/store.py", "b/svc/jobs/sync.py", "b/svc/net.py", "tools/release.py"), "migrated"
    )
    after = snapshot(monorepo)
    assert after["a/tests/test_store.py"] == before["a/tests/test_store.py"]  # a's exclude
    assert "urllib.request.urlopen(url" in after["b/svc/net.py"].decode()  # b's ignore
    assert "db_utils.sqlite.connect(path)" in after["b/svc/net.py"].decode()
    # The --diff printed before is exactly what was written: git apply of it on the old tree agrees.
    subprocess.run([*GIT, "-C", str(monorepo), "stash", "-q"], check=True)
    subprocess.run([*GIT, "-C", str(monorepo), "apply", "-"], input=patch.stdout, check=True)
    assert snapshot(monorepo) == after


def test_a_package_inside_another_is_left_to_its_own_configuration(monorepo: Path) -> None:
    # The repository's own configuration: one phase, "repo". a's file, named on the command line, is a's.
    (monorepo / "poolshift.toml").write_text('[[phases]]\nname = "repo"\npaths = ["**"]\n')
    completed = poolshift("scan", ".", "a/app/store.py", "--format", "json", cwd=monorepo)
    assert completed.returncode == 0, completed.stderr.decode()
    sites = [(s["path"], s["phase"]) for s in json.loads(completed.stdout)["sites"]]
    assert [site for site in sites if site[0].startswith("a/")] == [("a/app/store.py", "all")]  # once
    assert ("tools/release.py", "repo") in sites
    status = poolshift("status", ".", "a", "--format", "json", cwd=monorepo)
    assert status.returncode == 0, status.stderr.decode()
    rows = {row["phase"]: row["remaining"] for row in json.loads(status.stdout)["phases"]}
    # "." holds b too, whose own configuration applies to its subtree (found inside the directory named).
    assert list(rows) == [".:repo", ".:cleanup", "a:all", "a:cleanup", "b:jobs", "b:rest", "b:cleanup"]
    assert (rows["a:all"], rows["b:jobs"], rows["b:rest"]) == (1, 1, 1)


@pytest.mark.parametrize("in_git", [True, False], ids=["git", "no-git"])
def test_a_directory_named_finds_the_packages_configurations_inside_it(tmp_path: Path, in_git: bool) -> None:
    """``poolshift scan .`` at the top of a monorepo: each package's own file applies to its subtree, as
    ``ruff check .`` applies nested configurations; ignored directories and unrelated pyproject.toml files
    (one not even valid TOML) are not configurations."""
    root = tmp_path / "mono"
    extra = {
        "c/pyproject.toml": "[project\nname = 'broken, and no table of ours'\n",
        "c/lib.py": SQLITE_USER,
        "vendored/pkg/poolshift.toml": '[[phases]]\nname = "vendor"\npaths = ["**"]\n',
        "vendored/pkg/mod.py": SQLITE_USER,
        ".gitignore": "vendored/\n",
    }
    for relpath, text in extra.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    if in_git:
        write_monorepo(root)
    else:
        write_monorepo_files(root)
    completed = poolshift("scan", ".", "--format", "json", "-v", cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    assert _sites(completed) == {
        "a/app/store.py": ("PS201", "all", "migratable"),  # a's exclude keeps a/tests out
        "b/svc/jobs/sync.py": ("PS201", "jobs", "migratable"),  # b's phases
        "b/svc/net.py": ("PS201", "rest", "migratable"),  # b ignores PS301
        "c/lib.py": ("PS201", "all", "migratable"),  # c's pyproject.toml is not ours: the defaults
        "tools/release.py": ("PS201", "all", "migratable"),
    }
    stderr = completed.stderr.decode()
    assert f"configuration: {root / 'a' / 'pyproject.toml'} (the closest)" in stderr
    assert f"configuration: {root / 'b' / 'poolshift.toml'} (the closest)" in stderr
    assert "vendored" not in stderr
