"""File discovery: project root, git and non-git listing, ignores, virtualenvs, symlinks."""

from __future__ import annotations

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


def test_symlinked_files_are_skipped(tmp_path: Path) -> None:
    root = make(tmp_path)
    (root / "link.py").symlink_to(root / "top.py")
    assert "link.py" not in list_python_files(root, [root])


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
