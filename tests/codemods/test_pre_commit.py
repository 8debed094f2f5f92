"""``.pre-commit-hooks.yaml`` through the real ``pre-commit try-repo``, in a temporary git repository.

pre-commit installs the hook repository into its own virtualenv, so this is what a team gets. The hook
repository is a fresh git repository holding this checkout's files as they are on disk (pre-commit
needs the hook files committed, and the test must exercise the working tree, not the last commit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.codemods.test_cli import GIT
from tests.codemods.test_monorepo import write_monorepo

REPO = Path(__file__).resolve().parents[2]
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"
LEGACY = "import sqlite3\n\n\ndef open_db(path):\n    return sqlite3.connect(path)\n"
KEPT = (
    "import sqlite3\n\n\ndef open_db(path):\n    return sqlite3.connect(path)  # poolshift: ignore[PS201]\n"
)


#: What ``pip install`` of the hook repository needs (the packages are found by setuptools).
SHIPPED = (
    "pyproject.toml",
    "MANIFEST.in",
    "build_guide.py",  # the build step that puts the guide pages `poolshift explain` prints in the package
    "README.md",
    ".pre-commit-hooks.yaml",
    "codemods",
    "db_utils",
    "migration_guide",
)


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hook-repo")
    for name in SHIPPED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, repo / name)
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "hooks"], check=True)
    return repo


@pytest.fixture(scope="module")
def hook_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pre-commit cache for the module: the hook's virtualenv is built once."""
    return tmp_path_factory.mktemp("pre-commit-home")


def _project(root: Path, source: str) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "store.py").write_text(source)
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "legacy"], check=True)
    return root


def _try_repo(project: Path, hook: str, repo: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "GIT_AUTHOR_NAME": "p", "GIT_COMMITTER_NAME": "p",
           "GIT_AUTHOR_EMAIL": "p@example.invalid", "GIT_COMMITTER_EMAIL": "p@example.invalid"}  # fmt: skip
    return subprocess.run(
        [str(PRE_COMMIT), "try-repo", str(repo), hook, "--all-files", "--verbose"],
        cwd=project, env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip


def test_check_hook_fails_on_a_migratable_site_and_passes_when_suppressed(
    tmp_path: Path, hook_repo: Path, hook_home: Path
) -> None:
    failing = _try_repo(_project(tmp_path / "legacy", LEGACY), "poolshift-check", hook_repo, hook_home)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "app/store.py:5:12: PS201 [migratable]" in failing.stdout
    passing = _try_repo(_project(tmp_path / "kept", KEPT), "poolshift-check", hook_repo, hook_home)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "1 suppressed" in passing.stdout


def test_migrate_hook_rewrites_and_fails_so_the_change_is_reviewed(
    tmp_path: Path, hook_repo: Path, hook_home: Path
) -> None:
    project = _project(tmp_path / "legacy", LEGACY)
    completed = _try_repo(project, "poolshift-migrate", hook_repo, hook_home)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "files were modified by this hook" in completed.stdout
    assert "db_utils.sqlite.connect(path)" in (project / "app" / "store.py").read_text()


def test_check_hook_in_a_monorepo_judges_each_package_by_its_own_configuration(
    tmp_path: Path, hook_repo: Path, hook_home: Path
) -> None:
    project = write_monorepo(tmp_path / "mono")
    completed = _try_repo(project, "poolshift-check", hook_repo, hook_home)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "a/app/store.py:5:12: PS201 [migratable]" in completed.stdout
    assert "b/svc/jobs/sync.py:5:12: PS201 [migratable]" in completed.stdout
    assert "a/tests/test_store.py" not in completed.stdout  # a's exclude applies to the files it is given
    assert "PS301" not in completed.stdout  # b ignores PS301
