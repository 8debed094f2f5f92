"""Which files a run looks at: its configuration file, the project root, the Python files under the targets.

The user's ignore rules are respected the way their tools respect them: in a git work tree git itself
lists the files (``git ls-files -co --exclude-standard``: tracked plus untracked-but-not-ignored), so every
.gitignore, .git/info/exclude and global excludesfile applies exactly; elsewhere a small .gitignore reader
covers the common patterns. Virtualenvs and build output are never migrated, ignored or not.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from codemods.plan import glob_matches, read_toml

__all__ = [
    "CONFIG_NAMES",
    "DEFAULT_EXCLUDED_DIRS",
    "FileDiscoveryError",
    "config_files_below",
    "find_config_file",
    "find_project_root",
    "git_toplevel",
    "list_project_files",
    "list_python_files",
]

DEFAULT_EXCLUDED_DIRS = frozenset(
    {".git", ".hg", ".svn", ".venv", "venv", "build", "dist", ".tox", ".nox", "node_modules", "__pycache__",
     ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs"}
)  # fmt: skip


class FileDiscoveryError(ValueError):
    """A target that does not exist or lies outside the project root."""


def find_project_root(targets: Sequence[Path]) -> Path:
    """The directory holding the plan: the nearest ancestor with a pyproject.toml, not above the repo.

    Walking stops at a directory containing ``.git`` (the repository top) so a stray pyproject.toml
    above the repository is never picked up; without either, the first target's directory is the root.
    """
    first = targets[0].resolve()
    start = first if first.is_dir() else first.parent
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file() or (candidate / ".git").exists():
            return candidate
    return start


#: The configuration files looked for in each directory, in ruff's precedence order (``.ruff.toml``,
#: ``ruff.toml``, ``pyproject.toml``): a pyproject.toml counts only when it has a ``[tool.poolshift]`` table.
CONFIG_NAMES = (".poolshift.toml", "poolshift.toml", "pyproject.toml")


def _has_poolshift_table(pyproject: Path) -> bool:
    tool = read_toml(pyproject, FileDiscoveryError).get("tool")
    return isinstance(tool, dict) and "poolshift" in tool


def _closest_config(target: Path, stop: Path | None) -> Path | None:
    resolved = target.resolve()
    start = resolved if resolved.is_dir() else resolved.parent
    for directory in (start, *start.parents):
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file() and (name != "pyproject.toml" or _has_poolshift_table(candidate)):
                return candidate
        if directory == stop or (directory / ".git").exists():
            return None
    return None


def find_config_file(targets: Sequence[Path], stop: Path | None = None) -> Path | None:
    """The configuration file closest to the targets, the way ruff finds its own; None when there is none.

    From each target's directory upwards, the first directory holding one of :data:`CONFIG_NAMES` wins
    (within a directory, in that order). The walk stops at the repository top (a directory containing
    ``.git``, itself searched) or at ``stop`` (``--root``), so a file above the repository never applies.
    One run has one configuration: targets whose closest files differ are refused rather than guessed at.
    """
    found = {target: _closest_config(target, stop.resolve() if stop else None) for target in targets}
    distinct = set(found.values())
    if len(distinct) > 1:
        listing = "; ".join(f"{target} -> {config or 'none'}" for target, config in found.items())
        raise FileDiscoveryError(
            f"the paths have different configuration files ({listing}): run poolshift once per "
            "configuration, or pass --config"
        )
    return distinct.pop() if distinct else None


def git_toplevel(root: Path) -> Path | None:
    """The top of the git work tree containing ``root``, or None when it is not in one (or git is absent)."""
    try:
        # git from PATH with fixed arguments; the only variable part is a path passed after -C.
        completed = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if completed.returncode != 0:
        return None
    return Path(completed.stdout.strip()).resolve()


def _relative_targets(root: Path, targets: Sequence[Path]) -> list[str]:
    relative: list[str] = []
    for target in targets:
        resolved = target.resolve()
        if not resolved.exists():
            raise FileDiscoveryError(f"{target}: no such file or directory")
        try:
            relative.append(resolved.relative_to(root).as_posix())
        except ValueError:
            raise FileDiscoveryError(f"{target} is outside the project root {root}") from None
    return relative


@lru_cache(maxsize=4096)
def _is_virtualenv(directory: Path) -> bool:
    return (directory / "pyvenv.cfg").is_file()


def _in_excluded_dir(root: Path, relpath: str, verdicts: dict[str, bool] | None = None) -> bool:
    """Whether a directory of ``relpath`` is a default exclude or a virtualenv.

    ``verdicts`` remembers the answer per directory for one listing: every file of a directory shares it.
    """
    directory, _, _ = relpath.rpartition("/")
    if verdicts is not None and directory in verdicts:
        return verdicts[directory]
    parts = directory.split("/") if directory else []
    excluded = any(part in DEFAULT_EXCLUDED_DIRS for part in parts)
    if not excluded:
        path = root
        for part in parts:
            path = path / part
            if _is_virtualenv(path):
                excluded = True
                break
    if verdicts is not None:
        verdicts[directory] = excluded
    return excluded


def _keep(
    root: Path, relpath: str, verdicts: dict[str, bool], stats: dict[str, os.stat_result] | None
) -> bool:
    """A regular .py file (symlinks skipped: their target is migrated where it lives, or not at all).

    One ``lstat`` on a string path (on a large tree this check runs for every file), kept in ``stats``:
    it is the one ``stat`` a read-only run needs of an unchanged file (see ``codemods.project.FileStore``).
    """
    if not relpath.endswith(".py") or _in_excluded_dir(root, relpath, verdicts):
        return False
    try:
        info = os.lstat(f"{root}/{relpath}")
    except OSError:
        return False
    if stats is not None:
        stats[relpath] = info
    return stat.S_ISREG(info.st_mode)


def _git_files(root: Path, targets: list[str]) -> list[str] | None:
    try:
        completed = subprocess.run(  # noqa: S603 - fixed git command; targets follow "--"
            ["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z", "--", *targets],  # noqa: S607
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    if completed.returncode != 0:
        return None
    names = completed.stdout.decode("utf-8", "surrogateescape").split("\0")
    return [name for name in names if name]


@dataclass(frozen=True)
class _IgnoreRule:
    base: str  # directory of the .gitignore, relative to the root ("" for the root)
    pattern: str
    negated: bool
    dir_only: bool

    def matches(self, relpath: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not relpath.startswith(self.base + "/"):
                return False
            relpath = relpath[len(self.base) + 1 :]
        # A pattern without an inner slash matches at any depth; with one it is anchored to its .gitignore.
        pattern = self.pattern if "/" in self.pattern else "**/" + self.pattern
        return glob_matches(pattern.lstrip("/"), relpath)


def _read_gitignore(directory: Path, base: str) -> list[_IgnoreRule]:
    try:
        lines = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    rules = []
    for raw in lines:
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").removeprefix("\\")
        dir_only = line.endswith("/")
        rules.append(_IgnoreRule(base=base, pattern=line.rstrip("/"), negated=negated, dir_only=dir_only))
    return rules


def _ignored(rules: Iterable[_IgnoreRule], relpath: str, is_dir: bool) -> bool:
    ignored = False
    for rule in rules:  # the last matching rule wins, as in git
        if rule.matches(relpath, is_dir):
            ignored = not rule.negated
    return ignored


def _walk_files(root: Path, targets: list[str]) -> list[str]:
    """Fallback outside git: walk, pruning default excludes, virtualenvs and .gitignore'd paths.

    Rules are kept in one list: each carries its .gitignore's directory and applies only below it, so
    sibling directories' rules never leak into each other (a directory's rules are read before anything
    below it is looked at, so a deeper .gitignore's rules come later and win, as in git); each directory
    asks only the rules that apply below it. Only regular ``.py`` files are returned, none under a default
    exclude or a virtualenv (what :func:`_in_excluded_dir` checks per file of a listing).

    One ``os.scandir`` per directory is all the walk asks of the filesystem: it gives each entry's type
    without a ``stat`` (symlinks are skipped, symlinked directories not followed, as ``os.walk`` does not
    follow them), and whether the directory holds a ``.gitignore`` to read or a ``pyvenv.cfg`` (a
    virtualenv, skipped whole).
    """
    rules: list[_IgnoreRule] = []
    read: set[str] = set()

    def load(rel: str) -> None:
        if rel not in read:
            read.add(rel)
            rules.extend(_read_gitignore(root / rel if rel else root, rel))

    found: list[str] = []
    for target in targets:
        top = root / target
        # .gitignore files between the root and the target apply to the target too.
        for ancestor in reversed([top, *top.parents]):
            if ancestor == root or root in ancestor.parents:
                rel = (ancestor if ancestor.is_dir() else ancestor.parent).relative_to(root).as_posix()
                load("" if rel == "." else rel)
        if top.is_file():
            if target.endswith(".py") and not _in_excluded_dir(root, target) and _regular(top):
                found.append(target)
            continue
        top_rel = top.relative_to(root).as_posix()
        top_rel = "" if top_rel == "." else top_rel
        if top_rel and _in_excluded_dir(root, f"{top_rel}/-"):
            continue
        _walk_below(root, top_rel, rules, load, found)
    return found


def _walk_below(
    root: Path, top_rel: str, rules: list[_IgnoreRule], load: Callable[[str], None], found: list[str]
) -> None:
    """:func:`_walk_files` under one directory target (``top_rel``, "" for the root)."""
    pending = [top_rel]
    while pending:
        rel_dir = pending.pop()
        files, directories, special = _scan(f"{root}/{rel_dir}" if rel_dir else str(root))
        if rel_dir != top_rel and "pyvenv.cfg" in special:
            continue  # a virtualenv (the top was checked by the caller)
        if ".gitignore" in special:
            load(rel_dir)
        prefix = f"{rel_dir}/" if rel_dir else ""
        applying = [rule for rule in rules if not rule.base or prefix.startswith(f"{rule.base}/")]
        for name in directories:
            if not (applying and _ignored(applying, prefix + name, is_dir=True)):
                pending.append(prefix + name)
        for name in files:
            if not (applying and _ignored(applying, prefix + name, is_dir=False)):
                found.append(prefix + name)


#: The names :func:`_walk_files` looks for in each directory it lists.
_WALK_NAMES = frozenset({".gitignore", "pyvenv.cfg"})


def _scan(directory: str, wanted: frozenset[str] = _WALK_NAMES) -> tuple[list[str], list[str], set[str]]:
    """A directory's regular ``.py`` files, its subdirectories but the default excludes, and which of the
    ``wanted`` names it holds (``pyvenv.cfg`` as a file, symlinks followed, as :func:`_is_virtualenv`
    checks it; any other name as anything but a directory, as ``os.walk`` lists files). An unreadable
    directory is empty, as for ``os.walk``."""
    files: list[str] = []
    directories: list[str] = []
    special: set[str] = set()
    try:
        with os.scandir(directory) as listing:
            for entry in listing:
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if name not in DEFAULT_EXCLUDED_DIRS:
                            directories.append(name)
                    elif name.endswith(".py"):
                        if entry.is_file(follow_symlinks=False):
                            files.append(name)
                    elif name in wanted and (entry.is_file() if name == "pyvenv.cfg" else not entry.is_dir()):
                        special.add(name)
                except OSError:
                    continue
    except OSError:
        pass
    return files, directories, special


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _listed(
    root: Path, names: Iterable[str], stats: dict[str, os.stat_result] | None = None, *, checked: bool = False
) -> list[str]:
    """The regular .py files among ``names``, sorted, no duplicates; ``checked``: ``names`` are known to be
    regular .py files outside excluded directories already (:func:`_walk_files`), so no ``lstat`` is taken."""
    if checked:
        return sorted(set(names))
    verdicts: dict[str, bool] = {}
    return sorted({name for name in names if _keep(root, name, verdicts, stats)})


def list_python_files(root: Path, targets: Sequence[Path]) -> list[str]:
    """Relative posix paths of the Python files to consider under ``targets``, sorted, no duplicates."""
    relative = _relative_targets(root, targets) or ["."]
    names = _git_files(root, relative) if git_toplevel(root) is not None else None
    if names is None:
        return _listed(root, _walk_files(root, relative), checked=True)
    return _listed(root, names)


def list_project_files(
    root: Path, targets: Sequence[Path], stats: dict[str, os.stat_result] | None = None
) -> tuple[list[str], list[str]]:
    """Every Python file of the project, and those under ``targets``: the same as two calls of
    :func:`list_python_files` (``[root]``, then ``targets``), listing the tree once where that gives the
    same answer.

    In a git work tree the targets' files are the project's files under them (git applies the same
    ignore rules whatever the pathspec); outside git, targets other than the root are walked on their own,
    because naming a file or a directory the .gitignore excludes lists it there. ``stats`` receives the
    ``lstat`` of each file it took one of (git's listing; a walk needs none).
    """
    relative = _relative_targets(root, targets) or ["."]
    in_git = git_toplevel(root) is not None
    names = _git_files(root, ["."]) if in_git else None
    if names is None:
        every = _listed(root, _walk_files(root, ["."]), checked=True)
        if all(target == "." for target in relative):
            return every, every
        return every, _listed(root, _walk_files(root, relative), checked=True)
    every = _listed(root, names, stats)
    if any(target == "." for target in relative):
        return every, every
    prefixes = tuple(f"{target}/" for target in relative)
    return every, [path for path in every if path in relative or path.startswith(prefixes)]


def config_files_below(directory: Path) -> list[Path]:
    """The configuration files in the directories under ``directory`` (its own excluded), sorted: each
    applies to its own subtree, as ruff's nested configurations do.

    Listed like the Python files (git's listing in a work tree, so ignored directories are skipped; the
    walk elsewhere), without the default excludes and virtualenvs. A ``pyproject.toml`` counts only with a
    ``[tool.poolshift]`` table, and one that does not even mention poolshift is never parsed, so a broken
    unrelated one in the tree cannot fail the run.
    """
    top = directory.resolve()
    names = None
    if git_toplevel(top) is not None:
        names = _git_files(top, [f":(glob)**/{name}" for name in CONFIG_NAMES])
    if names is None:
        names = _walk_config_names(top)
    found: dict[Path, Path] = {}
    verdicts: dict[str, bool] = {}
    for relpath in sorted(names):
        folder, _, name = relpath.rpartition("/")
        if not folder or name not in CONFIG_NAMES or _in_excluded_dir(top, relpath, verdicts):
            continue
        path = top / relpath
        if name == "pyproject.toml" and not (_mentions_poolshift(path) and _has_poolshift_table(path)):
            continue
        earlier = found.get(path.parent)  # one file per directory, in CONFIG_NAMES' order of precedence
        if earlier is None or CONFIG_NAMES.index(name) < CONFIG_NAMES.index(earlier.name):
            found[path.parent] = path
    return sorted(found.values())


def _mentions_poolshift(path: Path) -> bool:
    try:
        return b"poolshift" in path.read_bytes()
    except OSError:
        return False


def _walk_config_names(top: Path) -> list[str]:
    """Outside git: the walk of :func:`_walk_files` looking at file names only, .gitignore rules checked
    for the few configuration files found (matching every name against them costs as much as the walk)."""
    wanted = frozenset({*CONFIG_NAMES, "pyvenv.cfg"})
    found: list[str] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        _, directories, special = _scan(f"{top}/{rel_dir}" if rel_dir else str(top), wanted)
        if rel_dir and "pyvenv.cfg" in special:
            continue  # a virtualenv below the top
        prefix = f"{rel_dir}/" if rel_dir else ""
        found.extend(prefix + name for name in sorted(special.intersection(CONFIG_NAMES)))
        pending.extend(prefix + name for name in directories)
    return [relpath for relpath in found if not _gitignored(top, relpath)]


def _gitignored(top: Path, relpath: str) -> bool:
    """Whether the .gitignore files from ``top`` down to ``relpath`` exclude it or one of its directories."""
    parts = relpath.split("/")
    rules: list[_IgnoreRule] = []
    for depth in range(len(parts)):
        base = "/".join(parts[:depth])
        rules.extend(_read_gitignore(top / base if base else top, base))
        if depth and _ignored(rules, base, is_dir=True):
            return True
    return _ignored(rules, relpath, is_dir=False)
