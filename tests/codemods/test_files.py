"""File discovery: project root, git and non-git listing, ignores, virtualenvs, symlinks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codemods.files import FileDiscoveryError, find_project_root, list_project_files, list_python_files

FILES = {
    "pkg/a.py": "",
    "pkg/sub/b.py": "",
    "pkg/sub/gen_1.py": "",
    "pkg/sub/.gitignore": "local_*.py\n",
    "pkg/sub/local_x.py": "",
    "pkg/data.txt": "",
    "keep/skip.py": "",
    "keep/k.py": "",
    "env/pyvenv.cfg": "home = /usr\n",
    "env/lib/site.py": "",
    "node_modules/x.py": "",
    "dist/x.py": "",
    "top.py": "",
    ".gitignore": "gen_*.py\n/keep/skip.py\n",
}
EXPECTED = ["keep/k.py", "pkg/a.py", "pkg/sub/b.py", "top.py"]


def make(root: Path) -> Path:
    for relpath, text in FILES.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("git", [False, True], ids=["walk", "git"])
def test_listing_respects_gitignore_and_default_excludes(tmp_path: Path, git: bool) -> None:
    root = make(tmp_path)
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert list_python_files(root, [root]) == EXPECTED
    assert list_python_files(root, [root / "pkg" / "sub"]) == ["pkg/sub/b.py"]
    assert list_python_files(root, [root / "top.py", root / "pkg"]) == ["pkg/a.py", "pkg/sub/b.py", "top.py"]


@pytest.mark.parametrize("git", [False, True], ids=["walk", "git"])
@pytest.mark.parametrize(
    "targets",
    [["."], ["pkg/sub"], ["top.py", "pkg"], ["pkg/sub/local_x.py"], ["pkg/sub/local_x.py", "."], ["keep"]],
)
def test_one_listing_gives_what_two_would(tmp_path: Path, git: bool, targets: list[str]) -> None:
    """The project's files and the targets' files from one listing: the same as listing twice, ignored
    files named explicitly included (outside git they are listed when named)."""
    root = make(tmp_path)
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    paths = [root / target for target in targets]
    assert list_project_files(root, paths) == (
        list_python_files(root, [root]),
        list_python_files(root, paths),
    )


@pytest.mark.parametrize("git", [False, True], ids=["walk", "git"])
def test_symlinked_files_and_directories_are_skipped(tmp_path: Path, git: bool) -> None:
    root = make(tmp_path)
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "link.py").symlink_to(root / "top.py")
    (root / "linked").symlink_to(root / "pkg", target_is_directory=True)
    (root / "pkg" / "venv_link").symlink_to(root / "env", target_is_directory=True)
    assert list_python_files(root, [root]) == EXPECTED


@pytest.mark.parametrize("git", [False, True], ids=["walk", "git"])
@pytest.mark.parametrize("target", ["env", "env/lib", "dist", "env/lib/site.py", "dist/x.py"])
def test_a_target_inside_an_excluded_directory_lists_nothing(tmp_path: Path, git: bool, target: str) -> None:
    root = make(tmp_path)
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert list_python_files(root, [root / target]) == []


def test_a_virtualenv_is_recognised_by_its_pyvenv_cfg_file(tmp_path: Path) -> None:
    """``pyvenv.cfg`` as a file (a symlink to one counts); a directory of that name does not make one."""
    root = make(tmp_path)
    (root / "tools" / "pyvenv.cfg").mkdir(parents=True)
    (root / "tools" / "t.py").write_text("")
    (root / "linkenv" / "lib").mkdir(parents=True)
    (root / "linkenv" / "pyvenv.cfg").symlink_to(root / "env" / "pyvenv.cfg")
    (root / "linkenv" / "lib" / "l.py").write_text("")
    assert list_python_files(root, [root]) == sorted([*EXPECTED, "tools/t.py"])


def test_listing_in_git_keeps_the_lstat_it_took(tmp_path: Path) -> None:
    """The one stat a read-only run needs of an unchanged file (codemods.project.FileStore)."""
    root = make(tmp_path)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    stats: dict[str, os.stat_result] = {}
    every, _ = list_project_files(root, [root], stats)
    assert set(every) <= set(stats)
    assert all(stats[path].st_ino == (root / path).stat().st_ino for path in every)


def test_project_root_is_the_nearest_pyproject_not_above_the_repository(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src" / "pkg").mkdir(parents=True)
    assert find_project_root([repo / "src" / "pkg"]) == repo.resolve()
    (repo / "src" / "pyproject.toml").write_text("")
    assert find_project_root([repo / "src" / "pkg"]) == (repo / "src").resolve()


def test_targets_must_exist_and_be_inside_the_root(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    with pytest.raises(FileDiscoveryError, match="no such file"):
        list_python_files(root, [root / "missing"])
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FileDiscoveryError, match="outside the project root"):
        list_python_files(root, [tmp_path / "elsewhere"])
